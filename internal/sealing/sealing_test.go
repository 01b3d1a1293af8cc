package sealing

import (
	"bytes"
	"errors"
	"testing"
)

func TestSealOpen(t *testing.T) {
	t.Parallel()
	priv, pub, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte(`{"password":"hunter2"}`)
	sealed, err := Seal(pub, []byte("m1/ext"), secret)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("hunter2")) {
		t.Fatal("ciphertext holds the plaintext")
	}
	got, err := Open(priv, []byte("m1/ext"), sealed)
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("Open = %q, %v", got, err)
	}
	// Another extension, another machine, a flipped bit, a truncation: refused.
	if _, err := Open(priv, []byte("m1/other"), sealed); err == nil {
		t.Error("opened with another extension's AAD")
	}
	other, _, _ := NewKey()
	if _, err := Open(other, []byte("m1/ext"), sealed); err == nil {
		t.Error("opened with another machine's key")
	}
	sealed[len(sealed)-1] ^= 1
	if _, err := Open(priv, []byte("m1/ext"), sealed); err == nil {
		t.Error("opened a tampered blob")
	}
	if _, err := Open(priv, nil, sealed[:10]); err == nil {
		t.Error("opened a truncated blob")
	}
	if _, err := Seal(nil, nil, secret); !errors.Is(err, ErrNoKey) {
		t.Errorf("Seal without key: %v", err)
	}
}

func BenchmarkSealOpen(b *testing.B) {
	priv, pub, _ := NewKey()
	msg := bytes.Repeat([]byte("x"), 1024)
	for b.Loop() {
		s, _ := Seal(pub, []byte("a"), msg)
		if _, err := Open(priv, []byte("a"), s); err != nil {
			b.Fatal(err)
		}
	}
}
