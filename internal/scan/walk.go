package scan

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// pseudoFS are filesystem magic numbers Scan does not enter by default:
// their files are not on disk and reading some of them has side effects.
var pseudoFS = map[int64]string{
	unix.PROC_SUPER_MAGIC: "proc", unix.SYSFS_MAGIC: "sysfs", unix.DEVPTS_SUPER_MAGIC: "devpts",
	unix.CGROUP_SUPER_MAGIC: "cgroup", unix.CGROUP2_SUPER_MAGIC: "cgroup2", unix.DEBUGFS_MAGIC: "debugfs",
	unix.TRACEFS_MAGIC: "tracefs", unix.SECURITYFS_MAGIC: "securityfs", unix.PSTOREFS_MAGIC: "pstore",
	unix.BPF_FS_MAGIC: "bpf", 0x62656570: "configfs", 0x65735543: "fusectl", 0x19800202: "mqueue",
	unix.HUGETLBFS_MAGIC: "hugetlbfs", unix.AUTOFS_SUPER_MAGIC: "autofs", 0x42494e4d: "binfmt_misc",
	unix.EFIVARFS_MAGIC: "efivarfs", 0x1373: "devtmpfs",
}

// Scan scans every regular file under roots with a worker pool and calls fn
// with each result (one call at a time, in no particular order). A root that
// is a symbolic link is followed; links inside a tree never are: one that
// points out of its tree is reported as skipped. Special files are reported
// as skipped, unreadable ones as errors, and the scan goes on. Scan returns
// ctx's error if it was cancelled.
func (e *Engine) Scan(ctx context.Context, roots []string, fn func(FileResult)) (Summary, error) {
	began := time.Now()
	var sum Summary
	var mu sync.Mutex
	emit := func(r FileResult) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Error != "":
			sum.Errors++
		case r.Skipped != "":
			sum.Skipped++
		default:
			sum.Files++
			sum.Bytes += r.Size
		}
		if r.Infected() {
			sum.Infected++
		}
		fn(r)
	}
	paths := make(chan string, 256)
	var wg sync.WaitGroup
	for range e.opt.Workers {
		wg.Go(func() {
			for p := range paths {
				if ctx.Err() != nil {
					continue
				}
				emit(e.scanTreeFile(ctx, p))
			}
		})
	}
	for _, root := range roots {
		if ctx.Err() != nil {
			break
		}
		e.walkRoot(ctx, root, paths, emit)
	}
	close(paths)
	wg.Wait()
	sum.Duration = time.Since(began)
	return sum, ctx.Err()
}

// scanTreeFile scans a file found in a tree: the final component must still
// be a regular file when it is opened (no link followed).
func (e *Engine) scanTreeFile(ctx context.Context, path string) FileResult {
	f, err := openForScan(path, true)
	if err != nil {
		if errors.Is(err, unix.ELOOP) {
			return FileResult{Path: path, Skipped: "became a symbolic link, not followed"}
		}
		return FileResult{Path: path, Error: err.Error()}
	}
	defer f.Close()
	return e.ScanOpenFile(ctx, f, path)
}

func (e *Engine) excluded(path string) bool {
	for _, p := range e.opt.ExcludePaths {
		p = strings.TrimSuffix(p, "/")
		if p != "" && (path == p || strings.HasPrefix(path, p+"/")) {
			return true
		}
	}
	return false
}

func (e *Engine) walkRoot(ctx context.Context, root string, paths chan<- string, emit func(FileResult)) {
	abs, err := filepath.Abs(root)
	if err != nil {
		emit(FileResult{Path: root, Error: err.Error()})
		return
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		emit(FileResult{Path: root, Error: err.Error()})
		return
	}
	fi, err := os.Stat(real)
	if err != nil {
		emit(FileResult{Path: root, Error: err.Error()})
		return
	}
	switch {
	case fi.Mode().IsRegular():
		if e.excluded(real) {
			emit(FileResult{Path: root, Skipped: "excluded path"})
			return
		}
		paths <- real
		return
	case !fi.IsDir():
		emit(FileResult{Path: root, Skipped: "special file (" + fi.Mode().Type().String() + "), not read"})
		return
	}
	var st unix.Stat_t
	if err := unix.Stat(real, &st); err != nil {
		emit(FileResult{Path: root, Error: err.Error()})
		return
	}
	e.walkDir(ctx, real, real, st.Dev, paths, emit)
}

// walkDir walks dir, which is inside tree (both real paths); dev is the
// device of its parent, to notice mount points.
func (e *Engine) walkDir(ctx context.Context, tree, dir string, dev uint64, paths chan<- string, emit func(FileResult)) {
	if e.excluded(dir) {
		return
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err == nil && st.Dev != dev && !e.opt.ScanPseudoFS {
		var sfs unix.Statfs_t
		if unix.Statfs(dir, &sfs) == nil {
			if name, ok := pseudoFS[int64(sfs.Type)]; ok {
				emit(FileResult{Path: dir, Skipped: name + " filesystem, not scanned"})
				return
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil && len(entries) == 0 {
		emit(FileResult{Path: dir, Error: err.Error()})
		return
	}
	for _, de := range entries {
		if ctx.Err() != nil {
			return
		}
		p := filepath.Join(dir, de.Name())
		switch t := de.Type(); {
		case t.IsRegular():
			if e.excluded(p) {
				continue
			}
			paths <- p
		case t.IsDir():
			e.walkDir(ctx, tree, p, st.Dev, paths, emit)
		case t&fs.ModeSymlink != 0:
			if r := e.linkTarget(tree, p); r != "" {
				emit(FileResult{Path: p, Skipped: r})
			}
		default:
			emit(FileResult{Path: p, Skipped: fmt.Sprintf("special file (%s), not read", t.String())})
		}
	}
	if err != nil {
		emit(FileResult{Path: dir, Error: err.Error()})
	}
}

// linkTarget says why a symbolic link is not followed when it points out of
// the tree; a link inside the tree is silently skipped (its target is
// scanned where it is).
func (e *Engine) linkTarget(tree, link string) string {
	target, err := filepath.EvalSymlinks(link)
	if err != nil {
		return ""
	}
	if target == tree || strings.HasPrefix(target, strings.TrimSuffix(tree, "/")+"/") {
		return ""
	}
	return "symbolic link to " + target + ", outside the scanned tree: not followed"
}
