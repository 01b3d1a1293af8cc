package server

import (
	"context"
	"crypto/x509"
	"io"
	"log/slog"
	"testing"
)

// The generated server certificate names the --advertise-url host (the
// other replicas verify it when they relay an SSH session here), and the
// check run at start tells a certificate that does not from one that does.
func TestAdvertisedHostIsInTheCertificate(t *testing.T) {
	t.Parallel()
	cfg := Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0", AdminPassword: "a-long-enough-password",
		AdvertiseURL: "https://corral-7.internal:8443", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	s, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.closeAll()
	cert := s.http.TLSConfig.Certificates[0]
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := leaf.VerifyHostname("corral-7.internal"); err != nil {
		t.Errorf("the server certificate does not cover the advertise URL's host: %v (names %v)", err, leaf.DNSNames)
	}
	roots := peerRoots(s.CA.Certificate())
	if err := checkPeerCertificate(cert, "https://corral-7.internal:8443", roots); err != nil {
		t.Errorf("a replica could not verify the generated certificate: %v", err)
	}
	if err := checkPeerCertificate(cert, "https://corral-8.internal:8443", roots); err == nil {
		t.Error("a certificate that does not name the advertised host passed the check")
	}
	if err := checkPeerCertificate(cert, "https://corral-7.internal:8443", x509.NewCertPool()); err == nil {
		t.Error("a certificate from a CA the replicas do not trust passed the check")
	}
}
