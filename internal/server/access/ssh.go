package access

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/server/sshca"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Codes of SSH refusals.
const (
	CodeSSHNotManaged = "SSHNotManaged"
	CodeUnknownLogin  = "UnknownLogin"
)

// relaySources bind every certificate to the agent's relay: sessions reach
// sshd from 127.0.0.1, so a certificate that leaks cannot log in over the
// network even where port 22 is open.
var relaySources = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")}

// IssueCertificate signs the caller's public key into a short-lived
// certificate for one of the machine's two accounts: login "" picks the
// administrator account when canAdmin (the caller holds Virtual Machine
// Administrator Login there), else the unprivileged one; naming the
// administrator account without canAdmin is ErrAdminLogin.
func (s *Service) IssueCertificate(ctx context.Context, ref resource.MachineRef, c Caller, canAdmin bool, in wire.SSHCertificateRequest) (wire.SSHCertificate, error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return wire.SSHCertificate{}, err
	}
	validity := time.Duration(in.Validity)
	switch {
	case validity == 0:
		validity = wire.DefaultSSHCertValidity
	case validity < 0:
		return wire.SSHCertificate{}, refusal.Invalid("validity", "the validity %s must be positive", validity)
	case validity > wire.MaxSSHCertValidity:
		return wire.SSHCertificate{}, refusal.Invalid("validity", "the validity %s is over the limit of %s", validity, wire.MaxSSHCertValidity)
	}
	if strings.TrimSpace(in.PublicKey) == "" || len(in.PublicKey) > 16<<10 {
		return wire.SSHCertificate{}, refusal.Invalid("publicKey", "the public key (one authorized_keys line) is required")
	}
	a, err := s.store.GetMachineAccess(ctx, m.ID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return wire.SSHCertificate{}, err
	}
	if errors.Is(err, store.ErrNotFound) || a.SSHState != wire.SSHStateManaged {
		why := "its agent has not reported SSH logins yet"
		if err == nil {
			why = "SSH logins are " + a.SSHState
			if a.SSHMessage != "" {
				why += ": " + a.SSHMessage
			}
		}
		return wire.SSHCertificate{}, refusal.Conflict("machine %q does not accept corral SSH logins (%s); root on the machine enables them with: corral-agent config set ssh.manage true",
			m.Name, why).WithCode(CodeSSHNotManaged)
	}
	kind, login := wire.SSHLoginUser, a.User
	switch in.Login {
	case "":
		if canAdmin {
			kind, login = wire.SSHLoginAdmin, a.AdminUser
		}
	case a.AdminUser:
		if !canAdmin {
			return wire.SSHCertificate{}, fmt.Errorf("%w: %s is the administrator account of %s, and %s does not hold Virtual Machine Administrator Login there",
				ErrAdminLogin, a.AdminUser, m.Name, c.Name)
		}
		kind, login = wire.SSHLoginAdmin, a.AdminUser
	case a.User:
	default:
		return wire.SSHCertificate{}, refusal.Invalid("login", "machine %q has no corral login account %q: its accounts are %s (Virtual Machine Administrator Login) and %s (Virtual Machine User Login)",
			m.Name, capText(in.Login, 64), a.AdminUser, a.User).WithCode(CodeUnknownLogin)
	}
	id := s.newID()
	now := s.now()
	cert, err := s.ca.Sign(sshca.Request{PublicKey: []byte(in.PublicKey), Principal: wire.SSHPrincipal(kind, m.ID),
		Identity: sshca.Identity{Session: id, Caller: c.Name, Machine: m.ID}, Now: now, Validity: validity, SourceAddresses: relaySources})
	if errors.Is(err, sshca.ErrBadKey) {
		return wire.SSHCertificate{}, refusal.Invalid("publicKey", "%v", err)
	}
	if err != nil {
		return wire.SSHCertificate{}, err
	}
	rec := store.SSHCertificate{ID: id, MachineID: m.ID, CallerID: c.ID, Caller: c.Name, Kind: kind, Login: login,
		Principal: cert.ValidPrincipals[0], Serial: strconv.FormatUint(cert.Serial, 10), IssuedAt: now,
		ValidBefore: time.Unix(int64(cert.ValidBefore), 0).UTC()}
	if err := s.store.CreateSSHCertificate(ctx, rec); err != nil {
		return wire.SSHCertificate{}, err
	}
	return wire.SSHCertificate{Certificate: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(cert))), Principal: rec.Principal,
		Login: login, ID: id, MachineID: m.ID, ValidBefore: rec.ValidBefore, HostKeys: nonNil(a.HostKeys)}, nil
}

// CertificateSummary is the activity log line of an issued certificate.
func CertificateSummary(c wire.SSHCertificate, machine string) string {
	return fmt.Sprintf("SSH certificate %s for %s (principal %s) on %s, valid until %s", c.ID, c.Login, c.Principal, machine,
		c.ValidBefore.Format(time.RFC3339))
}
