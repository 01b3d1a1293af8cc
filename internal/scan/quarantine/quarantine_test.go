package quarantine_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corralhq/corral/internal/scan/quarantine"
	"github.com/corralhq/corral/internal/testutil"
)

var now = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func open(t *testing.T, dir string) *quarantine.Quarantine {
	t.Helper()
	q, err := quarantine.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

// onlyRecords lists the quarantine directory without lock and exclusion files.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range des {
		if d.Name() != ".lock" && d.Name() != quarantine.ExclusionsFile {
			out = append(out, d.Name())
		}
	}
	return out
}

func TestAddListRestore(t *testing.T) {
	testutil.NeedRoot(t) // owners other than root
	t.Parallel()
	dir := t.TempDir()
	qdir := filepath.Join(t.TempDir(), "quarantine")
	q := open(t, qdir)
	path := filepath.Join(dir, "evil.sh")
	content := []byte("#!/bin/sh\necho evil\n")
	os.WriteFile(path, content, 0o600)
	os.Chown(path, 1234, 5678)
	unix.Chmod(path, 0o4751)
	rec, err := q.Add(path, "Test.Sig", now)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the original is still there: %v", err)
	}
	want := quarantine.Record{ID: rec.ID, Path: path, UID: 1234, GID: 5678, Mode: 0o4751, Size: int64(len(content)),
		SHA256: sum(content), Signature: "Test.Sig", Time: now}
	if rec != want {
		t.Errorf("record %+v, want %+v", rec, want)
	}
	fi, err := os.Stat(filepath.Join(qdir, rec.ID+".data"))
	if err != nil || fi.Mode().Perm() != 0 {
		t.Errorf("quarantined content: %v, mode %v, want 0000", err, fi.Mode())
	}
	if qi, _ := os.Stat(qdir); qi.Mode().Perm() != 0o700 {
		t.Errorf("quarantine mode %v", qi.Mode())
	}
	list, err := q.List()
	if err != nil || len(list) != 1 || list[0] != want {
		t.Errorf("list %+v %v", list, err)
	}
	// Restore refuses to overwrite, unless forced.
	os.WriteFile(path, []byte("new file"), 0o644)
	if _, err := q.Restore(rec.ID, false); !errors.Is(err, quarantine.ErrExists) {
		t.Errorf("restore over a file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "new file" {
		t.Errorf("the existing file was changed: %q", b)
	}
	if _, err := q.Restore(rec.ID, true); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	unix.Stat(path, &st)
	if b, _ := os.ReadFile(path); !bytes.Equal(b, content) || st.Uid != 1234 || st.Gid != 5678 || st.Mode&0o7777 != 0o4751 {
		t.Errorf("restored %q uid %d gid %d mode %o", b, st.Uid, st.Gid, st.Mode&0o7777)
	}
	if e := entries(t, qdir); len(e) != 0 {
		t.Errorf("left in the quarantine: %v", e)
	}
	if _, err := q.Restore(rec.ID, false); !errors.Is(err, quarantine.ErrNotFound) {
		t.Errorf("second restore: %v", err)
	}
	if _, err := q.Restore("../../etc/passwd", false); !errors.Is(err, quarantine.ErrNotFound) {
		t.Errorf("bad id: %v", err)
	}
}

func TestExclusionsAreReadLive(t *testing.T) {
	t.Parallel()
	qdir := t.TempDir()
	q := open(t, qdir)
	x := quarantine.NewExclusions(qdir)
	h := sum([]byte("x"))
	if x.Contains(h) || x.Err() != nil {
		t.Fatalf("empty list: %v", x.Err())
	}
	if err := q.AddExclusion(quarantine.Exclusion{SHA256: h, Path: "/x", Time: now}); err != nil {
		t.Fatal(err)
	}
	q.AddExclusion(quarantine.Exclusion{SHA256: h, Path: "/x", Time: now})
	if !x.Contains(h) {
		t.Error("exclusion not seen")
	}
	if l, _ := q.ListExclusions(); len(l) != 1 {
		t.Errorf("exclusions %+v, want one", l)
	}
	os.WriteFile(filepath.Join(qdir, quarantine.ExclusionsFile), []byte("{broken"), 0o600)
	if x.Contains(h) || x.Err() == nil {
		t.Error("a broken list must exclude nothing and say why")
	}
}

// TestFullDiskLeavesTheFileWhereItWas quarantines into a 256 KiB tmpfs
// mounted in a private mount namespace (a child process; the host's mounts
// are not touched): across filesystems the file is copied, so a file larger
// than the free space must stay where it was, whole, with an error that
// says so, and nothing half-written in the quarantine.
func TestFullDiskLeavesTheFileWhereItWas(t *testing.T) {
	testutil.NeedRoot(t)
	if !testutil.InChild(t, &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}) {
		return
	}
	qdir := t.TempDir()
	if err := unix.Mount("tmpfs", qdir, "tmpfs", 0, "size=256k,mode=0700"); err != nil {
		t.Fatalf("mount tmpfs in the private namespace: %v", err)
	}
	defer unix.Unmount(qdir, unix.MNT_DETACH)
	q := open(t, qdir)
	src := t.TempDir() // on another filesystem than the tmpfs
	small := filepath.Join(src, "small.bin")
	os.WriteFile(small, bytes.Repeat([]byte("s"), 10<<10), 0o640)
	rec, err := q.Add(small, "Test.Small", now)
	if err != nil {
		t.Fatalf("small file across filesystems: %v", err)
	}
	if _, err := os.Stat(small); !errors.Is(err, os.ErrNotExist) {
		t.Error("small file not moved")
	}
	big := filepath.Join(src, "big.bin")
	content := bytes.Repeat([]byte("0123456789"), 100<<10) // 1000 KiB
	os.WriteFile(big, content, 0o640)
	_, err = q.Add(big, "Test.Big", now)
	if err == nil || !errors.Is(err, unix.ENOSPC) || !strings.Contains(err.Error(), "left where it is") || !strings.Contains(err.Error(), big) {
		t.Fatalf("got %v, want ENOSPC saying %s was left where it is", err, big)
	}
	if b, err := os.ReadFile(big); err != nil || !bytes.Equal(b, content) {
		t.Fatalf("the file is not intact where it was: %v", err)
	}
	if e := entries(t, qdir); len(e) != 2 || e[0] != rec.ID+".data" || e[1] != rec.ID+".json" {
		t.Errorf("quarantine holds %v, want only the small file's entry", e)
	}
	// Fill the tmpfs completely: now even the record does not fit.
	filler, _ := os.Create(filepath.Join(qdir, "filler"))
	filler.Write(make([]byte, 1<<20))
	filler.Close()
	tiny := filepath.Join(src, "tiny.bin")
	os.WriteFile(tiny, []byte("tiny"), 0o640)
	if _, err := q.Add(tiny, "Test.Tiny", now); err == nil || !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("full quarantine: %v", err)
	}
	if b, _ := os.ReadFile(tiny); string(b) != "tiny" {
		t.Error("tiny file lost")
	}
	os.Remove(filepath.Join(qdir, "filler"))
	if e := entries(t, qdir); len(e) != 2 {
		t.Errorf("quarantine holds %v after the failures", e)
	}
	// Restore across filesystems copies back and verifies.
	if _, err := q.Restore(rec.ID, false); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(small); err != nil || fi.Size() != 10<<10 || fi.Mode().Perm() != 0o640 {
		t.Errorf("restored small file: %v %v", fi, err)
	}
}
