package guest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Sentinels callers branch on.
var (
	// ErrNotRemediable: the rule's fix is not automated (Apply refuses).
	ErrNotRemediable = errors.New("this rule's fix is not automated")
	// ErrChangedSinceApply: Rollback found a file (or runtime value)
	// changed since the remediation and was not forced.
	ErrChangedSinceApply = errors.New("changed since the remediation")
)

// maxBackupBytes bounds the content a change record keeps per file.
const maxBackupBytes = 4 << 20

// FileState is a file's state before or after a remediation. Content is
// kept only for files whose content the remediation rewrote (a chmod of
// /etc/shadow must not copy password hashes into the change record).
type FileState struct {
	Exists  bool   `json:"exists"`
	Dir     bool   `json:"dir,omitempty"` // a directory: mode and owner only
	Mode    uint32 `json:"mode,omitempty"`
	UID     int    `json:"uid"`
	GID     int    `json:"gid"`
	SHA256  string `json:"sha256,omitempty"`
	Content []byte `json:"content,omitempty"`
}

// FileChange is one file a remediation changed. Path is inside the root.
type FileChange struct {
	Path   string    `json:"path"`
	Before FileState `json:"before"`
	After  FileState `json:"after"`
}

// RuntimeChange is a live kernel setting a remediation changed.
type RuntimeChange struct {
	Sysctl string `json:"sysctl"`
	Before string `json:"before"`
	After  string `json:"after"`
}

// Change is the record of one remediation: enough to undo it.
type Change struct {
	ID       string          `json:"id"`
	Rule     string          `json:"rule"`
	Root     string          `json:"root"`
	Time     time.Time       `json:"time"`
	Before   string          `json:"evidenceBefore"`
	After    string          `json:"evidenceAfter"`
	Files    []FileChange    `json:"files"`
	Dirs     []string        `json:"createdDirs,omitempty"`
	Runtime  []RuntimeChange `json:"runtime,omitempty"`
	Rollback *time.Time      `json:"rolledBackAt,omitempty"`
}

// Apply remediates a NonCompliant rule: it changes the files the fix needs
// (backing each up in the returned Change), re-evaluates, and undoes its
// own writes when the rule is still not Compliant. A rule already
// Compliant returns (nil, nil). Unknown rules are not remediated.
func (r *Rule) Apply(ctx context.Context, env Env) (*Change, error) {
	rem, ok := r.check.(remediator)
	if !ok {
		return nil, fmt.Errorf("rule %s: %w", r.ID, ErrNotRemediable)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := newSnapshot(env)
	st, before := r.evaluate(s)
	switch st {
	case Compliant:
		return nil, nil
	case Unknown:
		return nil, fmt.Errorf("rule %s cannot be remediated while its state is Unknown: %s", r.ID, before)
	}
	tx := &changeTx{env: s.env, byPath: map[string]int{}}
	if err := rem.remediate(s, tx); err != nil {
		if uerr := tx.undo(); uerr != nil {
			return nil, fmt.Errorf("remediate %s: %w (and undoing its partial changes failed: %v)", r.ID, err, uerr)
		}
		return nil, fmt.Errorf("remediate %s: %w", r.ID, err)
	}
	s.forget()
	st, after := r.evaluate(s)
	if st != Compliant {
		if uerr := tx.undo(); uerr != nil {
			return nil, fmt.Errorf("remediation of %s left it %s (%s) and undoing it failed: %v", r.ID, st, after, uerr)
		}
		return nil, fmt.Errorf("remediation of %s left it %s (%s); its changes were undone", r.ID, st, after)
	}
	ch := &Change{ID: newID(), Rule: r.ID, Root: s.env.Root, Time: s.env.now().UTC(), Before: before, After: after, Dirs: tx.dirs, Runtime: tx.runtime}
	for i := range tx.files {
		fc := &tx.files[i]
		cur, err := s.env.fileState(fc.Path, false)
		if err != nil {
			return nil, fmt.Errorf("record %s: %w", fc.Path, err)
		}
		fc.After = cur
		ch.Files = append(ch.Files, *fc)
	}
	return ch, nil
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Rollback restores what a Change changed. It first checks every file and
// runtime value is as the remediation left it; if one changed since, it
// refuses with ErrChangedSinceApply unless force is set.
func Rollback(ctx context.Context, env Env, ch *Change, force bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if !force {
		var changed []string
		for _, fc := range ch.Files {
			cur, err := env.fileState(fc.Path, false)
			if err != nil {
				return fmt.Errorf("rollback %s: %w", ch.ID, err)
			}
			if d := stateDiff(cur, fc.After); d != "" {
				changed = append(changed, fc.Path+" ("+d+")")
			}
		}
		for _, rc := range ch.Runtime {
			cur, err := env.readSysctlRuntime(rc.Sysctl)
			if err != nil {
				return fmt.Errorf("rollback %s: %w", ch.ID, err)
			}
			if cur != rc.After {
				changed = append(changed, fmt.Sprintf("runtime %s (now %s, remediation set %s)", rc.Sysctl, cur, rc.After))
			}
		}
		if len(changed) > 0 {
			return fmt.Errorf("rollback %s: %s %w; use force to restore anyway", ch.ID, strings.Join(changed, ", "), ErrChangedSinceApply)
		}
	}
	for i := len(ch.Files) - 1; i >= 0; i-- {
		if err := env.restoreFile(ch.Files[i]); err != nil {
			return fmt.Errorf("rollback %s: restore %s: %w", ch.ID, ch.Files[i].Path, err)
		}
	}
	for i := len(ch.Dirs) - 1; i >= 0; i-- {
		if hp, err := env.HostPath(ch.Dirs[i]); err == nil {
			_ = os.Remove(hp) // only if empty
		}
	}
	for _, rc := range ch.Runtime {
		if err := env.writeSysctlRuntime(rc.Sysctl, rc.Before); err != nil {
			return fmt.Errorf("rollback %s: runtime %s: %w", ch.ID, rc.Sysctl, err)
		}
	}
	return nil
}

func stateDiff(cur, want FileState) string {
	switch {
	case cur.Exists != want.Exists && want.Exists:
		return "deleted"
	case cur.Exists != want.Exists:
		return "created"
	case !cur.Exists:
		return ""
	case cur.Dir != want.Dir:
		return "replaced"
	case cur.SHA256 != want.SHA256:
		return "content changed"
	case cur.Mode != want.Mode:
		return fmt.Sprintf("mode %s, remediation left %s", fmtMode(cur.Mode), fmtMode(want.Mode))
	case cur.UID != want.UID || cur.GID != want.GID:
		return fmt.Sprintf("owner %d:%d, remediation left %d:%d", cur.UID, cur.GID, want.UID, want.GID)
	}
	return ""
}

// fileState reads a file's state; keep copies the content.
func (e Env) fileState(p string, keep bool) (FileState, error) {
	hp, err := e.HostPath(p)
	if err != nil {
		return FileState{}, err
	}
	fi, err := os.Stat(hp)
	if errors.Is(err, fs.ErrNotExist) {
		return FileState{}, nil
	}
	if err != nil {
		return FileState{}, err
	}
	st := fi.Sys().(*syscall.Stat_t)
	out := FileState{Exists: true, Mode: uint32(st.Mode) & 07777, UID: int(st.Uid), GID: int(st.Gid)}
	if fi.IsDir() {
		out.Dir = true
		return out, nil
	}
	if !fi.Mode().IsRegular() {
		return FileState{}, fmt.Errorf("%s is neither a regular file nor a directory", p)
	}
	if fi.Size() > maxBackupBytes {
		return FileState{}, fmt.Errorf("%s is larger than %d bytes", p, maxBackupBytes)
	}
	b, err := os.ReadFile(hp)
	if err != nil {
		return FileState{}, err
	}
	sum := sha256.Sum256(b)
	out.SHA256 = hex.EncodeToString(sum[:])
	if keep {
		out.Content = b
	}
	return out, nil
}

func (e Env) restoreFile(fc FileChange) error {
	hp, err := e.HostPath(fc.Path)
	if err != nil {
		return err
	}
	if !fc.Before.Exists {
		if err := os.Remove(hp); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	cur, err := e.fileState(fc.Path, false)
	if err != nil {
		return err
	}
	if !fc.Before.Dir && (!cur.Exists || cur.SHA256 != fc.Before.SHA256) {
		if fc.Before.Content == nil && fc.Before.SHA256 != "" {
			return fmt.Errorf("the change record has no copy of its content (only mode and owner were changed) and the content differs")
		}
		return atomicWrite(hp, fc.Before.Content, fc.Before.Mode, fc.Before.UID, fc.Before.GID)
	}
	if err := os.Chown(hp, fc.Before.UID, fc.Before.GID); err != nil {
		return err
	}
	return os.Chmod(hp, fs.FileMode(fc.Before.Mode)&fs.ModePerm|modeBits(fc.Before.Mode))
}

// modeBits maps setuid/setgid/sticky permission bits to fs.FileMode bits.
func modeBits(m uint32) fs.FileMode {
	var out fs.FileMode
	if m&04000 != 0 {
		out |= fs.ModeSetuid
	}
	if m&02000 != 0 {
		out |= fs.ModeSetgid
	}
	if m&01000 != 0 {
		out |= fs.ModeSticky
	}
	return out
}

func chmodExact(hp string, perm uint32) error {
	return os.Chmod(hp, fs.FileMode(perm)&fs.ModePerm|modeBits(perm))
}

// atomicWrite replaces a file through a temporary file in the same
// directory, with the given mode and owner, synced before the rename.
func atomicWrite(hp string, content []byte, perm uint32, uid, gid int) error {
	dir := filepath.Dir(hp)
	f, err := os.CreateTemp(dir, ".corral-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Chown(uid, gid); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(fs.FileMode(perm)&fs.ModePerm | modeBits(perm)); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, hp); err != nil {
		return err
	}
	ok = true
	return nil
}

// changeTx records what a remediation does as it does it, so a failure
// (or a remediation that did not help) is undone and a success recorded.
type changeTx struct {
	env     Env
	files   []FileChange
	byPath  map[string]int
	dirs    []string
	runtime []RuntimeChange
}

// touch records a file's state before its first change.
func (tx *changeTx) touch(p string, keepContent bool) error {
	if i, ok := tx.byPath[p]; ok {
		if keepContent && tx.files[i].Before.Exists && tx.files[i].Before.Content == nil {
			st, err := tx.env.fileState(p, true)
			if err != nil {
				return err
			}
			tx.files[i].Before.Content = st.Content
		}
		return nil
	}
	st, err := tx.env.fileState(p, keepContent)
	if err != nil {
		return err
	}
	tx.byPath[p] = len(tx.files)
	tx.files = append(tx.files, FileChange{Path: p, Before: st})
	return nil
}

// setMeta changes a file's permission bits and owner (-1: unchanged).
func (tx *changeTx) setMeta(p string, perm uint32, uid, gid int) error {
	if err := tx.touch(p, false); err != nil {
		return err
	}
	hp, err := tx.env.HostPath(p)
	if err != nil {
		return err
	}
	if uid >= 0 || gid >= 0 {
		if err := os.Chown(hp, uid, gid); err != nil {
			return err
		}
	}
	return chmodExact(hp, perm)
}

// writeFile replaces (or creates, with perm and root ownership) a file.
func (tx *changeTx) writeFile(p string, content []byte, perm uint32) error {
	if err := tx.touch(p, true); err != nil {
		return err
	}
	before := tx.files[tx.byPath[p]].Before
	uid, gid := 0, 0
	if before.Exists {
		perm, uid, gid = before.Mode, before.UID, before.GID
	}
	if err := tx.mkdirs(path.Dir(p)); err != nil {
		return err
	}
	hp, err := tx.env.HostPath(p)
	if err != nil {
		return err
	}
	return atomicWrite(hp, content, perm, uid, gid)
}

// mkdirs creates missing directories (root-owned, 0755), recording them.
func (tx *changeTx) mkdirs(d string) error {
	if d == "/" || d == "." {
		return nil
	}
	hp, err := tx.env.HostPath(d)
	if err != nil {
		return err
	}
	if fi, err := os.Stat(hp); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", d)
		}
		return nil
	}
	if err := tx.mkdirs(path.Dir(d)); err != nil {
		return err
	}
	if err := os.Mkdir(hp, 0o755); err != nil {
		return err
	}
	tx.dirs = append(tx.dirs, d)
	return nil
}

// setSysctl changes a live kernel value (Live only).
func (tx *changeTx) setSysctl(key, value string) error {
	before, err := tx.env.readSysctlRuntime(key)
	if err != nil {
		return err
	}
	if err := tx.env.writeSysctlRuntime(key, value); err != nil {
		return err
	}
	after, err := tx.env.readSysctlRuntime(key)
	if err != nil {
		return err
	}
	tx.runtime = append(tx.runtime, RuntimeChange{Sysctl: key, Before: before, After: after})
	return nil
}

// undo restores everything the transaction changed, newest first.
func (tx *changeTx) undo() error {
	var errs []error
	for i := len(tx.runtime) - 1; i >= 0; i-- {
		if err := tx.env.writeSysctlRuntime(tx.runtime[i].Sysctl, tx.runtime[i].Before); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(tx.files) - 1; i >= 0; i-- {
		fc := tx.files[i]
		if err := tx.env.restoreFile(fc); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", fc.Path, err))
		}
	}
	for i := len(tx.dirs) - 1; i >= 0; i-- {
		if hp, err := tx.env.HostPath(tx.dirs[i]); err == nil {
			_ = os.Remove(hp)
		}
	}
	return errors.Join(errs...)
}
