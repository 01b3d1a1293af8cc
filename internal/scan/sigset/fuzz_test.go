package sigset

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var fuzzKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, 32))

// FuzzBuildLoad: signature files an administrator uploads either fail to
// build or build into a set every agent loads, with the counts its header
// claims: the control plane never ships a set the agents refuse.
func FuzzBuildLoad(f *testing.F) {
	f.Add("44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n", strings.Repeat("a", 64)+":*:T\n", "Test.Sig:0:*:414243444546\nT2:0:*:41424344{2-4}58595a5b\n")
	f.Add("", "", "T:0:*:41424344(45|4647)48\r\nT:0:*:414243444?:51:255\n")
	f.Add("x", "", "T:0:*:zz\n")
	f.Add("", "", "T:1:*:4142\nT:0:*:!(41)42\n")
	pub := fuzzKey.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, hdb, hsb, ndb string) {
		dir := t.TempDir()
		var files []string
		for name, body := range map[string]string{"a.hdb": hdb, "b.hsb": hsb, "c.ndb": ndb} {
			p := filepath.Join(dir, name)
			if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
				t.Fatal(err)
			}
			files = append(files, p)
		}
		set, h, _, err := Build(fuzzKey, 1, time.Unix(1e9, 0), files...)
		if err != nil {
			return
		}
		db, got, err := Load(pub, set, true)
		if err != nil {
			t.Fatalf("a set the control plane built does not load: %v", err)
		}
		if got.Total() != h.Total() || db.Stats().HashSignatures != h.HashSignatures {
			t.Fatalf("loaded header %+v, built %+v", got, h)
		}
		set[len(set)-1] ^= 1
		if _, _, err := Load(pub, set, true); !errors.Is(err, ErrBadSignature) && !errors.Is(err, ErrMalformed) {
			t.Fatalf("a set with a changed body loaded (%v)", err)
		}
	})
}

// FuzzVerify: whatever bytes an agent receives as a set, Verify accepts
// only what the pinned key signed, and Load of a signed set with any
// header and body fails cleanly or loads the counts the header claims.
func FuzzVerify(f *testing.F) {
	f.Add([]byte(`{"version":1,"hashSignatures":0,"bodySignatures":0,"bodySize":0,"bodySha256":""}`), []byte{}, false)
	f.Add([]byte(`{}`), []byte("\x1f\x8b"), true)
	pub := fuzzKey.Public().(ed25519.PublicKey)
	f.Fuzz(func(t *testing.T, header, body []byte, sign bool) {
		signed := append(binary.BigEndian.AppendUint32([]byte(magic), uint32(len(header))), header...)
		sig := make([]byte, ed25519.SignatureSize)
		if sign {
			sig = ed25519.Sign(fuzzKey, signed)
		}
		set := append(append(signed, sig...), body...)
		h, _, err := Verify(pub, set)
		if !sign {
			if err == nil {
				t.Fatal("an unsigned set verified")
			}
			return
		}
		if err != nil {
			return
		}
		if h.BodySize != int64(len(body)) {
			t.Fatalf("header says %d body bytes, body has %d", h.BodySize, len(body))
		}
		if db, lh, err := Load(pub, set, true); err == nil && db.Stats().HashSignatures != lh.HashSignatures {
			t.Fatalf("loaded %+v, header %+v", db.Stats(), lh)
		}
	})
}
