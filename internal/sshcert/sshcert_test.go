package sshcert_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/server/sshca"
	"github.com/corralhq/corral/internal/sshcert"
	"github.com/corralhq/corral/internal/testutil"
	"golang.org/x/crypto/ssh"
)

func TestWriteFilesForOpenSSH(t *testing.T) {
	ca, err := sshca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	k, err := sshcert.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Sign(sshca.Request{PublicKey: k.AuthorizedKey(), Principal: "corral-user", Identity: sshca.Identity{Session: "s", Caller: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	f, err := k.WriteFiles(t.TempDir(), ssh.MarshalAuthorizedKey(cert))
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]os.FileMode{f.Dir: 0o700, f.KeyPath: 0o600, f.CertPath: 0o600} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %04o", p, fi.Mode().Perm(), err, want)
		}
	}
	if f.Expires().Unix() != int64(cert.ValidBefore) {
		t.Errorf("expires %v", f.Expires())
	}
	if got := strings.Join(f.SSHArgs(), " "); !strings.Contains(got, "-i "+f.KeyPath) || !strings.Contains(got, "CertificateFile="+f.CertPath) {
		t.Errorf("ssh args %q", got)
	}

	// OpenSSH's own tools read both files.
	keygen := testutil.NeedTool(t, "ssh-keygen")
	out, err := exec.Command(keygen, "-y", "-f", f.KeyPath).Output()
	if err != nil || strings.Fields(string(out))[1] != strings.Fields(string(k.AuthorizedKey()))[1] {
		t.Errorf("ssh-keygen -y: %q, %v", out, err)
	}
	out, err = exec.Command(keygen, "-L", "-f", f.CertPath).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "corral-user") || !strings.Contains(string(out), "permit-pty") {
		t.Errorf("ssh-keygen -L: %v\n%s", err, out)
	}

	if err := f.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(f.Dir); !os.IsNotExist(err) {
		t.Errorf("key directory still there: %v", err)
	}
	if err := f.Remove(); err != nil {
		t.Errorf("second remove: %v", err)
	}
}

func TestWriteFilesRefusesForeignCertificate(t *testing.T) {
	ca, err := sshca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mine, _ := sshcert.NewKey()
	other, _ := sshcert.NewKey()
	cert, err := ca.Sign(sshca.Request{PublicKey: other.AuthorizedKey(), Principal: "u", Identity: sshca.Identity{Session: "s", Caller: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	parent := t.TempDir()
	for name, line := range map[string][]byte{
		"another key's certificate": ssh.MarshalAuthorizedKey(cert),
		"a plain key":               mine.AuthorizedKey(),
		"garbage":                   []byte("nonsense"),
	} {
		if _, err := mine.WriteFiles(parent, line); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if ents, _ := os.ReadDir(parent); len(ents) != 0 {
		t.Errorf("refused certificates left %d entries", len(ents))
	}
}
