// Package sshca is the control plane's SSH user certificate authority: it
// signs a public key that the client generated into a short-lived OpenSSH
// user certificate for one principal, which the machine's sshd trusts
// through TrustedUserCAKeys (installed by the agent, see
// internal/agent/sshaccess).
//
// The CA key is ed25519. LoadOrCreate keeps it in a data directory as an
// OpenSSH private key file with mode 0600, created atomically so two
// processes starting together end up with the same key; New and Parse take a
// key held elsewhere (replicas sharing one CA need the key from shared
// storage, not from each replica's disk).
//
// Certificates are deliberately narrow: one principal, a validity of a few
// minutes (backdated by Backdate for clock skew), only the extensions asked
// for (permit-pty by default), an optional source-address critical option,
// and a KeyId naming the session and caller, which sshd writes to its log
// for every login. A CA is safe for concurrent use.
package sshca

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// KeyFile is the CA key's file name inside the data directory.
const KeyFile = "ssh-user-ca"

// Validity bounds.
const (
	DefaultValidity = 5 * time.Minute
	MaxValidity     = 24 * time.Hour
	// Backdate is subtracted from ValidAfter so a machine whose clock is a
	// little behind the server's accepts a certificate issued just now.
	Backdate = 30 * time.Second
)

// MinRSABits is the smallest RSA key signed.
const MinRSABits = 2048

// Extensions a request may ask for (OpenSSH's certificate extensions).
const (
	PermitPTY             = "permit-pty"
	PermitPortForwarding  = "permit-port-forwarding"
	PermitAgentForwarding = "permit-agent-forwarding"
	PermitX11Forwarding   = "permit-X11-forwarding"
	PermitUserRC          = "permit-user-rc"
)

var knownExtensions = []string{PermitPTY, PermitPortForwarding, PermitAgentForwarding, PermitX11Forwarding, PermitUserRC}

// ErrBadKey is returned for a public key the CA refuses to sign.
var ErrBadKey = errors.New("public key refused")

// CA signs user certificates.
type CA struct {
	signer ssh.Signer
	// authorizedKey is the public key's authorized_keys line, made once:
	// every desired state carries it.
	authorizedKey string
}

// New returns a CA for key, which must be an ed25519 private key.
func New(key crypto.Signer) (*CA, error) {
	var priv ed25519.PrivateKey
	switch k := key.(type) {
	case ed25519.PrivateKey:
		priv = k
	case *ed25519.PrivateKey:
		priv = *k
	default:
		return nil, fmt.Errorf("ssh user CA: key is %T, want ed25519", key)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, fmt.Errorf("ssh user CA: %w", err)
	}
	return &CA{signer: s, authorizedKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(s.PublicKey()))) + " corral-user-ca"}, nil
}

// Parse reads a CA key in OpenSSH private key format (what LoadOrCreate
// writes).
func Parse(pemBytes []byte) (*CA, error) {
	k, err := ssh.ParseRawPrivateKey(pemBytes)
	if err != nil {
		return nil, fmt.Errorf("ssh user CA key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("ssh user CA key: %T is not a signing key", k)
	}
	return New(s)
}

// GenerateKey makes a new CA key in OpenSSH private key format, for callers
// that keep it somewhere other than a file (then Parse it).
func GenerateKey() ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "corral ssh user CA")
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(block), nil
}

// LoadOrCreate loads dir/ssh-user-ca, creating dir (0700) and the key (0600)
// when absent. A key file readable by group or others is refused, as sshd
// refuses such host keys: fix its mode rather than having it silently used.
func LoadOrCreate(dir string) (*CA, error) {
	path := filepath.Join(dir, KeyFile)
	if ca, err := load(path); !errors.Is(err, fs.ErrNotExist) {
		return ca, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ssh user CA: %w", err)
	}
	pemBytes, err := GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("ssh user CA: generate key: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+KeyFile+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("ssh user CA: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(pemBytes); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("ssh user CA: write %s: %w", tmp.Name(), err)
	}
	// Link fails if another process created the key meanwhile: then
	// everyone uses that one.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("ssh user CA: create %s: %w", path, err)
	}
	return load(path)
}

func load(path string) (*CA, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("ssh user CA key %s has mode %04o: it must be readable by its owner only (chmod 600)", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ca, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ca, nil
}

// PublicKey is the CA's public key.
func (c *CA) PublicKey() ssh.PublicKey { return c.signer.PublicKey() }

// AuthorizedKey is the CA's public key as one authorized_keys line without
// newline ("ssh-ed25519 AAAA... corral-user-ca"), what sshd's
// TrustedUserCAKeys file holds.
func (c *CA) AuthorizedKey() string { return c.authorizedKey }

// Fingerprint is the SHA256 fingerprint of the CA key, as ssh-keygen -l
// prints it.
func (c *CA) Fingerprint() string { return ssh.FingerprintSHA256(c.PublicKey()) }

// Identity says who a certificate is for; it becomes the KeyId, which sshd
// logs with every login made with the certificate.
type Identity struct {
	Session string // the control plane's session id
	Caller  string // the user or service principal who asked
	Machine string // the machine the session is for
}

// KeyID is "corral session=S caller=C machine=M"; spaces, '=' and
// non-printable bytes in values are percent-escaped so the log line stays
// parseable.
func (i Identity) KeyID() string {
	esc := func(s string) string {
		var b strings.Builder
		for i := 0; i < len(s); i++ {
			c := s[i]
			if c <= ' ' || c >= 0x7f || c == '=' || c == '%' {
				fmt.Fprintf(&b, "%%%02X", c)
				continue
			}
			b.WriteByte(c)
		}
		return b.String()
	}
	return fmt.Sprintf("corral session=%s caller=%s machine=%s", esc(i.Session), esc(i.Caller), esc(i.Machine))
}

// Request asks for one certificate.
type Request struct {
	// PublicKey is the client's public key in authorized_keys format.
	PublicKey []byte
	// Principal is the one name the certificate is valid for; the machine's
	// AuthorizedPrincipalsFile maps it to a local account.
	Principal string
	Identity  Identity
	// Now is the issuing time (the server's clock); zero means time.Now().
	Now time.Time
	// Validity is how long the certificate is valid from Now; zero means
	// DefaultValidity.
	Validity time.Duration
	// Extensions to grant; nil means just permit-pty (a shell). An empty
	// non-nil slice grants none (commands without a terminal only).
	Extensions []string
	// SourceAddresses, when set, become the source-address critical option:
	// sshd refuses the certificate from any other client address (e.g.
	// 127.0.0.1/32 and ::1/128 when sessions arrive only through the
	// agent's relay).
	SourceAddresses []netip.Prefix
}

// principalRe accepts what a POSIX-ish system accepts as a login name, plus
// '@' and ':' so principals can be scoped ("admin@machine-id").
var principalRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@:-]{0,127}$`)

// Sign returns a user certificate for req.PublicKey signed by the CA. The
// caller sends ssh.MarshalAuthorizedKey(cert) back to the client.
func (c *CA) Sign(req Request) (*ssh.Certificate, error) {
	pub, err := checkKey(req.PublicKey)
	if err != nil {
		return nil, err
	}
	if slices.Equal(pub.Marshal(), c.PublicKey().Marshal()) {
		return nil, fmt.Errorf("%w: it is the CA's own key", ErrBadKey)
	}
	if !principalRe.MatchString(req.Principal) {
		return nil, fmt.Errorf("principal %q: want a login-like name (letters, digits, _ . @ : -; at most 128)", req.Principal)
	}
	if req.Identity.Session == "" || req.Identity.Caller == "" {
		return nil, errors.New("certificate identity: session and caller are required (they are what sshd logs)")
	}
	validity := req.Validity
	switch {
	case validity == 0:
		validity = DefaultValidity
	case validity < 0:
		return nil, fmt.Errorf("validity %s: must be positive", validity)
	case validity > MaxValidity:
		return nil, fmt.Errorf("validity %s is over the limit of %s", validity, MaxValidity)
	}
	exts := req.Extensions
	if exts == nil {
		exts = []string{PermitPTY}
	}
	perms := ssh.Permissions{Extensions: map[string]string{}}
	for _, e := range exts {
		if !slices.Contains(knownExtensions, e) {
			return nil, fmt.Errorf("extension %q: want one of %v", e, knownExtensions)
		}
		perms.Extensions[e] = ""
	}
	if len(req.SourceAddresses) > 0 {
		var srcs []string
		for _, p := range req.SourceAddresses {
			if !p.IsValid() || p.Masked() != p {
				return nil, fmt.Errorf("source address %s: not a CIDR range without host bits", p)
			}
			srcs = append(srcs, p.String())
		}
		perms.CriticalOptions = map[string]string{"source-address": strings.Join(srcs, ",")}
	}
	now := req.Now
	if now.IsZero() {
		now = time.Now()
	}
	var serial [8]byte
	if _, err := rand.Read(serial[:]); err != nil {
		return nil, err
	}
	cert := &ssh.Certificate{
		Key:             pub,
		Serial:          binary.BigEndian.Uint64(serial[:]),
		CertType:        ssh.UserCert,
		KeyId:           req.Identity.KeyID(),
		ValidPrincipals: []string{req.Principal},
		ValidAfter:      uint64(now.Add(-Backdate).Unix()),
		ValidBefore:     uint64(now.Add(validity).Unix()),
		Permissions:     perms,
	}
	if err := cert.SignCert(rand.Reader, c.signer); err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	return cert, nil
}

// checkKey parses an authorized_keys line and refuses what should not be
// signed: certificates, DSA, RSA under MinRSABits, unknown types.
func checkKey(b []byte) (ssh.PublicKey, error) {
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		return nil, fmt.Errorf("%w: not an authorized_keys line: %v", ErrBadKey, err)
	}
	if _, ok := pub.(*ssh.Certificate); ok {
		return nil, fmt.Errorf("%w: it is already a certificate; send the plain public key", ErrBadKey)
	}
	switch t := pub.Type(); t {
	case ssh.KeyAlgoED25519, ssh.KeyAlgoSKED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521, ssh.KeyAlgoSKECDSA256:
		return pub, nil
	case ssh.KeyAlgoRSA:
		cpk, ok := pub.(ssh.CryptoPublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: unreadable RSA key", ErrBadKey)
		}
		rk, ok := cpk.CryptoPublicKey().(*rsa.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: unreadable RSA key", ErrBadKey)
		}
		if bits := rk.N.BitLen(); bits < MinRSABits {
			return nil, fmt.Errorf("%w: RSA key of %d bits; at least %d are required", ErrBadKey, bits, MinRSABits)
		}
		return pub, nil
	case ssh.InsecureKeyAlgoDSA:
		return nil, fmt.Errorf("%w: DSA keys are obsolete and refused (OpenSSH no longer accepts them); use ed25519", ErrBadKey)
	default:
		return nil, fmt.Errorf("%w: key type %s is not supported", ErrBadKey, t)
	}
}
