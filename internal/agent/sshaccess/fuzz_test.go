package sshaccess

import (
	"crypto/ed25519"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// FuzzSettings: SSH access settings come partly from the control plane
// (principals, CA keys) and are written into sshd's files one item a line.
// Settings Validate accepts write back, line for line, as the same items
// (nothing can add a line sshd would read), and every CA key is one ssh
// parses as a key of the type it names.
func FuzzSettings(f *testing.F) {
	pk, _ := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, 32)))
	ca := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pk)))
	f.Add("", "", "corral:admin@m1", "corral:user@m1", ca+" corral user CA")
	f.Add("ops", "dev", "a", "b", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 x")
	f.Add("root", "root", "a b", "a", ca+"\nssh-rsa AAAA")
	f.Add("x", "y", "p", "p", "ssh-rsa AAAAB3NzaC1yc2E=")
	f.Fuzz(func(t *testing.T, admin, user, adminPrincipal, userPrincipal, caKey string) {
		s := Settings{AdminUser: admin, User: user, AdminPrincipals: []string{adminPrincipal}, UserPrincipals: []string{userPrincipal}, CAKeys: []string{caKey}}
		if s.Validate() != nil {
			return
		}
		s = s.withDefaults()
		for _, items := range [][]string{s.CAKeys, s.AdminPrincipals, s.UserPrincipals} {
			got := strings.Split(strings.TrimSuffix(strings.TrimPrefix(string(lines(items)), header), "\n"), "\n")
			if len(got) != len(items) || got[0] != items[0] {
				t.Fatalf("items %q are written as lines %q", items, got)
			}
		}
		for _, name := range []string{s.AdminUser, s.User} {
			if name == "root" || strings.ContainsAny(name, "/.\x00 ") {
				t.Fatalf("account %q accepted", name)
			}
		}
		key, _, _, rest, err := ssh.ParseAuthorizedKey([]byte(caKey))
		if err == nil && key.Type() != strings.Fields(caKey)[0] {
			t.Fatalf("CA key %q parses as a %s key", caKey, key.Type())
		}
		_ = rest
	})
}
