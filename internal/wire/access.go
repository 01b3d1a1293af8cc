package wire

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Secure access (DESIGN §9): just-in-time port openings enforced by the
// machine's kernel, and SSH certificate logins through the agent's
// outbound connection.

// FeatureAccess is the agent feature that keeps the machine's `inet corral`
// nftables table in line with its JIT policy and grants, and the sshd
// certificate login (when root allows it with ssh.manage true). It is its
// key in DesiredState.Features and the name of its state folder.
const FeatureAccess = "access"

// ReportAccess is the access feature's report. Body: AccessStatus. Each
// report is the whole status (a later one supersedes an earlier one).
const ReportAccess = "access"

// Defaults and bounds of JIT policies and requests.
const (
	// DefaultJITMaxDuration is a policy's maximum grant duration when it
	// names none.
	DefaultJITMaxDuration = 3 * time.Hour
	// MaxJITDuration bounds any policy maximum: a "just in time" opening of
	// more than a day is a standing rule, not JIT.
	MaxJITDuration = 24 * time.Hour
	// MaxJITPorts and MaxJITSources bound one policy.
	MaxJITPorts   = 64
	MaxJITSources = 64
	// JITApprovalWindow is how long a request waiting for approval can be
	// approved.
	JITApprovalWindow = time.Hour
	// MaxJustification bounds a request's justification, in bytes.
	MaxJustification = 500
)

// JIT request states.
const (
	JITPending  = "PendingApproval" // waits for another user's approval
	JITRejected = "Rejected"        // the approver said no
	JITApproved = "Approved"        // in the machine's desired state, not yet confirmed
	JITApplied  = "Applied"         // the machine's kernel holds the opening
	JITFailed   = "Failed"          // the machine could not open it (Message says why)
	JITRevoked  = "Revoked"         // closed early
	JITExpired  = "Expired"         // its time is over (or its approval window)
)

// JIT states of a machine (JITStatus.State).
const (
	JITStateNone    = "None"    // no policy: the agent's table is absent
	JITStateApplied = "Applied" // the table is in place with the policy
	JITStateFailed  = "Failed"  // the policy could not be applied (Message)
	JITStateRefused = "Refused" // the local configuration refuses host changes (Message)
)

// SSH login states of a machine (SSHStatus.State).
const (
	SSHStateOff     = "Off"     // ssh.manage is not true on the machine
	SSHStateManaged = "Managed" // sshd trusts the CA for the two accounts
	SSHStateFailed  = "Failed"  // enabling or disabling failed (Message)
	SSHStateRefused = "Refused" // the local configuration refuses host changes (Message)
)

// Login kinds: the part of a principal before "@". An Administrator Login
// caller gets "admin" (the sudo-capable account), a User Login caller
// "user" (the unprivileged one).
const (
	SSHLoginAdmin = "admin"
	SSHLoginUser  = "user"
)

// SSHPrincipal is the certificate principal of a login kind at one machine,
// "admin@MACHINE-ID": the machine lists only its own principals in sshd's
// AuthorizedPrincipalsFile, so a certificate for one machine opens no
// other.
func SSHPrincipal(kind, machineID string) string { return kind + "@" + machineID }

// Defaults of SSH certificates.
const (
	DefaultSSHCertValidity = 5 * time.Minute
	MaxSSHCertValidity     = time.Hour
)

// AccessDesired is the access slice of a machine's desired state.
type AccessDesired struct {
	// JIT is the machine's effective JIT policy with its open grants; nil
	// means no policy: the agent removes its table.
	JIT *JITDesired `json:"jit,omitempty"`
	// SSH is the user CA and the machine's principals; the agent uses it
	// only while ssh.manage is true in its local configuration.
	SSH *SSHDesired `json:"ssh,omitempty"`
}

// JITDesired is a policy as the agent applies it, with the grants that
// have not expired.
type JITDesired struct {
	Ports          []string          `json:"ports"`
	AllowedSources []string          `json:"allowedSources,omitempty"`
	MaxDuration    Duration          `json:"maxDuration"`
	Grants         []JITDesiredGrant `json:"grants,omitempty"`
}

// JITDesiredGrant is one opening: the agent grants it for the time left
// until Expires (absolute, so re-applying after a restart keeps the end).
type JITDesiredGrant struct {
	ID      string    `json:"id"`
	Source  string    `json:"source"`
	Port    string    `json:"port"`
	Expires time.Time `json:"expires"`
}

// SSHDesired is what sshd needs to trust certificates for this machine.
type SSHDesired struct {
	// CAKeys are the user CA public keys (authorized_keys lines).
	CAKeys          []string `json:"caKeys"`
	AdminPrincipals []string `json:"adminPrincipals"`
	UserPrincipals  []string `json:"userPrincipals"`
}

// AccessStatus is the access feature's report: the whole state, so a
// later report replaces an earlier one.
type AccessStatus struct {
	JIT JITStatus `json:"jit"`
	SSH SSHStatus `json:"ssh"`
}

// JITStatus is the state of the machine's JIT table.
type JITStatus struct {
	State   string   `json:"state"`
	Message string   `json:"message,omitempty"`
	Ports   []string `json:"ports,omitempty"`
	// Grants lists every desired grant that has not expired: Applied, or
	// Failed with the reason.
	Grants []JITGrantStatus `json:"grants,omitempty"`
}

// JITGrantStatus is one grant as the machine holds it.
type JITGrantStatus struct {
	ID      string    `json:"id"`
	State   string    `json:"state"` // JITApplied or JITFailed
	Message string    `json:"message,omitempty"`
	Expires time.Time `json:"expires,omitzero"`
}

// SSHStatus is the state of the sshd certificate login.
type SSHStatus struct {
	State   string `json:"state"`
	Message string `json:"message,omitempty"`
	// AdminUser and User are the local account names (ssh.adminuser,
	// ssh.user) while State is Managed.
	AdminUser string `json:"adminUser,omitempty"`
	User      string `json:"user,omitempty"`
	// HostKeys are sshd's public host keys (authorized_keys lines) as read
	// on the machine: `corral ssh` pins them, so the first connection is
	// verified too.
	HostKeys []string `json:"hostKeys,omitempty"`
}

// JITPolicy is a JIT policy at a scope (a machine, a resource group, a
// subscription or "/"); a machine follows the most specific policy above
// it.
type JITPolicy struct {
	Scope           string    `json:"scope"`
	Ports           []string  `json:"ports"`
	AllowedSources  []string  `json:"allowedSources"`
	MaxDuration     Duration  `json:"maxDuration"`
	RequireApproval bool      `json:"requireApproval"`
	UpdatedAt       time.Time `json:"updatedAt"`
	UpdatedBy       string    `json:"updatedBy"`
}

// JITPolicySet is the body of PUT /api/v1/jitPolicy?scope=S.
type JITPolicySet struct {
	// Ports are "22", "22/tcp" or "53/udp".
	Ports []string `json:"ports"`
	// AllowedSources are CIDR ranges (or single addresses) a grant's source
	// must be in; empty allows any source.
	AllowedSources []string `json:"allowedSources,omitempty"`
	// MaxDuration bounds a grant; zero means DefaultJITMaxDuration.
	MaxDuration Duration `json:"maxDuration,omitempty"`
	// RequireApproval makes each request wait for another user's approval.
	RequireApproval bool `json:"requireApproval,omitempty"`
}

// JITMachineStatus is a machine's effective policy and what its agent last
// reported about it.
type JITMachineStatus struct {
	MachineID string `json:"machineId"`
	Machine   string `json:"machine"`
	// Policy is the most specific policy above the machine; nil: none.
	Policy     *JITPolicy `json:"policy,omitempty"`
	State      string     `json:"state,omitempty"`
	Message    string     `json:"message,omitempty"`
	ReportedAt time.Time  `json:"reportedAt,omitzero"`
}

// JITRequestCreate is the body of POST .../machines/{name}/jitRequests.
type JITRequestCreate struct {
	// Port is "22" or "22/tcp"; it must be one of the policy's.
	Port string `json:"port"`
	// SourceIP is the address to open the port to; empty means the
	// caller's address as the server sees it.
	SourceIP string `json:"sourceIp,omitempty"`
	// Duration is how long; at most the policy's maximum.
	Duration      Duration `json:"duration"`
	Justification string   `json:"justification,omitempty"`
}

// JITRequest is a request and, once approved, the grant.
type JITRequest struct {
	ID            string    `json:"id"`
	Machine       string    `json:"machine"` // resource id
	MachineName   string    `json:"machineName"`
	Port          string    `json:"port"`
	SourceIP      string    `json:"sourceIp"`
	Duration      Duration  `json:"duration"`
	Justification string    `json:"justification,omitempty"`
	State         string    `json:"state"`
	Message       string    `json:"message,omitempty"`
	RequestedBy   string    `json:"requestedBy"`
	RequestedByID string    `json:"requestedById"`
	RequestedAt   time.Time `json:"requestedAt"`
	ApprovedBy    string    `json:"approvedBy,omitempty"`
	ApprovedAt    time.Time `json:"approvedAt,omitzero"`
	// ExpiresAt is when the opening closes (set once approved).
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	AppliedAt time.Time `json:"appliedAt,omitzero"`
	RevokedBy string    `json:"revokedBy,omitempty"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
}

// SSHCertificateRequest is the body of POST .../machines/{name}/sshCertificate.
type SSHCertificateRequest struct {
	// PublicKey is the client's public key (authorized_keys format); the
	// client keeps the private half.
	PublicKey string `json:"publicKey"`
	// Login is the machine's local account to log in as; empty means the
	// account of the caller's strongest login role.
	Login string `json:"login,omitempty"`
	// Validity is how long the certificate is valid; zero means
	// DefaultSSHCertValidity, at most MaxSSHCertValidity.
	Validity Duration `json:"validity,omitempty"`
}

// SSHCertificate is a signed short-lived user certificate.
type SSHCertificate struct {
	// Certificate is one authorized_keys line ("ssh-ed25519-cert-v01@openssh.com ...").
	Certificate string `json:"certificate"`
	Principal   string `json:"principal"`
	// Login is the local account the certificate logs in as.
	Login string `json:"login"`
	// ID names the certificate; the tunnel of a session it opens refers to
	// it (?certificate=ID) so the session's login is known.
	ID          string    `json:"id"`
	MachineID   string    `json:"machineId"`
	ValidBefore time.Time `json:"validBefore"`
	// HostKeys are the machine's sshd host keys as its agent reported them.
	HostKeys []string `json:"hostKeys"`
}

// SSH session states.
const (
	SessionActive = "Active"
	SessionEnded  = "Ended"
)

// SSHSession is one relayed connection to a machine's port.
type SSHSession struct {
	ID          string `json:"id"`
	Machine     string `json:"machine"` // resource id
	MachineName string `json:"machineName"`
	Port        int    `json:"port"`
	// User is who opened it; Login the local account, when known (the
	// session was opened with a certificate from this server).
	User     string `json:"user"`
	UserID   string `json:"userId"`
	Login    string `json:"login,omitempty"`
	SourceIP string `json:"sourceIp"`
	State    string `json:"state"`
	// StartedAt, EndedAt and the byte counts (updated while it runs).
	StartedAt        time.Time `json:"startedAt"`
	EndedAt          time.Time `json:"endedAt,omitzero"`
	BytesToMachine   int64     `json:"bytesToMachine"`
	BytesFromMachine int64     `json:"bytesFromMachine"`
	EndedBy          string    `json:"endedBy,omitempty"`
	EndReason        string    `json:"endReason,omitempty"`
}

// ParseJITPort reads "22", "22/tcp" or "53/udp" (tcp when no protocol is
// given) and returns the canonical "22/tcp".
func ParseJITPort(s string) (string, error) {
	num, proto, hasProto := strings.Cut(strings.TrimSpace(s), "/")
	p := "tcp"
	if hasProto {
		switch strings.ToLower(proto) {
		case "tcp":
		case "udp":
			p = "udp"
		default:
			return "", fmt.Errorf("port %q: the protocol must be tcp or udp", s)
		}
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return "", fmt.Errorf("port %q: not a number (use 22, 22/tcp or 53/udp)", s)
	}
	if n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q: port numbers run from 1 to 65535", s)
	}
	return strconv.Itoa(n) + "/" + p, nil
}

// ParseJITSource reads one source address of a grant: a plain IPv4 or IPv6
// address (an IPv4-mapped IPv6 address is read as the IPv4 one), not a
// range, not unspecified, multicast or with a zone.
func ParseJITSource(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		if strings.Contains(s, "/") {
			return netip.Addr{}, fmt.Errorf("source %q: a grant is for one address, not a range", s)
		}
		return netip.Addr{}, fmt.Errorf("source %q: not an IP address", s)
	}
	a = a.Unmap()
	switch {
	case a.Zone() != "":
		return netip.Addr{}, fmt.Errorf("source %s: an address with a zone cannot be granted", a)
	case a.IsUnspecified():
		return netip.Addr{}, fmt.Errorf("source %s: the unspecified address is never a packet's source", a)
	case a.IsMulticast():
		return netip.Addr{}, fmt.Errorf("source %s: a multicast address is never a packet's source", a)
	}
	return a, nil
}

// ParseJITRange reads an allowed source range: "10.0.0.0/8", "2001:db8::/32"
// or a plain address (a single-address range). A range with host bits set
// is refused rather than silently widened.
func ParseJITRange(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("source range %q: not a CIDR range or IP address", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("source range %q: not a CIDR range", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("source range %q has host bits set: did you mean %s?", s, p.Masked())
	}
	return p, nil
}

// JITSourceAllowed reports whether a is in one of ranges (any source when
// ranges is empty); ranges must parse with ParseJITRange.
func JITSourceAllowed(a netip.Addr, ranges []string) bool {
	if len(ranges) == 0 {
		return true
	}
	for _, r := range ranges {
		if p, err := ParseJITRange(r); err == nil && p.Contains(a.Unmap()) {
			return true
		}
	}
	return false
}
