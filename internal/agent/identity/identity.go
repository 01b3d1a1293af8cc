// Package identity holds the machine's identity on disk: the private key made
// on this host (key.pem, 0600, never sent anywhere), the client certificate
// the control plane signed (cert.pem), the control plane's CA (ca.pem) and
// where the machine lives (state.json). It builds the mTLS configuration the
// daemon uses and rotates the certificate before it expires.
//
// Files are replaced atomically. A certificate renewal writes the new key
// before it asks for the certificate, and both are swapped in together, so a
// crash leaves either the old pair or the new one (see Load).
//
// An Identity is safe for concurrent use: the TLS configuration reads the
// current certificate on every handshake.
package identity

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/machinekey"
	"github.com/corralhq/corral/internal/wire"
)

// File names inside the state directory.
const (
	FileState = statedir.StateFile
	FileKey   = statedir.KeyFile
	FileCert  = statedir.CertFile
	FileCA    = statedir.CAFile
	// FileSealingKey is the X25519 key protected settings are sealed to.
	FileSealingKey = statedir.SealingFile
	nextKey        = "key.pem.next"
	nextCert       = "cert.pem.next"
)

// ErrNotConnected means there is no identity: the machine was never
// connected, or was disconnected.
var ErrNotConnected = errors.New(`this machine is not connected: run "corral-agent connect" first`)

// State says where the machine lives. It holds no secret.
type State struct {
	Server            string        `json:"server"`
	ResourceID        string        `json:"resourceId"`
	MachineID         string        `json:"machineId"`
	SubscriptionID    string        `json:"subscriptionId"`
	ResourceGroup     string        `json:"resourceGroup"`
	Name              string        `json:"name"`
	HeartbeatInterval wire.Duration `json:"heartbeatInterval"`
	ConnectedAt       time.Time     `json:"connectedAt"`
	// Revoked is why the control plane told the agent to stop (machine
	// deleted or expired); the daemon refuses to run until reconnected.
	Revoked string `json:"revoked,omitempty"`
	// CATrust records how the control plane is verified: "system" (the
	// system roots) or the pinned CA's fingerprint ("sha256:..."), so that
	// a pinned ca.pem that went missing fails instead of silently falling
	// back to the system roots.
	CATrust string `json:"caTrust,omitempty"`
}

// CATrustSystem is State.CATrust of an agent that trusts the system roots.
const CATrustSystem = "system"

// caFingerprint is the fingerprint of the first certificate in caPEM.
func caFingerprint(caPEM []byte) (string, error) {
	blk, _ := pem.Decode(caPEM)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return "", errors.New("the CA file holds no PEM certificate")
	}
	return machinekey.Fingerprint(blk.Bytes), nil
}

// Identity is a connected machine's identity.
type Identity struct {
	Dir   string
	State State
	// CAPEM is the control plane CA the agent trusts; empty = system roots.
	CAPEM []byte

	mu   sync.RWMutex
	cert tls.Certificate
}

// Exists reports whether dir holds an identity.
func Exists(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, FileState))
	return err == nil
}

// Load reads the identity in dir, first finishing a renewal that a crash
// interrupted after both new files were written.
func Load(dir string) (*Identity, error) {
	b, err := os.ReadFile(filepath.Join(dir, FileState))
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNotConnected
	}
	if err != nil {
		return nil, fmt.Errorf("read identity: %w", err)
	}
	id := &Identity{Dir: dir}
	if err := json.Unmarshal(b, &id.State); err != nil {
		return nil, fmt.Errorf("identity %s is damaged: %w", filepath.Join(dir, FileState), err)
	}
	if err := id.finishRenewal(); err != nil {
		return nil, err
	}
	id.CAPEM, err = os.ReadFile(filepath.Join(dir, FileCA))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read CA: %w", err)
	}
	if err := id.checkCATrust(); err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, FileCert), filepath.Join(dir, FileKey))
	if err != nil {
		return nil, fmt.Errorf("load machine certificate and key from %s: %w", dir, err)
	}
	id.cert = cert
	return id, nil
}

// finishRenewal completes a swap of key.pem.next and cert.pem.next that both
// exist; a lone key.pem.next (no certificate came back) is dropped.
func (id *Identity) finishRenewal() error {
	k, c := filepath.Join(id.Dir, nextKey), filepath.Join(id.Dir, nextCert)
	_, kerr := os.Stat(k)
	_, cerr := os.Stat(c)
	switch {
	case kerr == nil && cerr == nil:
		if _, err := tls.LoadX509KeyPair(c, k); err != nil {
			os.Remove(k)
			os.Remove(c)
			return nil
		}
		if err := os.Rename(k, filepath.Join(id.Dir, FileKey)); err != nil {
			return err
		}
		return os.Rename(c, filepath.Join(id.Dir, FileCert))
	case kerr == nil:
		return os.Remove(k)
	case cerr == nil:
		return os.Remove(c)
	}
	return nil
}

// checkCATrust holds ca.pem to what the identity recorded at connect.
func (id *Identity) checkCATrust() error {
	switch t := id.State.CATrust; {
	case t == "":
		return nil // written by an older agent: ca.pem decides, as it did
	case t == CATrustSystem:
		if len(id.CAPEM) > 0 {
			return fmt.Errorf("%s appeared although this machine was connected trusting the system roots; remove it or connect again", filepath.Join(id.Dir, FileCA))
		}
	case len(id.CAPEM) == 0:
		return fmt.Errorf("the control plane's CA (%s) is missing; the agent does not fall back to the system roots: restore it or connect again", filepath.Join(id.Dir, FileCA))
	default:
		fp, err := caFingerprint(id.CAPEM)
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Join(id.Dir, FileCA), err)
		}
		if fp != t {
			return fmt.Errorf("%s is not the CA this machine was connected with (%s, want %s): restore it or connect again", filepath.Join(id.Dir, FileCA), fp, t)
		}
	}
	return nil
}

// SealingKey reads the machine's private sealing key.
func (id *Identity) SealingKey() ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(id.Dir, FileSealingKey))
	if err != nil {
		return nil, fmt.Errorf("read sealing key: %w", err)
	}
	return b, nil
}

// Save writes a new identity (after connect). The keys are written 0600;
// the state directory is made 0700.
func Save(dir string, st State, keyPEM, certPEM, caPEM, sealingKey []byte) error {
	st.CATrust = CATrustSystem
	if len(caPEM) > 0 {
		fp, err := caFingerprint(caPEM)
		if err != nil {
			return err
		}
		st.CATrust = fp
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	if err := statedir.WriteFileAtomic(filepath.Join(dir, FileKey), keyPEM, 0o600); err != nil {
		return fmt.Errorf("write machine key: %w", err)
	}
	if err := statedir.WriteFileAtomic(filepath.Join(dir, FileSealingKey), sealingKey, 0o600); err != nil {
		return fmt.Errorf("write sealing key: %w", err)
	}
	if err := statedir.WriteFileAtomic(filepath.Join(dir, FileCert), certPEM, 0o644); err != nil {
		return fmt.Errorf("write machine certificate: %w", err)
	}
	if len(caPEM) > 0 {
		if err := statedir.WriteFileAtomic(filepath.Join(dir, FileCA), caPEM, 0o644); err != nil {
			return fmt.Errorf("write CA: %w", err)
		}
	} else {
		os.Remove(filepath.Join(dir, FileCA))
	}
	return saveState(dir, st)
}

func saveState(dir string, st State) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return statedir.WriteFileAtomic(filepath.Join(dir, FileState), append(b, '\n'), 0o600)
}

// SaveState rewrites state.json (e.g. to record a revocation).
func (id *Identity) SaveState() error { return saveState(id.Dir, id.State) }

// Remove deletes the identity files of dir; the local configuration stays.
func Remove(dir string) error {
	var errs []error
	for _, f := range []string{FileState, FileKey, FileCert, FileCA, FileSealingKey, nextKey, nextCert} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Leaf is the current client certificate.
func (id *Identity) Leaf() *x509.Certificate {
	id.mu.RLock()
	defer id.mu.RUnlock()
	if id.cert.Leaf != nil {
		return id.cert.Leaf
	}
	l, _ := x509.ParseCertificate(id.cert.Certificate[0])
	return l
}

// RootPool returns the pool that verifies the control plane: the pinned CA,
// or the system roots when none was pinned.
func RootPool(caPEM []byte) (*x509.CertPool, error) {
	if len(bytes.TrimSpace(caPEM)) == 0 {
		return x509.SystemCertPool()
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, errors.New("the CA file holds no PEM certificate")
	}
	return pool, nil
}

// TLSConfig presents the current machine certificate and trusts only the
// control plane's CA.
func (id *Identity) TLSConfig() (*tls.Config, error) {
	pool, err := RootPool(id.CAPEM)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    pool,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			id.mu.RLock()
			defer id.mu.RUnlock()
			c := id.cert
			return &c, nil
		},
	}, nil
}

// NeedsRenewal reports whether two thirds of the certificate's life have passed.
func (id *Identity) NeedsRenewal(now time.Time) bool {
	l := id.Leaf()
	if l == nil {
		return true
	}
	life := l.NotAfter.Sub(l.NotBefore)
	return now.After(l.NotBefore.Add(life * 2 / 3))
}

// Renew makes a new key, asks the control plane for a certificate with
// request (which sends the CSR over the current mTLS identity) and swaps
// both in. The old pair stays in use until the new one is on disk.
func (id *Identity) Renew(ctx context.Context, request func(ctx context.Context, csrPEM []byte) (certPEM []byte, err error)) error {
	keyPEM, csrPEM, err := machinekey.New(id.State.MachineID)
	if err != nil {
		return err
	}
	k, c := filepath.Join(id.Dir, nextKey), filepath.Join(id.Dir, nextCert)
	if err := statedir.WriteFileAtomic(k, keyPEM, 0o600); err != nil {
		return fmt.Errorf("write new key: %w", err)
	}
	certPEM, err := request(ctx, csrPEM)
	if err != nil {
		os.Remove(k)
		return err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		os.Remove(k)
		return fmt.Errorf("renewed certificate does not match the new key: %w", err)
	}
	if err := statedir.WriteFileAtomic(c, certPEM, 0o644); err != nil {
		return fmt.Errorf("write renewed certificate: %w", err)
	}
	if err := id.finishRenewal(); err != nil {
		return err
	}
	id.mu.Lock()
	id.cert = cert
	id.mu.Unlock()
	return nil
}

// ErrFingerprintMismatch means no certificate the server presented has the
// pinned fingerprint.
var ErrFingerprintMismatch = errors.New("the server presented no CA certificate with the given fingerprint")

// CAByFingerprint connects to server (through proxy, as every agent call
// does), finds the CA certificate in the chain it presents whose sha256
// fingerprint is fp, verifies the server certificate against that CA for
// the server's host name, and returns the CA as PEM. This is how an agent
// pins a control plane it has no CA file for.
func CAByFingerprint(ctx context.Context, server, fp string, proxy func(*http.Request) (*url.URL, error)) ([]byte, error) {
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("invalid server URL %q", server)
	}
	host := u.Hostname()
	var ca *x509.Certificate
	tlsCfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // verified below against the pinned CA only
		VerifyPeerCertificate: func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
			var certs []*x509.Certificate
			var pinned *x509.Certificate
			for _, rc := range rawCerts {
				c, err := x509.ParseCertificate(rc)
				if err != nil {
					return err
				}
				certs = append(certs, c)
				if machinekey.Fingerprint(rc) == fp && c.IsCA {
					pinned = c
				}
			}
			if pinned == nil || len(certs) == 0 {
				return ErrFingerprintMismatch
			}
			pool := x509.NewCertPool()
			pool.AddCert(pinned)
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			if _, err := certs[0].Verify(x509.VerifyOptions{DNSName: host, Roots: pool, Intermediates: inter}); err != nil {
				return err
			}
			ca = pinned
			return nil
		},
	}
	hc := localconfig.NewHTTPClient(tlsCfg, proxy)
	defer hc.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(server, "/")+"/healthz", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("verify %s against fingerprint %s: %w", server, fp, err)
	}
	resp.Body.Close()
	if ca == nil {
		return nil, fmt.Errorf("verify %s against fingerprint %s: %w", server, fp, ErrFingerprintMismatch)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), nil
}
