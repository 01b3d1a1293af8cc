package sshaccess

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Default account names (local keys ssh.adminuser and ssh.user).
const (
	DefaultAdminUser = "corral-admin"
	DefaultUser      = "corral-user"
)

// Settings are what the agent wants in force: account names from the local
// configuration, principals and CA keys from the control plane.
type Settings struct {
	// AdminUser may sudo without a password; default corral-admin.
	AdminUser string
	// User is unprivileged; default corral-user.
	User string
	// AdminPrincipals and UserPrincipals are the certificate principals that
	// log in as AdminUser and User. At least one each; scope them to the
	// machine.
	AdminPrincipals []string
	UserPrincipals  []string
	// CAKeys are the trusted user CA public keys in authorized_keys format
	// ("ssh-ed25519 AAAA... comment"); several while a CA key rotates.
	CAKeys []string
}

func (s Settings) withDefaults() Settings {
	if s.AdminUser == "" {
		s.AdminUser = DefaultAdminUser
	}
	if s.User == "" {
		s.User = DefaultUser
	}
	return s
}

var (
	accountRe   = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	principalRe = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@:-]{0,127}$`)
)

// caKeyTypes are the key types sshd accepts as a user CA.
var caKeyTypes = []string{
	"ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa",
	"sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
}

// Validate reports every problem with s (after defaults).
func (s Settings) Validate() error {
	s = s.withDefaults()
	var errs []error
	for _, acct := range []struct{ key, name string }{{"ssh.adminuser", s.AdminUser}, {"ssh.user", s.User}} {
		switch {
		case !accountRe.MatchString(acct.name):
			errs = append(errs, fmt.Errorf("%s %q: not a valid account name (lower case letters, digits, _ and -, at most 32)", acct.key, acct.name))
		case acct.name == "root":
			errs = append(errs, fmt.Errorf("%s: root cannot be a certificate login; the administrator account uses sudo", acct.key))
		}
	}
	if s.AdminUser == s.User {
		errs = append(errs, fmt.Errorf("ssh.adminuser and ssh.user are both %q: the two logins need two accounts", s.User))
	}
	seen := map[string]string{}
	for _, set := range []struct {
		account    string
		principals []string
	}{{s.AdminUser, s.AdminPrincipals}, {s.User, s.UserPrincipals}} {
		if len(set.principals) == 0 {
			errs = append(errs, fmt.Errorf("no principals for account %s", set.account))
		}
		for _, p := range set.principals {
			if !principalRe.MatchString(p) {
				errs = append(errs, fmt.Errorf("principal %q for %s: letters, digits, _ . @ : - only, at most 128", p, set.account))
			}
			if other, ok := seen[p]; ok && other != set.account {
				errs = append(errs, fmt.Errorf("principal %q maps to both %s and %s", p, other, set.account))
			}
			seen[p] = set.account
		}
	}
	if len(s.CAKeys) == 0 {
		errs = append(errs, errors.New("no trusted user CA key"))
	}
	for i, k := range s.CAKeys {
		if err := checkCAKey(k); err != nil {
			errs = append(errs, fmt.Errorf("CA key %d: %w", i+1, err))
		}
	}
	return errors.Join(errs...)
}

// checkCAKey checks one authorized_keys-format line the way sshd will read
// it, without a crypto library: a known type, base64 that decodes, and a
// blob naming the same type.
func checkCAKey(line string) error {
	if strings.ContainsAny(line, "\r\n") {
		return errors.New("must be a single line")
	}
	f := strings.Fields(line)
	if len(f) < 2 {
		return errors.New(`want "TYPE BASE64 [comment]"`)
	}
	if !slices.Contains(caKeyTypes, f[0]) {
		return fmt.Errorf("key type %q is not one sshd accepts for a CA", f[0])
	}
	blob, err := base64.StdEncoding.DecodeString(f[1])
	if err != nil {
		return fmt.Errorf("key data is not base64: %v", err)
	}
	if len(blob) < 4 {
		return errors.New("key data too short")
	}
	n := binary.BigEndian.Uint32(blob)
	if uint64(n)+4 > uint64(len(blob)) || !bytes.Equal(blob[4:4+n], []byte(f[0])) {
		return fmt.Errorf("key data does not hold a %s key", f[0])
	}
	return nil
}
