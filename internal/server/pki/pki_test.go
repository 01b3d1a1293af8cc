package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/machinekey"
)

func newCA(t testing.TB) (*CA, string) {
	t.Helper()
	dir := t.TempDir()
	ca, created, err := LoadOrCreateCA(dir, time.Now())
	if err != nil || !created {
		t.Fatalf("create CA: %v created=%v", err, created)
	}
	return ca, dir
}

func issue(t testing.TB, ca *CA, id string, now time.Time, validity time.Duration) *x509.Certificate {
	t.Helper()
	_, csr, err := machinekey.New("host")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, _, err := ca.SignMachineCSR(csr, id, now, validity)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCAFilesAndReload(t *testing.T) {
	t.Parallel()
	ca, dir := newCA(t)
	st, err := os.Stat(filepath.Join(dir, "ca.key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key mode %v %v", st.Mode(), err)
	}
	again, created, err := LoadOrCreateCA(dir, time.Now())
	if err != nil || created || again.Fingerprint() != ca.Fingerprint() {
		t.Fatalf("reload: %v created=%v %s vs %s", err, created, again.Fingerprint(), ca.Fingerprint())
	}
	if fp, _ := FingerprintPEM(ca.CertPEM()); fp != ca.Fingerprint() || len(fp) != len("sha256:")+64 {
		t.Fatalf("fingerprint %q", fp)
	}
}

func TestMachineCertificates(t *testing.T) {
	t.Parallel()
	ca, dir := newCA(t)
	now := time.Now()
	c := issue(t, ca, "m-1", now, time.Hour)
	id, serial, err := ca.VerifyMachineCert([]*x509.Certificate{c}, now)
	if err != nil || id != "m-1" || serial.Sign() <= 0 {
		t.Fatalf("verify: %v %q %v", err, id, serial)
	}
	if _, _, err := ca.VerifyMachineCert([]*x509.Certificate{c}, now.Add(2*time.Hour)); !errors.Is(err, ErrCertExpired) {
		t.Errorf("expired: %v", err)
	}
	// Remembered once verified, yet still bounded by its validity.
	if id, _, err := ca.VerifyMachineCert([]*x509.Certificate{c}, now.Add(time.Minute)); err != nil || id != "m-1" {
		t.Errorf("verified again: %q %v", id, err)
	}
	if _, _, err := ca.VerifyMachineCert([]*x509.Certificate{c}, now.Add(-time.Hour)); !errors.Is(err, ErrCertExpired) {
		t.Errorf("not yet valid after it was remembered: %v", err)
	}
	// A certificate of another CA.
	other, _ := newCA(t)
	if _, _, err := ca.VerifyMachineCert([]*x509.Certificate{issue(t, other, "m-1", now, time.Hour)}, now); !errors.Is(err, ErrUntrustedCert) {
		t.Errorf("foreign: %v", err)
	}
	// The server certificate is not a client certificate.
	tc, err := ca.LoadOrCreateServerCert(dir, []string{"cp.example"}, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(tc.Certificate[0])
	if _, _, err := ca.VerifyMachineCert([]*x509.Certificate{leaf}, now); err == nil {
		t.Error("server certificate accepted as a machine certificate")
	}
	// A tampered signature.
	bad := *c
	bad.Signature = append([]byte{}, c.Signature...)
	bad.Signature[len(bad.Signature)-3] ^= 0xff
	if _, _, err := ca.VerifyMachineCert([]*x509.Certificate{&bad}, now); err == nil {
		t.Error("tampered certificate accepted")
	}
	// Serials are random and positive.
	seen := map[string]bool{}
	for range 200 {
		s := issue(t, ca, "m", now, time.Hour).SerialNumber
		if s.Sign() <= 0 || seen[s.String()] {
			t.Fatalf("serial %v", s)
		}
		seen[s.String()] = true
	}
}

func TestNegativeSerialIsRefused(t *testing.T) {
	t.Parallel()
	ca, _ := newCA(t)
	c := issue(t, ca, "m-1", time.Now(), time.Hour)
	neg := *c
	neg.SerialNumber = big.NewInt(-42)
	if _, _, err := ca.VerifyMachineCert([]*x509.Certificate{&neg}, time.Now()); !errors.Is(err, ErrNegativeSerial) {
		t.Fatalf("negative serial: %v", err)
	}
	zero := *c
	zero.SerialNumber = big.NewInt(0)
	if _, _, err := ca.VerifyMachineCert([]*x509.Certificate{&zero}, time.Now()); !errors.Is(err, ErrNegativeSerial) {
		t.Fatalf("zero serial: %v", err)
	}
}

func TestCSRChecks(t *testing.T) {
	t.Parallel()
	ca, _ := newCA(t)
	if _, _, _, err := ca.SignMachineCSR([]byte("garbage"), "m", time.Now(), time.Hour); err == nil {
		t.Error("garbage CSR accepted")
	}
	key, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "m"}}, key)
	if err == nil {
		p := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
		if _, _, _, err := ca.SignMachineCSR(p, "m", time.Now(), time.Hour); err == nil {
			t.Error("P-224 key accepted")
		}
	}
	_, csr, _ := machinekey.New("m")
	blk, _ := pem.Decode(csr)
	blk.Bytes[len(blk.Bytes)-5] ^= 0xff // break the signature
	if _, _, _, err := ca.SignMachineCSR(pem.EncodeToMemory(blk), "m", time.Now(), time.Hour); err == nil {
		t.Error("CSR with a broken signature accepted")
	}
	// URI SAN and CN must agree.
	c := issue(t, ca, "m-1", time.Now(), time.Hour)
	c2 := *c
	c2.URIs = []*url.URL{{Scheme: "corral", Host: "machines", Path: "/m-2"}}
	if _, _, err := ca.VerifyMachineCert([]*x509.Certificate{&c2}, time.Now()); err == nil {
		t.Error("mismatched URI accepted")
	}
}

func BenchmarkSignMachineCSR(b *testing.B) {
	ca, _ := newCA(b)
	_, csr, _ := machinekey.New("m")
	now := time.Now()
	for b.Loop() {
		if _, _, _, err := ca.SignMachineCSR(csr, "m", now, time.Hour); err != nil {
			b.Fatal(err)
		}
	}
}
