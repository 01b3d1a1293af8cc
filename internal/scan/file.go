package scan

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"sync"

	"golang.org/x/sys/unix"
)

// smallFile is the size up to which a file is read into a pooled buffer;
// larger files are mapped.
const smallFile = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, smallFile); return &b }}

// ScanBytes scans data as the content of a file named path.
func (e *Engine) ScanBytes(path string, data []byte) FileResult {
	res := FileResult{Path: path, Size: int64(len(data))}
	e.scanData(&res, data)
	return res
}

// ScanFile opens path (following a symbolic link) and scans it if it is a
// regular file.
func (e *Engine) ScanFile(ctx context.Context, path string) FileResult {
	f, err := openForScan(path, false)
	if err != nil {
		return FileResult{Path: path, Error: err.Error()}
	}
	defer f.Close()
	return e.ScanOpenFile(ctx, f, path)
}

// ScanOpenFile scans the open file f, reported as path. The realtime
// watcher uses it with the descriptor fanotify hands over. f is read from
// offset 0 with pread; its offset is not moved.
func (e *Engine) ScanOpenFile(ctx context.Context, f *os.File, path string) (res FileResult) {
	res.Path = path
	if err := ctx.Err(); err != nil {
		res.Error = err.Error()
		return res
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		res.Error = fmt.Sprintf("stat: %v", err)
		return res
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		res.Skipped = "not a regular file"
		return res
	}
	res.Size = st.Size
	data, release, err := readAll(f, st.Size)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	defer release()
	// A mapped file truncated while it is read faults; turn the fault into
	// an error for this file instead of a crash of the process.
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			res.Findings, res.Notes = nil, nil
			res.Error = fmt.Sprintf("file changed while it was scanned: %v", r)
		}
	}()
	e.scanData(&res, data)
	return res
}

func (e *Engine) scanData(res *FileResult, data []byte) {
	s := objScan{e: e, res: res}
	s.object(data, "", "", 0)
	if len(res.Findings) == 0 {
		return
	}
	sum := sha256.Sum256(data)
	h := hex.EncodeToString(sum[:])
	for i := range res.Findings {
		res.Findings[i].SHA256 = h
	}
	if e.opt.ExcludeSHA256 != nil && e.opt.ExcludeSHA256(h) {
		res.Findings, res.Excluded = nil, true
	}
}

// readAll returns the file's content: a pooled buffer for small files, a
// read-only shared mapping for large ones. release gives it back.
func readAll(f *os.File, size int64) ([]byte, func(), error) {
	if size == 0 {
		return nil, func() {}, nil
	}
	if size <= smallFile {
		bp := bufPool.Get().(*[]byte)
		b := (*bp)[:size]
		n, err := io.ReadFull(io.NewSectionReader(f, 0, size), b)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			bufPool.Put(bp)
			return nil, nil, fmt.Errorf("read: %w", err)
		}
		return b[:n], func() { bufPool.Put(bp) }, nil
	}
	if int64(int(size)) != size {
		return nil, nil, fmt.Errorf("file of %d bytes is too large to map", size)
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap: %w", err)
	}
	_ = unix.Madvise(b, unix.MADV_SEQUENTIAL|unix.MADV_WILLNEED)
	return b, func() { _ = unix.Munmap(b) }, nil
}

// openForScan opens path read-only without updating its access time where
// permitted, without blocking on FIFOs, and (nofollow) refusing a final
// symbolic link.
func openForScan(path string, nofollow bool) (*os.File, error) {
	flags := unix.O_RDONLY | unix.O_NONBLOCK | unix.O_CLOEXEC | unix.O_NOCTTY
	if nofollow {
		flags |= unix.O_NOFOLLOW
	}
	fd, err := unix.Open(path, flags|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		fd, err = unix.Open(path, flags, 0)
	}
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}
