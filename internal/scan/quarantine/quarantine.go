// Package quarantine moves detected files into a root-only directory and
// back.
//
// Layout of the directory (given by the caller, e.g. STATE/quarantine, mode
// 0700): ID.data is the file's content, mode 0000; ID.json its Record
// (original path, owner, mode, size, SHA-256, signature, time);
// exclusions.json the SHA-256 digests whose detections the engine drops
// (added when a file is restored, see Exclusions); .lock serialises
// processes (the agent daemon and the corral-agent CLI).
//
// Failure contract: Add either completes (content and record durable in the
// quarantine, the original gone) or leaves the original file where it was,
// untouched, and returns an error saying so; a full disk never loses or
// half-moves a file. Same-filesystem moves are a rename; across
// filesystems the content is copied, fsynced and verified by SHA-256 before
// the original is unlinked. Restore puts back path, owner and mode and
// refuses to overwrite an existing file unless forced. A Quarantine is safe
// for concurrent use.
package quarantine

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Errors callers branch on.
var (
	ErrNotFound = errors.New("no such quarantine entry")
	ErrExists   = errors.New("a file exists at the original path")
)

// Record describes one quarantined file.
type Record struct {
	ID        string    `json:"id"`
	Path      string    `json:"path"`
	UID       int       `json:"uid"`
	GID       int       `json:"gid"`
	Mode      uint32    `json:"mode"` // permission and setuid/setgid/sticky bits, as chmod takes them
	Size      int64     `json:"size"`
	SHA256    string    `json:"sha256"`
	Signature string    `json:"signature"`
	Time      time.Time `json:"time"`
}

// Quarantine is one quarantine directory.
type Quarantine struct {
	dir string
	mu  sync.Mutex
}

var idRE = regexp.MustCompile(`^[0-9a-f]{16}$`)

// Open prepares dir (created 0700 if missing; an existing one is made 0700
// and must be a directory owned by the current user).
func Open(dir string) (*Quarantine, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create quarantine: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("quarantine %s is not a directory", dir)
	}
	if int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("quarantine %s is owned by uid %d, not by this user", dir, st.Uid)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("quarantine: %w", err)
	}
	return &Quarantine{dir: dir}, nil
}

// Dir is the quarantine directory.
func (q *Quarantine) Dir() string { return q.dir }

// lock takes the in-process and the cross-process lock.
func (q *Quarantine) lock() (func(), error) {
	q.mu.Lock()
	f, err := os.OpenFile(filepath.Join(q.dir, ".lock"), os.O_CREATE|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		q.mu.Unlock()
		return nil, fmt.Errorf("quarantine lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		q.mu.Unlock()
		return nil, fmt.Errorf("quarantine lock: %w", err)
	}
	return func() { f.Close(); q.mu.Unlock() }, nil
}

func (q *Quarantine) dataPath(id string) string   { return filepath.Join(q.dir, id+".data") }
func (q *Quarantine) recordPath(id string) string { return filepath.Join(q.dir, id+".json") }

// Add moves the file at path into the quarantine. On error the file is
// where it was and the error says so.
func (q *Quarantine) Add(path, signature string, now time.Time) (Record, error) {
	unlock, err := q.lock()
	if err != nil {
		return Record{}, fmt.Errorf("%w; %s was left where it is", err, path)
	}
	defer unlock()
	rec, err := q.add(path, signature, now)
	if err != nil {
		return Record{}, fmt.Errorf("quarantine %s: %w; the file was left where it is", path, err)
	}
	return rec, nil
}

func (q *Quarantine) add(path, signature string, now time.Time) (Record, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Record{}, err
	}
	src, err := os.OpenFile(abs, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return Record{}, err
	}
	defer src.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return Record{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return Record{}, errors.New("not a regular file")
	}
	sum, err := sha256Of(src)
	if err != nil {
		return Record{}, fmt.Errorf("read: %w", err)
	}
	rec := Record{ID: newID(), Path: abs, UID: int(st.Uid), GID: int(st.Gid), Mode: st.Mode & 0o7777,
		Size: st.Size, SHA256: sum, Signature: signature, Time: now.UTC()}
	// The record goes first: if even that does not fit, nothing moved.
	recTmp := q.recordPath(rec.ID) + ".tmp"
	if err := writeJSONSync(recTmp, rec); err != nil {
		os.Remove(recTmp)
		return Record{}, fmt.Errorf("write record: %w", err)
	}
	data := q.dataPath(rec.ID)
	undo := func() { os.Remove(recTmp) }
	if err := sameFile(abs, &st); err != nil {
		undo()
		return Record{}, err
	}
	err = os.Rename(abs, data)
	switch {
	case err == nil:
		undo = func() { os.Rename(data, abs); os.Remove(recTmp) }
		var moved unix.Stat_t
		if err := unix.Lstat(data, &moved); err != nil || moved.Ino != st.Ino || moved.Dev != st.Dev {
			undo()
			return Record{}, errors.New("the file was replaced while it was being quarantined")
		}
	case errors.Is(err, unix.EXDEV):
		if err := copyVerified(src, data, sum); err != nil {
			undo()
			return Record{}, err
		}
		undo = func() { os.Remove(data); os.Remove(recTmp) }
		if err := sameFile(abs, &st); err != nil {
			undo()
			return Record{}, err
		}
		if err := os.Remove(abs); err != nil {
			undo()
			return Record{}, fmt.Errorf("remove original: %w", err)
		}
		syncDir(filepath.Dir(abs))
	default:
		undo()
		return Record{}, fmt.Errorf("move: %w", err)
	}
	if err := os.Chmod(data, 0); err != nil {
		undo()
		return Record{}, fmt.Errorf("make unreadable: %w", err)
	}
	if err := os.Rename(recTmp, q.recordPath(rec.ID)); err != nil {
		undo()
		return Record{}, fmt.Errorf("commit record: %w", err)
	}
	syncDir(q.dir)
	return rec, nil
}

// sameFile checks that path is still the file that was opened and read.
func sameFile(path string, want *unix.Stat_t) error {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return err
	}
	if st.Dev != want.Dev || st.Ino != want.Ino || st.Size != want.Size || st.Mtim != want.Mtim {
		return errors.New("the file changed while it was being quarantined")
	}
	return nil
}

// copyVerified copies src into a new file dst (0600 while written), fsyncs
// it and checks its SHA-256 by reading it back. On error dst does not exist.
func copyVerified(src *os.File, dst, wantSum string) (err error) {
	tmp := dst + ".tmp"
	out, err := os.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_RDWR|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create copy: %w", err)
	}
	defer func() {
		out.Close()
		if err != nil {
			os.Remove(tmp)
		}
	}()
	if _, err := io.Copy(out, io.NewSectionReader(src, 0, 1<<62)); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if err := out.Sync(); err != nil {
		return fmt.Errorf("sync copy: %w", err)
	}
	got, err := sha256Of(out)
	if err != nil {
		return fmt.Errorf("verify copy: %w", err)
	}
	if got != wantSum {
		return fmt.Errorf("verify copy: SHA-256 %s, want %s", got, wantSum)
	}
	if err := os.Rename(tmp, dst); err != nil {
		return fmt.Errorf("commit copy: %w", err)
	}
	return nil
}

func sha256Of(f *os.File) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func writeJSONSync(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(b, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// List returns the quarantined files, oldest first.
func (q *Quarantine) List() ([]Record, error) {
	entries, err := os.ReadDir(q.dir)
	if err != nil {
		return nil, fmt.Errorf("list quarantine: %w", err)
	}
	var out []Record
	for _, e := range entries {
		id, ok := cutSuffix(e.Name(), ".json")
		if !ok || !idRE.MatchString(id) {
			continue
		}
		r, err := q.read(id)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Record) int { return a.Time.Compare(b.Time) })
	return out, nil
}

func cutSuffix(s, suf string) (string, bool) {
	if len(s) > len(suf) && s[len(s)-len(suf):] == suf {
		return s[:len(s)-len(suf)], true
	}
	return s, false
}

func (q *Quarantine) read(id string) (Record, error) {
	var r Record
	if !idRE.MatchString(id) {
		return r, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	b, err := os.ReadFile(q.recordPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return r, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return r, fmt.Errorf("read quarantine record: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("quarantine record %s: %w", id, err)
	}
	return r, nil
}

// Restore puts entry id back at its original path with its owner and mode.
// It refuses to replace an existing file unless force is set; the parent
// directory must still exist.
func (q *Quarantine) Restore(id string, force bool) (Record, error) {
	unlock, err := q.lock()
	if err != nil {
		return Record{}, err
	}
	defer unlock()
	r, err := q.read(id)
	if err != nil {
		return r, err
	}
	if _, err := os.Lstat(r.Path); err == nil && !force {
		return r, fmt.Errorf("restore %s: %w (restore with force to replace it)", r.Path, ErrExists)
	}
	if fi, err := os.Stat(filepath.Dir(r.Path)); err != nil || !fi.IsDir() {
		return r, fmt.Errorf("restore %s: the directory %s no longer exists", r.Path, filepath.Dir(r.Path))
	}
	data := q.dataPath(id)
	// Stage next to the target, fix owner and mode, then rename into place:
	// the path never shows a half-restored file.
	stage := filepath.Join(filepath.Dir(r.Path), ".corral-restore-"+id)
	moved := false
	if err := os.Rename(data, stage); errors.Is(err, unix.EXDEV) {
		if err := os.Chmod(data, 0o400); err != nil {
			return r, fmt.Errorf("restore: %w", err)
		}
		src, err := os.Open(data)
		if err != nil {
			return r, fmt.Errorf("restore: %w", err)
		}
		err = copyVerified(src, stage, r.SHA256)
		src.Close()
		os.Chmod(data, 0)
		if err != nil {
			return r, fmt.Errorf("restore %s: %w; it stays in the quarantine", r.Path, err)
		}
	} else if err != nil {
		return r, fmt.Errorf("restore: %w", err)
	} else {
		moved = true
	}
	defer func() {
		if _, err := os.Lstat(stage); err != nil {
			return // committed
		}
		if moved {
			os.Chmod(stage, 0)
			os.Rename(stage, data)
		} else {
			os.Remove(stage)
		}
	}()
	if err := os.Lchown(stage, r.UID, r.GID); err != nil {
		return r, fmt.Errorf("restore owner: %w", err)
	}
	if err := os.Chmod(stage, fs.FileMode(r.Mode&0o777)|modeBits(r.Mode)); err != nil {
		return r, fmt.Errorf("restore mode: %w", err)
	}
	if err := os.Rename(stage, r.Path); err != nil {
		return r, fmt.Errorf("restore: %w", err)
	}
	syncDir(filepath.Dir(r.Path))
	os.Remove(data)
	os.Remove(q.recordPath(id))
	syncDir(q.dir)
	return r, nil
}

func modeBits(m uint32) fs.FileMode {
	var o fs.FileMode
	if m&unix.S_ISUID != 0 {
		o |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		o |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		o |= fs.ModeSticky
	}
	return o
}

// Delete removes entry id and its content for good.
func (q *Quarantine) Delete(id string) error {
	unlock, err := q.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := q.read(id); err != nil {
		return err
	}
	if err := os.Remove(q.dataPath(id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete quarantined file: %w", err)
	}
	return os.Remove(q.recordPath(id))
}
