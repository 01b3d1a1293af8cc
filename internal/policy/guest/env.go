package guest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// Env is where rules are evaluated.
type Env struct {
	// Root is the OS tree; "/" is the running system.
	Root string
	// Live: Root is the running system, so runtime state is read from Proc
	// (live sysctl values, mounts, loaded modules, listening sockets).
	Live bool
	// Proc is the procfs read when Live (default /proc). Tests point it at
	// a directory shaped like /proc.
	Proc string
	// RPM is the rpm command used when the tree has an RPM database and no
	// dpkg database (default: "rpm" on PATH).
	RPM string
	// Now stamps results and changes (default time.Now).
	Now func() time.Time
}

// NewEnv returns the environment for a root: Live when the root is "/".
func NewEnv(root string) Env {
	root = filepath.Clean(root)
	return Env{Root: root, Live: root == "/", Proc: "/proc", RPM: "rpm", Now: time.Now}
}

func (e Env) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e Env) procPath(p string) string {
	proc := e.Proc
	if proc == "" {
		proc = "/proc"
	}
	return filepath.Join(proc, p)
}

// HostPath returns where a path inside the root is on this host, resolving
// symlinks inside the root like a chroot would (an absolute link target is
// taken relative to the root, ".." never leaves it). Missing trailing
// components are kept as they are.
func (e Env) HostPath(p string) (string, error) {
	root := e.Root
	if root == "" || root == "/" {
		return path.Clean("/" + p), nil
	}
	var resolved string // relative to root, "" = the root itself
	rest := splitPath(p)
	links := 0
	for len(rest) > 0 {
		c := rest[0]
		rest = rest[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			resolved = path.Dir("/" + resolved)[1:]
			continue
		}
		next := strings.TrimPrefix(resolved+"/"+c, "/")
		fi, err := os.Lstat(filepath.Join(root, next))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				return filepath.Join(append([]string{root, next}, rest...)...), nil
			}
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if links++; links > 40 {
			return "", fmt.Errorf("%s: too many levels of symbolic links", p)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			resolved = ""
		}
		rest = append(splitPath(target), rest...)
	}
	return filepath.Join(root, resolved), nil
}

func splitPath(p string) []string {
	return strings.Split(strings.Trim(p, "/"), "/")
}

// maxReadBytes bounds a file read by a rule.
const maxReadBytes = 16 << 20

// readFile reads a file inside the root.
func (e Env) readFile(p string) ([]byte, error) {
	hp, err := e.HostPath(p)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(hp)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxReadBytes+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxReadBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes", p, maxReadBytes)
	}
	return b, nil
}

// stat follows symlinks inside the root.
func (e Env) stat(p string) (fs.FileInfo, error) {
	hp, err := e.HostPath(p)
	if err != nil {
		return nil, err
	}
	return os.Stat(hp)
}

// glob expands a pattern inside the root (matches sorted, paths as seen
// from inside the root).
func (e Env) glob(pattern string) ([]string, error) {
	if !strings.ContainsAny(pattern, "*?[") {
		if _, err := e.stat(pattern); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil
			}
			return nil, err
		}
		return []string{pattern}, nil
	}
	dir, base := path.Split(pattern)
	dir = path.Clean(dir)
	var dirs []string
	if strings.ContainsAny(dir, "*?[") {
		var err error
		if dirs, err = e.glob(dir); err != nil {
			return nil, err
		}
	} else {
		dirs = []string{dir}
	}
	var out []string
	for _, d := range dirs {
		names, err := e.readDirNames(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
				continue
			}
			return nil, err
		}
		for _, n := range names {
			if ok, _ := path.Match(base, n); ok && !strings.HasPrefix(n, ".") || ok && strings.HasPrefix(base, ".") {
				out = append(out, path.Join(d, n))
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

func (e Env) readDirNames(d string) ([]string, error) {
	hp, err := e.HostPath(d)
	if err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(hp)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ents))
	for i, en := range ents {
		names[i] = en.Name()
	}
	return names, nil
}

// describeErr turns a read error into words for evidence.
func describeErr(p string, err error) string {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return p + " does not exist"
	case errors.Is(err, fs.ErrPermission):
		return "cannot read " + p + ": permission denied"
	case errors.Is(err, syscall.EISDIR):
		return "cannot read " + p + ": it is a directory"
	}
	msg := err.Error()
	if pe := (*fs.PathError)(nil); errors.As(err, &pe) {
		msg = pe.Err.Error()
	}
	return "cannot read " + p + ": " + msg
}
