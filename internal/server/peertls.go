package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
)

// advertiseHost is the host of an --advertise-url ("" without one): the
// generated server certificate names it, since the other replicas connect
// to it for relayed SSH sessions.
func advertiseHost(advertiseURL string) string {
	u, err := url.Parse(advertiseURL)
	if err != nil || advertiseURL == "" {
		return ""
	}
	return u.Hostname()
}

// peerRoots is what a replica trusts in another replica's certificate: the
// Corral CA (which issues the generated server certificates) and the
// system's roots (for a --tls-cert from a public or corporate CA).
func peerRoots(ca *x509.Certificate) *x509.CertPool {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	pool.AddCert(ca)
	return pool
}

// checkPeerCertificate says why the other replicas could not verify cert
// when they connect to self (this replica's advertise URL), or nil.
func checkPeerCertificate(cert tls.Certificate, self string, roots *x509.CertPool) error {
	u, err := url.Parse(self)
	if err != nil {
		return err
	}
	if len(cert.Certificate) == 0 {
		return fmt.Errorf("no server certificate")
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return err
	}
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	host := u.Hostname()
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	_, err = leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}
