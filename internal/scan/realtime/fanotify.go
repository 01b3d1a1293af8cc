package realtime

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

type fanWatcher struct {
	w    *Watcher
	f    *os.File // the fanotify group, non-blocking: reads park in the poller and Close wakes them
	work chan *fanEvent

	// When the workers fall behind, close-write events wait here by path
	// (their descriptors closed: thousands of them would exhaust the
	// process's file limit); permission events are never queued, they are
	// allowed (fail open).
	mu      sync.Mutex
	backlog []string
	kick    chan struct{}
}

// fanEvent is one event handed to a worker; its descriptor is closed by
// the worker. A permission event is answered exactly once: by the worker
// or, past the deadline, by the timer (allow).
type fanEvent struct {
	fd, pid int
	mask    uint64
	once    sync.Once
	timer   *time.Timer
}

func (w *Watcher) startFanotify() (*fanWatcher, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_CONTENT|unix.FAN_CLOEXEC|unix.FAN_NONBLOCK|unix.FAN_UNLIMITED_QUEUE|unix.FAN_UNLIMITED_MARKS,
		unix.O_RDONLY|unix.O_LARGEFILE|unix.O_CLOEXEC|unix.O_NOATIME)
	if err != nil {
		return nil, fmt.Errorf("fanotify_init: %w", err)
	}
	mask := uint64(unix.FAN_CLOSE_WRITE)
	if w.cfg.Block {
		mask |= unix.FAN_OPEN_PERM | unix.FAN_OPEN_EXEC_PERM
	}
	mounts, err := mountsUnder(w.cfg.Paths)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	for _, m := range mounts {
		if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_MOUNT, mask, unix.AT_FDCWD, m); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("fanotify_mark %s: %w", m, err)
		}
	}
	return &fanWatcher{w: w, f: os.NewFile(uintptr(fd), "fanotify"), work: make(chan *fanEvent, 1024), kick: make(chan struct{}, 1)}, nil
}

func (fw *fanWatcher) run(ctx context.Context) error {
	w := fw.w
	var wg sync.WaitGroup
	for range 2 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				select {
				case ev, ok := <-fw.work:
					if !ok {
						return
					}
					fw.handle(ctx, ev)
				case <-fw.kick:
					for p, ok := fw.pop(); ok; p, ok = fw.pop() {
						fw.handlePath(ctx, p)
						if ctx.Err() != nil {
							break
						}
					}
				}
			}
		})
	}
	stop := context.AfterFunc(ctx, func() { fw.f.Close() })
	defer stop()
	buf := make([]byte, 64<<10)
	var err error
	for {
		var n int
		n, err = fw.f.Read(buf)
		if err != nil {
			break
		}
		fw.dispatch(buf[:n])
	}
	close(fw.work)
	wg.Wait()
	fw.f.Close()
	if ctx.Err() != nil {
		return nil
	}
	w.log.ErrorContext(ctx, "fanotify read failed", "err", err)
	return fmt.Errorf("fanotify: %w", err)
}

const metaSize = int(unsafe.Sizeof(unix.FanotifyEventMetadata{}))

// dispatch hands each event of buf to the workers.
func (fw *fanWatcher) dispatch(buf []byte) {
	w := fw.w
	for len(buf) >= metaSize {
		md := (*unix.FanotifyEventMetadata)(unsafe.Pointer(&buf[0]))
		if md.Event_len < uint32(metaSize) || int(md.Event_len) > len(buf) || md.Vers != unix.FANOTIFY_METADATA_VERSION {
			w.errs.Add(1)
			return
		}
		buf = buf[md.Event_len:]
		if md.Mask&unix.FAN_Q_OVERFLOW != 0 {
			w.overflows.Add(1)
		}
		if md.Fd == unix.FAN_NOFD {
			continue
		}
		ev := &fanEvent{fd: int(md.Fd), pid: int(md.Pid), mask: md.Mask}
		if ev.perm() {
			if ev.pid == w.self || fw.fastAllow(ev) {
				fw.respond(ev, unix.FAN_ALLOW, nil)
				unix.Close(ev.fd)
				continue
			}
			ev.timer = time.AfterFunc(w.cfg.DecisionTimeout, func() {
				fw.respond(ev, unix.FAN_ALLOW, &w.timeouts)
			})
		}
		select {
		case fw.work <- ev:
		default: // overloaded: never keep anyone waiting
			if ev.perm() {
				ev.timer.Stop()
				fw.respond(ev, unix.FAN_ALLOW, &w.timeouts)
			} else if p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(ev.fd)); err == nil && w.watched(p) {
				fw.push(p)
			}
			unix.Close(ev.fd)
		}
	}
}

// fastAllow answers, without a worker, the opens that need no scan: empty
// files (nothing to block; a new file is opened empty before it is
// written) and files whose verdict is cached clean.
func (fw *fanWatcher) fastAllow(ev *fanEvent) bool {
	var st unix.Stat_t
	if unix.Fstat(ev.fd, &st) != nil {
		return false
	}
	if st.Size == 0 {
		return true
	}
	r, hit := fw.w.cache.get(statKey(&st))
	if hit && !r.Infected() {
		fw.w.cacheHits.Add(1)
		return true
	}
	return false
}

func (fw *fanWatcher) push(path string) {
	fw.mu.Lock()
	fw.backlog = append(fw.backlog, path)
	fw.mu.Unlock()
	select {
	case fw.kick <- struct{}{}:
	default:
	}
}

func (fw *fanWatcher) pop() (string, bool) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if len(fw.backlog) == 0 {
		fw.backlog = nil
		return "", false
	}
	p := fw.backlog[0]
	fw.backlog = fw.backlog[1:]
	if len(fw.backlog) > 0 {
		select { // let another worker help
		case fw.kick <- struct{}{}:
		default:
		}
	}
	return p, true
}

// handlePath scans a backlogged file by path (it may have changed or gone
// since it was written: then there is nothing, or something new, to scan).
func (fw *fanWatcher) handlePath(ctx context.Context, path string) {
	w := fw.w
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if r, _ := w.scanFile(ctx, f, path); r.Infected() {
		w.act(ctx, r, "close-write", 0, "", false)
	}
}

func (ev *fanEvent) perm() bool {
	return ev.mask&(unix.FAN_OPEN_PERM|unix.FAN_OPEN_EXEC_PERM) != 0
}

func (ev *fanEvent) name() string {
	switch {
	case ev.mask&unix.FAN_OPEN_EXEC_PERM != 0:
		return "exec"
	case ev.mask&unix.FAN_OPEN_PERM != 0:
		return "open"
	}
	return "close-write"
}

// respond answers a permission event once; it reports whether this call
// was the answer. count, when set, is bumped before the answer is written,
// so Stats already tells it when the opener learns the verdict.
func (fw *fanWatcher) respond(ev *fanEvent, verdict uint32, count *atomic.Uint64) bool {
	done := false
	ev.once.Do(func() {
		done = true
		if count != nil {
			count.Add(1)
		}
		r := unix.FanotifyResponse{Fd: int32(ev.fd), Response: verdict}
		if _, err := fw.f.Write(unsafe.Slice((*byte)(unsafe.Pointer(&r)), unsafe.Sizeof(r))); err != nil && !errors.Is(err, os.ErrClosed) {
			fw.w.errs.Add(1)
		}
	})
	return done
}

func (fw *fanWatcher) handle(ctx context.Context, ev *fanEvent) {
	w := fw.w
	f := os.NewFile(uintptr(ev.fd), "event")
	defer f.Close()
	if ev.timer != nil {
		defer ev.timer.Stop() // after the answer; the timer may still answer first (allow)
	}
	allow := func() {
		if ev.perm() {
			fw.respond(ev, unix.FAN_ALLOW, nil)
		}
	}
	path, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(ev.fd))
	if err != nil || !w.watched(strings.TrimSuffix(path, " (deleted)")) || strings.HasSuffix(path, " (deleted)") {
		allow()
		return
	}
	excluded, exe := w.excludedProcess(ev.pid)
	if excluded {
		allow()
		return
	}
	r, cached := w.scanFile(ctx, f, path)
	if !r.Infected() {
		allow()
		return
	}
	if exe == "" && ev.pid > 0 && !cached {
		// While the opener waits for the answer its executable is still there.
		exe, _ = os.Readlink("/proc/" + strconv.Itoa(ev.pid) + "/exe")
	}
	denied := false
	if ev.perm() && r.Findings[0].Kind == "signature" {
		if fw.respond(ev, unix.FAN_DENY, &w.denied) {
			denied = true
		}
	} else {
		allow()
	}
	if ev.perm() && cached {
		return // reported when first detected
	}
	w.act(ctx, r, ev.name(), ev.pid, exe, denied)
}

// pseudoFSTypes are not marked when they are mounted under a watched path.
var pseudoFSTypes = map[string]bool{"proc": true, "sysfs": true, "devpts": true, "cgroup": true, "cgroup2": true,
	"debugfs": true, "tracefs": true, "securityfs": true, "pstore": true, "bpf": true, "configfs": true,
	"fusectl": true, "mqueue": true, "hugetlbfs": true, "autofs": true, "binfmt_misc": true, "efivarfs": true,
	"devtmpfs": true, "nsfs": true, "rpc_pipefs": true}

// mountsUnder lists what to mark: each path (FAN_MARK_MOUNT marks the mount
// holding it) and every real mount point below it.
func mountsUnder(paths []string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mounts: %w", err)
	}
	defer f.Close()
	out := append([]string{}, paths...)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+1 >= len(fields) {
			continue
		}
		mp := unescapeMount(fields[4])
		if pseudoFSTypes[fields[sep+1]] {
			continue
		}
		for _, p := range paths {
			if mp != p && under(mp, p) {
				out = append(out, mp)
				break
			}
		}
	}
	return out, sc.Err()
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
