package sshcert

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"golang.org/x/crypto/ssh"
)

// FuzzParseCertificate: what the control plane (or anyone in between)
// returns as the certificate is refused, or is a user certificate for
// exactly this key.
func FuzzParseCertificate(f *testing.F) {
	k, err := NewKey()
	if err != nil {
		f.Fatal(err)
	}
	signer, _ := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(make([]byte, 32)))
	for _, typ := range []uint32{ssh.UserCert, ssh.HostCert} {
		cert := &ssh.Certificate{Key: k.PublicKey(), CertType: typ, ValidPrincipals: []string{"corral-admin"}, ValidBefore: ssh.CertTimeInfinity}
		cert.SignCert(rand.Reader, signer)
		f.Add(ssh.MarshalAuthorizedKey(cert))
	}
	f.Add(k.AuthorizedKey())
	f.Add([]byte("ssh-ed25519-cert-v01@openssh.com AAAA"))
	f.Fuzz(func(t *testing.T, line []byte) {
		cert, err := k.ParseCertificate(line)
		if err != nil {
			return
		}
		if cert.CertType != ssh.UserCert || !bytes.Equal(cert.Key.Marshal(), k.PublicKey().Marshal()) {
			t.Fatalf("accepted a certificate of type %d for another key", cert.CertType)
		}
	})
}
