package sigset_test

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/scan"
	"github.com/corralhq/corral/internal/scan/sigset"
)

var created = time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)

func sigFiles(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	hdb := filepath.Join(dir, "a.hdb")
	os.WriteFile(hdb, []byte("44D88612FEA8A8F36DE82E1278ABB02F:68:Eicar.Hash:73\n"), 0o644)
	hsb := filepath.Join(dir, "b.hsb")
	os.WriteFile(hsb, []byte(strings.Repeat("ab", 32)+":*:Some.SHA256\n"), 0o644)
	ndb := filepath.Join(dir, "c.ndb")
	os.WriteFile(ndb, []byte("Body.One:0:*:"+hex.EncodeToString([]byte("corral-test-body"))+"\nPE.Only:1:*:41424344\n"), 0o644)
	return []string{hdb, hsb, ndb}
}

func TestBuildVerifyLoad(t *testing.T) {
	t.Parallel()
	pub, priv, _ := ed25519.GenerateKey(nil)
	set, h, unsup, err := sigset.Build(priv, 7, created, sigFiles(t)...)
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 7 || h.HashSignatures != 2 || h.BodySignatures != 1 || h.Unsupported != 1 || len(unsup) != 1 || unsup[0].Line != 2 {
		t.Errorf("header %+v unsupported %+v", h, unsup)
	}
	db, lh, err := sigset.Load(pub, set, false)
	if err != nil {
		t.Fatal(err)
	}
	if lh.Version != 7 || db.Stats().Total() != 4 {
		t.Errorf("loaded %+v %+v", lh, db.Stats())
	}
	e := scan.New(db, scan.Options{})
	if r := e.ScanBytes("x", []byte("..corral-test-body..")); !r.Infected() || r.Findings[0].Signature != "Body.One" {
		t.Errorf("body signature from the set: %+v", r)
	}
	if r := e.ScanBytes("x", scan.EICAR()); !r.Infected() {
		t.Errorf("EICAR: %+v", r)
	}
}

func TestBuildRefusesMalformedSources(t *testing.T) {
	t.Parallel()
	_, priv, _ := ed25519.GenerateKey(nil)
	bad := filepath.Join(t.TempDir(), "bad.ndb")
	os.WriteFile(bad, []byte("Ok:0:*:41424344\nBad:0:*:41zz\n"), 0o644)
	_, _, _, err := sigset.Build(priv, 1, created, bad)
	var pe *scan.ParseError
	if !errors.As(err, &pe) || pe.Line != 2 {
		t.Errorf("got %v, want a parse error at line 2", err)
	}
}

func TestStoreKeepsThePreviousSetOnABadUpdate(t *testing.T) {
	t.Parallel()
	pub, priv, _ := ed25519.GenerateKey(nil)
	_, otherPriv, _ := ed25519.GenerateKey(nil)
	st := &sigset.Store{Dir: filepath.Join(t.TempDir(), "signatures"), PublicKey: pub}
	files := sigFiles(t)
	v1, _, _, _ := sigset.Build(priv, 1, created, files...)
	if _, _, err := st.Install(v1); err != nil {
		t.Fatal(err)
	}
	tampered := append([]byte{}, v1...)
	tampered[len(tampered)-10] ^= 0xff
	forged, _, _, _ := sigset.Build(otherPriv, 2, created, files...)
	older, _, _, _ := sigset.Build(priv, 0, created, files...)
	headerEdit := []byte(strings.Replace(string(v1), `"version":1`, `"version":9`, 1))
	tests := []struct {
		name string
		set  []byte
		want error
	}{
		{"signed by another key", forged, sigset.ErrBadSignature},
		{"body tampered", tampered, sigset.ErrBadSignature},
		{"header edited", headerEdit, sigset.ErrBadSignature},
		{"truncated", v1[:40], sigset.ErrMalformed},
		{"not a set", []byte("hello"), sigset.ErrMalformed},
		{"older", older, sigset.ErrOlder},
	}
	for _, tt := range tests {
		_, _, err := st.Install(tt.set)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), "keeping the current one") {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
		if h, err := st.Current(); err != nil || h.Version != 1 {
			t.Errorf("%s: current set is now %+v %v, want version 1", tt.name, h, err)
		}
		if _, h, err := st.Load(); err != nil || h.Version != 1 {
			t.Errorf("%s: load: %v", tt.name, err)
		}
	}
	v2, _, _, _ := sigset.Build(priv, 2, created, files...)
	if _, h, err := st.Install(v2); err != nil || h.Version != 2 {
		t.Fatalf("v2: %v", err)
	}
	if _, err := os.Stat(filepath.Join(st.Dir, "previous.sigset")); err != nil {
		t.Errorf("previous set not kept: %v", err)
	}
	// The installed file itself is verified again on load.
	cur := filepath.Join(st.Dir, "current.sigset")
	os.WriteFile(cur, tampered, 0o600)
	if _, _, err := st.Load(); !errors.Is(err, sigset.ErrBadSignature) {
		t.Errorf("tampered installed set: %v", err)
	}
}
