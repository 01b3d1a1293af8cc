// Package sshcert is the client side of a certificate login (`corral ssh`):
// it generates an ephemeral ed25519 key pair in memory, whose public half
// the control plane signs (internal/server/sshca), and writes the private
// key and the certificate to a private temporary directory for OpenSSH's
// `ssh -i`, removing them afterwards.
//
// The private key never leaves the process except into that directory
// (mode 0700, files 0600), preferably under $XDG_RUNTIME_DIR, which is a
// per-user tmpfs on systemd machines. A Key and Files are not safe for
// concurrent mutation; Remove is idempotent.
package sshcert

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
)

// Key is an ephemeral key pair.
type Key struct {
	priv   ed25519.PrivateKey
	signer ssh.Signer
}

// NewKey generates a key pair in memory.
func NewKey() (*Key, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate ssh key: %w", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("generate ssh key: %w", err)
	}
	return &Key{priv: priv, signer: s}, nil
}

// PublicKey is the public half.
func (k *Key) PublicKey() ssh.PublicKey { return k.signer.PublicKey() }

// AuthorizedKey is the public half in authorized_keys format, what the
// control plane is asked to sign.
func (k *Key) AuthorizedKey() []byte { return ssh.MarshalAuthorizedKey(k.PublicKey()) }

// ParseCertificate reads the certificate the control plane returned (one
// authorized_keys line) and checks that it is a user certificate for this
// key.
func (k *Key) ParseCertificate(line []byte) (*ssh.Certificate, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey(line)
	if err != nil {
		return nil, fmt.Errorf("ssh certificate: %w", err)
	}
	cert, ok := pub.(*ssh.Certificate)
	if !ok {
		return nil, fmt.Errorf("ssh certificate: got a plain %s key, not a certificate", pub.Type())
	}
	if cert.CertType != ssh.UserCert {
		return nil, errors.New("ssh certificate: not a user certificate")
	}
	if !bytes.Equal(cert.Key.Marshal(), k.PublicKey().Marshal()) {
		return nil, errors.New("ssh certificate: it certifies another key than this one")
	}
	return cert, nil
}

// Signer authenticates with the certificate from Go's SSH client.
func (k *Key) Signer(cert *ssh.Certificate) (ssh.Signer, error) {
	return ssh.NewCertSigner(cert, k.signer)
}

// Files are the key and certificate written for OpenSSH.
type Files struct {
	Dir      string // private directory holding both
	KeyPath  string // Dir/id_ed25519
	CertPath string // Dir/id_ed25519-cert.pub, where ssh -i looks for it
	Cert     *ssh.Certificate
}

// WriteFiles checks the certificate (see ParseCertificate) and writes key
// and certificate into a new private directory under parent ("" means
// $XDG_RUNTIME_DIR when set, else the system temp dir). The caller removes
// them with Remove once ssh has exited.
func (k *Key) WriteFiles(parent string, certLine []byte) (*Files, error) {
	cert, err := k.ParseCertificate(certLine)
	if err != nil {
		return nil, err
	}
	if parent == "" {
		parent = os.Getenv("XDG_RUNTIME_DIR")
	}
	dir, err := os.MkdirTemp(parent, "corral-ssh-*") // mode 0700
	if err != nil {
		return nil, fmt.Errorf("ssh key directory: %w", err)
	}
	f := &Files{Dir: dir, KeyPath: filepath.Join(dir, "id_ed25519"), CertPath: filepath.Join(dir, "id_ed25519-cert.pub"), Cert: cert}
	block, err := ssh.MarshalPrivateKey(k.priv, "corral ssh "+cert.KeyId)
	if err == nil {
		err = os.WriteFile(f.KeyPath, pem.EncodeToMemory(block), 0o600)
	}
	if err == nil {
		err = os.WriteFile(f.CertPath, ssh.MarshalAuthorizedKey(cert), 0o600)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("write ssh key files: %w", err)
	}
	return f, nil
}

// SSHArgs are the ssh options that make it use exactly this key and
// certificate.
func (f *Files) SSHArgs() []string {
	return []string{"-i", f.KeyPath, "-o", "CertificateFile=" + f.CertPath, "-o", "IdentitiesOnly=yes"}
}

// Expires is when the certificate stops being valid.
func (f *Files) Expires() time.Time { return time.Unix(int64(f.Cert.ValidBefore), 0) }

// Remove deletes the directory and both files.
func (f *Files) Remove() error {
	if err := os.RemoveAll(f.Dir); err != nil {
		return fmt.Errorf("remove ssh key files: %w", err)
	}
	return nil
}
