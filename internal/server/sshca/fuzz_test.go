package sshca

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"testing"

	"golang.org/x/crypto/ssh"
)

// FuzzCheckKey: the public key a caller asks the SSH CA to sign (an API
// body) is refused with ErrBadKey or is a plain key of an accepted type
// (RSA of at least MinRSABits) that marshals back to the key read.
func FuzzCheckKey(f *testing.F) {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ed, _ := ssh.NewPublicKey(edPub)
	rk, _ := rsa.GenerateKey(rand.Reader, 1024)
	small, _ := ssh.NewPublicKey(&rk.PublicKey)
	signer, _ := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(make([]byte, 32)))
	cert := &ssh.Certificate{Key: ed, CertType: ssh.UserCert, ValidPrincipals: []string{"x"}, ValidBefore: ssh.CertTimeInfinity}
	cert.SignCert(rand.Reader, signer)
	for _, k := range []ssh.PublicKey{ed, small, cert} {
		f.Add(ssh.MarshalAuthorizedKey(k))
	}
	f.Add([]byte(`ssh-dss AAAAB3NzaC1kc3M= x`))
	f.Add([]byte("command=\"x\" " + string(ssh.MarshalAuthorizedKey(ed))))
	f.Add([]byte("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIA== \n ssh-rsa"))
	f.Fuzz(func(t *testing.T, line []byte) {
		pub, err := checkKey(line)
		if err != nil {
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("refused with %v, not ErrBadKey", err)
			}
			return
		}
		if _, isCert := pub.(*ssh.Certificate); isCert {
			t.Fatal("a certificate was accepted as a key to sign")
		}
		if cpk, ok := pub.(ssh.CryptoPublicKey); ok {
			if r, ok := cpk.CryptoPublicKey().(*rsa.PublicKey); ok && r.N.BitLen() < MinRSABits {
				t.Fatalf("an RSA key of %d bits was accepted", r.N.BitLen())
			}
		}
		back, err := ssh.ParsePublicKey(pub.Marshal())
		if err != nil || !bytes.Equal(back.Marshal(), pub.Marshal()) {
			t.Fatalf("accepted key does not read back: %v", err)
		}
	})
}
