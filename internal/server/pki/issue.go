package pki

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// LoadOrCreateServerCert loads DIR/server.crt and server.key, or issues a
// server certificate from the CA for hosts (plus localhost, 127.0.0.1, ::1),
// valid one year (capped at the CA's NotAfter), key 0600. It is re-issued
// when it expires within 30 days or is not yet valid, when the hosts
// changed, when it was not issued by this CA, or when server.key is
// accessible by group or others. The returned chain holds the leaf only.
func (c *CA) LoadOrCreateServerCert(dir string, hosts []string, now time.Time) (tls.Certificate, error) {
	certFile, keyFile := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	want := normalizeHosts(append([]string{"localhost", "127.0.0.1", "::1"}, hosts...))
	if tc, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil && checkPrivateMode(keyFile) == nil {
		leaf, err := x509.ParseCertificate(tc.Certificate[0])
		if err == nil && !now.Before(leaf.NotBefore) && now.Add(30*24*time.Hour).Before(leaf.NotAfter) &&
			slices.Equal(certHosts(leaf), want) && leaf.CheckSignatureFrom(c.cert) == nil {
			tc.Leaf = leaf
			return tc, nil
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, fmt.Errorf("create server certificate directory: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate server key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: "corral server"},
		NotBefore: now.Add(-5 * time.Minute), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if tmpl.NotAfter.After(c.cert.NotAfter) {
		tmpl.NotAfter = c.cert.NotAfter
	}
	for _, h := range want {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issue server certificate: %w", err)
	}
	if err := writeKey(keyFile, key); err != nil {
		return tls.Certificate{}, err
	}
	if err := writeFile(certFile, pemBlock("CERTIFICATE", der), 0o644); err != nil {
		return tls.Certificate{}, err
	}
	tc, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("load issued server certificate: %w", err)
	}
	return tc, nil
}

func normalizeHosts(hs []string) []string {
	var out []string
	for _, h := range hs {
		h = strings.ToLower(strings.TrimSpace(h))
		if ip := net.ParseIP(h); ip != nil {
			h = ip.String()
		}
		if h != "" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out
}

func certHosts(c *x509.Certificate) []string {
	hs := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		hs = append(hs, ip.String())
	}
	return normalizeHosts(hs)
}

// MaxMachineIDLen bounds the machine id a certificate may name.
const MaxMachineIDLen = 128

// validMachineID reports whether id is safe to place in a CN and a URI path
// unescaped: a letter or digit, then letters, digits, '.', '_' or '-'.
// Machine ids are UUIDs today; this keeps any future id unambiguous.
func validMachineID(id string) bool {
	if id == "" || len(id) > MaxMachineIDLen {
		return false
	}
	for i, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case i > 0 && (r == '.' || r == '_' || r == '-'):
		default:
			return false
		}
	}
	return true
}

func machineURI(id string) *url.URL {
	return &url.URL{Scheme: "corral", Host: "machines", Path: "/" + id}
}

// SignMachineCSR validates a PEM CSR and issues a client certificate for
// machineID: CN = machineID, URI SAN corral://machines/<machineID>,
// ExtKeyUsage ClientAuth only, KeyUsage DigitalSignature, a positive random
// 128-bit serial, NotBefore now-5m and NotAfter now+validity (capped at the
// CA's own NotAfter). The returned notAfter is the one in the certificate
// (UTC, whole seconds).
//
// Only the CSR's public key is used: its subject, SANs and requested
// extensions are ignored. The CSR must be self-signed by a key that is ECDSA
// P-256/P-384, Ed25519 or RSA of 2048 to 8192 bits. Errors caused by the
// request wrap ErrInvalidCSR and are safe to return to the client.
func (c *CA) SignMachineCSR(csrPEM []byte, machineID string, now time.Time, validity time.Duration) (certPEM []byte, serial *big.Int, notAfter time.Time, err error) {
	if !validMachineID(machineID) {
		return nil, nil, time.Time{}, fmt.Errorf("sign machine certificate: invalid machine id %q", truncateID(machineID))
	}
	if validity <= 0 {
		return nil, nil, time.Time{}, fmt.Errorf("sign machine certificate: validity %v is not positive", validity)
	}
	blk, _ := pem.Decode(csrPEM)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, nil, time.Time{}, fmt.Errorf("%w: no PEM CERTIFICATE REQUEST block", ErrInvalidCSR)
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("%w: malformed", ErrInvalidCSR)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("%w: signature does not verify", ErrInvalidCSR)
	}
	if err := checkKey(csr.PublicKey); err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("%w: %w", ErrInvalidCSR, err)
	}
	serial, err = randomSerial()
	if err != nil {
		return nil, nil, time.Time{}, err
	}
	notAfter = now.Add(validity)
	if notAfter.After(c.cert.NotAfter) {
		notAfter = c.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: machineID}, URIs: []*url.URL{machineURI(machineID)},
		NotBefore: now.Add(-5 * time.Minute), NotAfter: notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true, // IsCA false: a machine can never sign
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, csr.PublicKey, c.key)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("sign machine certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, time.Time{}, fmt.Errorf("parse issued machine certificate: %w", err)
	}
	return pemBlock("CERTIFICATE", der), serial, leaf.NotAfter, nil
}

// truncateID keeps an invalid id short in an error message.
func truncateID(id string) string {
	if len(id) > 40 {
		return id[:40] + "..."
	}
	return id
}

func checkKey(k any) error {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return errors.New("ECDSA keys must use P-256 or P-384")
		}
	case ed25519.PublicKey:
	case *rsa.PublicKey:
		// 8192 is crypto/tls's own limit for handshake keys.
		if n := k.N.BitLen(); n < 2048 || n > 8192 {
			return errors.New("RSA keys must have 2048 to 8192 bits")
		}
	default:
		return errors.New("unsupported key type (use ECDSA P-256/P-384, Ed25519 or RSA >= 2048)")
	}
	return nil
}

// VerifyMachineCert checks a client certificate chain as presented in a TLS
// handshake (chain[0] is the leaf; the rest is ignored: machine certificates
// are issued directly by this CA). It requires, in order:
//
//   - a serial > 0, else ErrNegativeSerial (RFC 5280 §4.1.2.2; crypto/x509
//     already refuses to parse negative serials, this does not rely on it);
//   - a signature by this CA, else ErrUntrustedCert;
//   - now within the leaf's validity, else ErrCertExpired;
//   - a full x509 verification against this CA alone at now, not a CA
//     certificate, ExtKeyUsage exactly ClientAuth (a certificate without
//     ExtKeyUsage is NOT accepted, unlike crypto/x509's default), and one URI
//     SAN corral://machines/<id> whose id equals the CN; else ErrUntrustedCert.
//
// It returns the machine id and serial. Whether that serial is still the
// machine's current certificate is the caller's check.
//
// A certificate that passed is remembered (by the SHA-256 of its bytes,
// with the window in which it and the CA are both valid), so the many
// requests an agent makes over its one connection cost one hash each, not
// two signature checks; a remembered certificate outside its window is
// checked in full again.
func (c *CA) VerifyMachineCert(chain []*x509.Certificate, now time.Time) (machineID string, serial *big.Int, err error) {
	if len(chain) == 0 || chain[0] == nil {
		return c.verifyMachineCert(chain, now)
	}
	key := certKey(chain[0])
	c.verifiedMu.Lock()
	v, ok := c.verified[key]
	c.verifiedMu.Unlock()
	if ok && !now.Before(v.from) && !now.After(v.to) {
		return v.id, new(big.Int).Set(v.serial), nil
	}
	id, serial, err := c.verifyMachineCert(chain, now)
	if err != nil {
		return id, serial, err
	}
	v = verifiedCert{id: id, serial: new(big.Int).Set(serial), from: chain[0].NotBefore, to: chain[0].NotAfter}
	if c.cert.NotBefore.After(v.from) {
		v.from = c.cert.NotBefore
	}
	if c.cert.NotAfter.Before(v.to) {
		v.to = c.cert.NotAfter
	}
	c.verifiedMu.Lock()
	if c.verified == nil || len(c.verified) >= maxVerifiedCerts {
		c.verified = map[[sha256.Size]byte]verifiedCert{} // bounded: start over
	}
	c.verified[key] = v
	c.verifiedMu.Unlock()
	return id, serial, nil
}

// certKey identifies a certificate by its bytes, its signed part and its
// signature (the last two are what the signature checks read: a struct
// altered after parsing is not taken for the one that was verified).
func certKey(cert *x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	for _, b := range [][]byte{cert.Raw, cert.RawTBSCertificate, cert.Signature} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// maxVerifiedCerts bounds the certificates a CA remembers as verified
// (about 150 bytes each).
const maxVerifiedCerts = 100_000

// verifiedCert is a machine certificate that passed verifyMachineCert,
// valid for it from from to to.
type verifiedCert struct {
	id       string
	serial   *big.Int
	from, to time.Time
}

func (c *CA) verifyMachineCert(chain []*x509.Certificate, now time.Time) (machineID string, serial *big.Int, err error) {
	if len(chain) == 0 || chain[0] == nil {
		return "", nil, fmt.Errorf("%w: no certificate", ErrUntrustedCert)
	}
	leaf := chain[0]
	if leaf.SerialNumber == nil || leaf.SerialNumber.Sign() <= 0 {
		return "", nil, ErrNegativeSerial
	}
	if err := leaf.CheckSignatureFrom(c.cert); err != nil {
		return "", nil, ErrUntrustedCert
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return "", nil, ErrCertExpired
	}
	if leaf.IsCA {
		return "", nil, fmt.Errorf("%w: a CA certificate", ErrUntrustedCert)
	}
	if !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || len(leaf.UnknownExtKeyUsage) != 0 {
		return "", nil, fmt.Errorf("%w: not a client-authentication-only certificate", ErrUntrustedCert)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: c.pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		var inv x509.CertificateInvalidError
		if errors.As(err, &inv) && inv.Reason == x509.Expired {
			return "", nil, ErrCertExpired // the CA itself is outside its validity
		}
		return "", nil, ErrUntrustedCert
	}
	if len(leaf.URIs) != 1 {
		return "", nil, fmt.Errorf("%w: no corral machine URI", ErrUntrustedCert)
	}
	u := leaf.URIs[0]
	id := strings.TrimPrefix(u.Path, "/")
	if u.Scheme != "corral" || u.Host != "machines" || u.User != nil || u.Opaque != "" || u.RawQuery != "" || u.Fragment != "" ||
		!validMachineID(id) || u.String() != machineURI(id).String() {
		return "", nil, fmt.Errorf("%w: no corral machine URI", ErrUntrustedCert)
	}
	if id != leaf.Subject.CommonName {
		return "", nil, fmt.Errorf("%w: machine URI and common name differ", ErrUntrustedCert)
	}
	return id, new(big.Int).Set(leaf.SerialNumber), nil
}
