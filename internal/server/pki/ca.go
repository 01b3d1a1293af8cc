// Package pki is the control plane's certificate authority: it creates or
// loads the CA, issues the server certificate, signs machine client
// certificates from CSRs made on the machines, and verifies the client
// certificates agents present.
//
// Guarantees:
//   - Machine certificates are client-auth only, cannot act as a CA, name the
//     machine in CN and in a corral://machines/<id> URI SAN, and carry a
//     positive random 128-bit serial. Only the CSR's public key is used.
//   - VerifyMachineCert fails closed: a negative or zero serial
//     (ErrNegativeSerial, RFC 5280 §4.1.2.2), a certificate not signed by this
//     CA, without exactly the ClientAuth EKU, or whose URI and CN disagree
//     (ErrUntrustedCert), or outside its validity (ErrCertExpired) is refused.
//   - Private keys are written 0600 through a temp file and an atomic rename;
//     keys this package manages are refused (CA) or replaced (server) when
//     group or others may read them; a half-present CA is never overwritten.
//   - Keys and key material never appear in errors; errors from the sentinels
//     above are safe to return to the presenting client.
//
// Time is always passed in (now); nothing here reads the wall clock. A CA is
// immutable after loading and safe for concurrent use.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/machinekey"
)

// Sentinel errors. Callers branch on them with errors.Is; their text is safe
// to show to the client that presented the certificate or request.
var (
	ErrNegativeSerial = errors.New("certificate serial number is not positive (RFC 5280)")
	ErrUntrustedCert  = errors.New("certificate is not issued by this control plane for a machine")
	ErrCertExpired    = errors.New("certificate is expired or not yet valid")
	// ErrInvalidCSR is wrapped by every SignMachineCSR error caused by the
	// request itself (as opposed to a failure of the CA).
	ErrInvalidCSR = errors.New("invalid certificate request")
)

// CA signs certificates. It is safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     crypto.Signer
	pool    *x509.CertPool

	// verified remembers machine certificates that passed
	// VerifyMachineCert (see there).
	verifiedMu sync.Mutex
	verified   map[[sha256.Size]byte]verifiedCert
}

// LoadOrCreateCA loads DIR/ca.crt and DIR/ca.key, or creates them (ECDSA
// P-256, 10 years; key 0600, certificate 0644). created reports a new CA.
//
// It fails closed: when only one of the two files exists it refuses to
// create a new pair (that would orphan the other, or overwrite a key), and it
// refuses a ca.key that group or others may read, as sshd does.
func LoadOrCreateCA(dir string, now time.Time) (ca *CA, created bool, err error) {
	certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	certExists, err := exists(certFile)
	if err != nil {
		return nil, false, err
	}
	keyExists, err := exists(keyFile)
	if err != nil {
		return nil, false, err
	}
	switch {
	case certExists && keyExists:
		if err := checkPrivateMode(keyFile); err != nil {
			return nil, false, err
		}
		ca, err := LoadCA(certFile, keyFile)
		return ca, false, err
	case certExists || keyExists:
		return nil, false, fmt.Errorf("ca.crt and ca.key in %s must both exist or both be missing; refusing to create a new CA over one of them", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create CA directory: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, false, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, false, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "Corral CA", Organization: []string{"Corral"}},
		NotBefore: now.Add(-5 * time.Minute), NotAfter: now.AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, false, fmt.Errorf("create CA certificate: %w", err)
	}
	if err := writeKey(keyFile, key); err != nil {
		return nil, false, err
	}
	if err := writeFile(certFile, pemBlock("CERTIFICATE", der), 0o644); err != nil {
		return nil, false, err
	}
	ca, err = LoadCA(certFile, keyFile)
	return ca, true, err
}

// LoadCA loads a CA from PEM files (an operator-supplied CA). The key must be
// unencrypted PKCS#8, SEC 1 (EC) or PKCS#1 (RSA) and match the certificate.
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read CA certificate: %w", err)
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate %s: %w", certFile, err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, fmt.Errorf("CA certificate %s is not a CA (basic constraints)", certFile)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("CA certificate %s may not sign certificates (key usage)", certFile)
	}
	key, err := readKey(keyFile)
	if err != nil {
		return nil, fmt.Errorf("CA key %s: %w", keyFile, err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("CA key %s does not match certificate %s", keyFile, certFile)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{cert: cert, certPEM: pemBlock("CERTIFICATE", cert.Raw), key: key, pool: pool}, nil
}

// Certificate returns the CA certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// CertPEM returns the CA certificate in PEM.
func (c *CA) CertPEM() []byte { return c.certPEM }

// Pool returns a pool holding only this CA.
func (c *CA) Pool() *x509.CertPool { return c.pool }

// Fingerprint is "sha256:" + hex of the CA certificate's DER.
func (c *CA) Fingerprint() string { return fingerprint(c.cert.Raw) }

// FingerprintPEM returns the fingerprint of the first certificate in certPEM.
func FingerprintPEM(certPEM []byte) (string, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return "", err
	}
	return fingerprint(cert.Raw), nil
}

func fingerprint(der []byte) string { return machinekey.Fingerprint(der) }

// randomSerial returns a random serial in [1, 2^128).
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("random serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(blk.Bytes)
}

func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key: %w", err)
	}
	return writeFile(path, pemBlock("PRIVATE KEY", der), 0o600)
}

func readKey(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	return ParseKeyPEM(b)
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, os.ErrNotExist):
		return false, nil
	default:
		return false, fmt.Errorf("stat %s: %w", filepath.Base(path), err)
	}
}

// checkPrivateMode refuses a key file that group or others may access.
func checkPrivateMode(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("stat key: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("key file %s has mode %#o; it must not be accessible by group or others (chmod 600)", path, perm)
	}
	return nil
}

// ParseKeyPEM parses a PKCS#8, EC or PKCS#1 private key. Its errors never
// quote the key.
func ParseKeyPEM(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM private key block")
	}
	var k any
	var err error
	switch blk.Type {
	case "PRIVATE KEY":
		k, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		k, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		k, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("unsupported key block %q", blk.Type)
	}
	if err != nil {
		return nil, errors.New("malformed private key")
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("private key cannot sign")
	}
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// writeFile writes atomically (temp file + fsync + rename) with the given
// mode. The temp file is created 0600, so a key is never readable by others,
// not even for a moment.
func writeFile(path string, data []byte, mode os.FileMode) error {
	name := filepath.Base(path)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
