package sshca_test

import (
	"bytes"
	"crypto/dsa"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"

	"github.com/corralhq/corral/internal/server/sshca"
)

func authorizedKey(t testing.TB, pub any) []byte {
	t.Helper()
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.MarshalAuthorizedKey(k)
}

func newEd25519(t testing.TB) []byte {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return authorizedKey(t, pub)
}

func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	var wg sync.WaitGroup
	keys := make([]string, 8)
	errs := make([]error, 8)
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ca, err := sshca.LoadOrCreate(dir)
			errs[i] = err
			if err == nil {
				keys[i] = ca.AuthorizedKey()
			}
		}()
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if keys[i] != keys[0] {
			t.Fatalf("concurrent LoadOrCreate made two keys:\n%s\n%s", keys[0], keys[i])
		}
	}
	if !strings.HasPrefix(keys[0], "ssh-ed25519 ") || !strings.HasSuffix(keys[0], " corral-user-ca") {
		t.Errorf("authorized key %q", keys[0])
	}
	path := filepath.Join(dir, sshca.KeyFile)
	for p, want := range map[string]os.FileMode{dir: 0o700, path: 0o600} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, %v; want %04o", p, fi.Mode().Perm(), err, want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("data dir holds %d files, want only the key", len(ents))
	}
	again, err := sshca.LoadOrCreate(dir)
	if err != nil || again.AuthorizedKey() != keys[0] {
		t.Fatalf("reload: %v, key changed = %v", err, again.AuthorizedKey() != keys[0])
	}

	os.Chmod(path, 0o644)
	if _, err := sshca.LoadOrCreate(dir); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("world-readable key: %v", err)
	}
	os.Chmod(path, 0o600)
	os.WriteFile(path, []byte("not a key"), 0o600)
	if _, err := sshca.LoadOrCreate(dir); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("damaged key: %v", err)
	}
}

func newCA(t testing.TB) *sshca.CA {
	t.Helper()
	ca, err := sshca.LoadOrCreate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

var who = sshca.Identity{Session: "s-1", Caller: "alice@example.com", Machine: "web 1"}

func TestSign(t *testing.T) {
	ca := newCA(t)
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	cert, err := ca.Sign(sshca.Request{PublicKey: newEd25519(t), Principal: "admin@m-1", Identity: who, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cert.ValidAfter, uint64(now.Add(-30*time.Second).Unix()); got != want {
		t.Errorf("valid after %d, want %d (30 s backdated)", got, want)
	}
	if got, want := cert.ValidBefore, uint64(now.Add(5*time.Minute).Unix()); got != want {
		t.Errorf("valid before %d, want %d (5 min)", got, want)
	}
	if diff := cmp.Diff(ssh.Permissions{Extensions: map[string]string{"permit-pty": ""}}, cert.Permissions); diff != "" {
		t.Errorf("permissions (-want +got):\n%s", diff)
	}
	if cert.KeyId != "corral session=s-1 caller=alice@example.com machine=web%201" {
		t.Errorf("key id %q", cert.KeyId)
	}
	if cert.CertType != ssh.UserCert || len(cert.ValidPrincipals) != 1 || cert.ValidPrincipals[0] != "admin@m-1" {
		t.Errorf("cert type %d principals %v", cert.CertType, cert.ValidPrincipals)
	}

	// What sshd does, done by x/crypto's checker.
	checker := ssh.CertChecker{
		IsUserAuthority: func(k ssh.PublicKey) bool { return bytes.Equal(k.Marshal(), ca.PublicKey().Marshal()) },
		Clock:           func() time.Time { return now.Add(time.Minute) },
	}
	if err := checker.CheckCert("admin@m-1", cert); err != nil {
		t.Errorf("check: %v", err)
	}
	if err := checker.CheckCert("user@m-1", cert); err == nil {
		t.Error("certificate valid for another principal")
	}
	checker.Clock = func() time.Time { return now.Add(6 * time.Minute) }
	if err := checker.CheckCert("admin@m-1", cert); err == nil {
		t.Error("certificate valid after 6 minutes")
	}
	// Round trip through the text form the client receives.
	parsed, _, _, _, err := ssh.ParseAuthorizedKey(ssh.MarshalAuthorizedKey(cert))
	if err != nil || parsed.(*ssh.Certificate).Serial != cert.Serial {
		t.Fatalf("round trip: %v", err)
	}

	src, err := ca.Sign(sshca.Request{PublicKey: newEd25519(t), Principal: "u", Identity: who, Validity: time.Hour, Extensions: []string{},
		SourceAddresses: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(ssh.Permissions{CriticalOptions: map[string]string{"source-address": "127.0.0.1/32,::1/128"}, Extensions: map[string]string{}}, src.Permissions); diff != "" {
		t.Errorf("permissions (-want +got):\n%s", diff)
	}
	if d := time.Duration(src.ValidBefore-src.ValidAfter) * time.Second; d != time.Hour+30*time.Second {
		t.Errorf("validity window %s", d)
	}
}

func TestSignRefuses(t *testing.T) {
	ca := newCA(t)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	rsa2048, _ := rsa.GenerateKey(rand.Reader, 2048)
	var dsaKey dsa.PrivateKey
	dsa.GenerateParameters(&dsaKey.Parameters, rand.Reader, dsa.L1024N160)
	dsa.GenerateKey(&dsaKey, rand.Reader)
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := newEd25519(t)
	cert, err := ca.Sign(sshca.Request{PublicKey: good, Principal: "u", Identity: who})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		req     sshca.Request
		badKey  bool
		wantErr string
	}{
		{name: "rsa 2048", req: sshca.Request{PublicKey: authorizedKey(t, &rsa2048.PublicKey)}},
		{name: "ecdsa p256", req: sshca.Request{PublicKey: authorizedKey(t, &ecKey.PublicKey)}},
		{name: "rsa 1024", req: sshca.Request{PublicKey: authorizedKey(t, &rsa1024.PublicKey)}, badKey: true, wantErr: "RSA key of 1024 bits"},
		{name: "dsa", req: sshca.Request{PublicKey: authorizedKey(t, &dsaKey.PublicKey)}, badKey: true, wantErr: "DSA keys are obsolete"},
		{name: "certificate", req: sshca.Request{PublicKey: ssh.MarshalAuthorizedKey(cert)}, badKey: true, wantErr: "already a certificate"},
		{name: "garbage", req: sshca.Request{PublicKey: []byte("ssh-ed25519 AAAAnope")}, badKey: true, wantErr: "not an authorized_keys line"},
		{name: "empty", req: sshca.Request{}, badKey: true, wantErr: "not an authorized_keys line"},
		{name: "ca's own key", req: sshca.Request{PublicKey: []byte(ca.AuthorizedKey())}, badKey: true, wantErr: "CA's own key"},
		{name: "bad principal", req: sshca.Request{PublicKey: good, Principal: "root,admin"}, wantErr: `principal "root,admin"`},
		{name: "empty principal", req: sshca.Request{PublicKey: good, Principal: "-"}, wantErr: "principal"},
		{name: "no session", req: sshca.Request{PublicKey: good, Identity: sshca.Identity{Caller: "a"}}, wantErr: "session and caller are required"},
		{name: "negative validity", req: sshca.Request{PublicKey: good, Validity: -time.Minute}, wantErr: "must be positive"},
		{name: "long validity", req: sshca.Request{PublicKey: good, Validity: 25 * time.Hour}, wantErr: "over the limit"},
		{name: "unknown extension", req: sshca.Request{PublicKey: good, Extensions: []string{"permit-everything"}}, wantErr: "permit-everything"},
		{name: "bad source", req: sshca.Request{PublicKey: good, SourceAddresses: []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("10.0.0.1"), 8)}}, wantErr: "host bits"},
	} {
		r := tc.req
		if r.Principal == "" {
			r.Principal = "corral-user"
		}
		if r.Identity == (sshca.Identity{}) {
			r.Identity = who
		}
		_, err := ca.Sign(r)
		if tc.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
		}
		if errors.Is(err, sshca.ErrBadKey) != tc.badKey {
			t.Errorf("%s: errors.Is(ErrBadKey) = %v, want %v", tc.name, errors.Is(err, sshca.ErrBadKey), tc.badKey)
		}
	}
}

func TestParseAndNew(t *testing.T) {
	pemBytes, err := sshca.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := sshca.Parse(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ca.Fingerprint(), "SHA256:") {
		t.Errorf("fingerprint %q", ca.Fingerprint())
	}
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	if _, err := sshca.New(rk); err == nil || !strings.Contains(err.Error(), "want ed25519") {
		t.Errorf("RSA CA key: %v", err)
	}
}

func BenchmarkSign(b *testing.B) {
	ca := newCA(b)
	key := newEd25519(b)
	for b.Loop() {
		if _, err := ca.Sign(sshca.Request{PublicKey: key, Principal: "corral-admin", Identity: who}); err != nil {
			b.Fatal(err)
		}
	}
}
