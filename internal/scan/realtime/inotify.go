package realtime

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// inWatcher is the fallback: inotify watches on every directory under the
// paths, scans after writes and renames into them, no blocking.
type inWatcher struct {
	w    *Watcher
	fd   int
	f    *os.File
	mu   sync.Mutex
	dirs map[int32]string
	work chan string
}

const inMask = unix.IN_CLOSE_WRITE | unix.IN_MOVED_TO | unix.IN_CREATE | unix.IN_DELETE_SELF

func (w *Watcher) startInotify() (*inWatcher, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify_init: %w", err)
	}
	iw := &inWatcher{w: w, fd: fd, f: os.NewFile(uintptr(fd), "inotify"), dirs: map[int32]string{}, work: make(chan string, 4096)}
	for _, p := range w.cfg.Paths {
		if err := iw.addTree(p, false); err != nil {
			iw.f.Close()
			return nil, err
		}
	}
	return iw, nil
}

// addTree watches dir and the directories below it; with scanFiles it also
// queues the files already there (a directory created after the watcher
// started may have been filled before its watch was added).
func (iw *inWatcher) addTree(dir string, scanFiles bool) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir {
				return fmt.Errorf("watch %s: %w", dir, err)
			}
			return nil
		}
		if d.Type().IsRegular() && scanFiles {
			select {
			case iw.work <- p:
			default:
			}
			return nil
		}
		if !d.IsDir() {
			return nil
		}
		if !iw.w.watched(p) && p != dir {
			return filepath.SkipDir
		}
		wd, err := unix.InotifyAddWatch(iw.fd, p, inMask|unix.IN_ONLYDIR|unix.IN_DONT_FOLLOW)
		if err != nil {
			if p == dir {
				return fmt.Errorf("inotify_add_watch %s: %w", p, err)
			}
			iw.w.errs.Add(1)
			return nil
		}
		iw.mu.Lock()
		iw.dirs[int32(wd)] = p
		iw.mu.Unlock()
		return nil
	})
}

func (iw *inWatcher) run(ctx context.Context) error {
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for p := range iw.work {
				iw.handle(ctx, p)
			}
		})
	}
	stop := context.AfterFunc(ctx, func() { iw.f.Close() })
	defer stop()
	buf := make([]byte, 64<<10)
	var err error
	for {
		var n int
		n, err = iw.f.Read(buf)
		if err != nil {
			break
		}
		iw.dispatch(buf[:n])
	}
	close(iw.work)
	wg.Wait()
	iw.f.Close()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("inotify: %w", err)
}

func (iw *inWatcher) dispatch(buf []byte) {
	const hdr = int(unsafe.Sizeof(unix.InotifyEvent{}))
	for len(buf) >= hdr {
		ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[0]))
		size := hdr + int(ev.Len)
		if size > len(buf) {
			return
		}
		name := string(buf[hdr:size])
		for len(name) > 0 && name[len(name)-1] == 0 {
			name = name[:len(name)-1]
		}
		buf = buf[size:]
		if ev.Mask&unix.IN_Q_OVERFLOW != 0 {
			iw.w.overflows.Add(1)
			continue
		}
		iw.mu.Lock()
		dir, ok := iw.dirs[ev.Wd]
		if ev.Mask&unix.IN_IGNORED != 0 {
			delete(iw.dirs, ev.Wd)
		}
		iw.mu.Unlock()
		if !ok || name == "" {
			continue
		}
		p := filepath.Join(dir, name)
		switch {
		case ev.Mask&unix.IN_ISDIR != 0 && ev.Mask&(unix.IN_CREATE|unix.IN_MOVED_TO) != 0:
			if iw.w.watched(p) {
				iw.addTree(p, true)
			}
		case ev.Mask&(unix.IN_CLOSE_WRITE|unix.IN_MOVED_TO) != 0:
			select {
			case iw.work <- p:
			default:
				iw.w.overflows.Add(1)
			}
		}
	}
}

func (iw *inWatcher) handle(ctx context.Context, path string) {
	w := iw.w
	if !w.watched(path) {
		return
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return // gone or replaced by a link: nothing to scan
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	r, _ := w.scanFile(ctx, f, path)
	if r.Infected() {
		w.act(ctx, r, "close-write", 0, "", false)
	}
}
