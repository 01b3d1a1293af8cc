package sshaccess_test

import (
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/agent/sshaccess"
)

const testCAKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINI7Pn2sstu+UhT3ijuJJWnpJZ9Y55OFX4NEn2YKv5NN corral-user-ca"

const testCAKey2 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPvTd9nQ1Bm0X4eAL8Uz9VqHcQ1gq6s5CXxUxFz3dI2K corral-user-ca-next"

func TestSettingsValidate(t *testing.T) {
	good := sshaccess.Settings{AdminPrincipals: []string{"admin@m-1"}, UserPrincipals: []string{"user@m-1"}, CAKeys: []string{testCAKey}}
	if err := good.Validate(); err != nil {
		t.Fatalf("good settings: %v", err)
	}
	for _, tc := range []struct {
		name   string
		change func(*sshaccess.Settings)
		want   string
	}{
		{"root admin", func(s *sshaccess.Settings) { s.AdminUser = "root" }, "root cannot be a certificate login"},
		{"bad user name", func(s *sshaccess.Settings) { s.User = "Bob Smith" }, `ssh.user "Bob Smith": not a valid account name`},
		{"long name", func(s *sshaccess.Settings) { s.User = strings.Repeat("a", 33) }, "not a valid account name"},
		{"same accounts", func(s *sshaccess.Settings) { s.User = "corral-admin" }, "need two accounts"},
		{"no admin principals", func(s *sshaccess.Settings) { s.AdminPrincipals = nil }, "no principals for account corral-admin"},
		{"principal with comma", func(s *sshaccess.Settings) { s.UserPrincipals = []string{"a,b"} }, `principal "a,b"`},
		{"principal with space", func(s *sshaccess.Settings) { s.UserPrincipals = []string{"a b"} }, `principal "a b"`},
		{"shared principal", func(s *sshaccess.Settings) { s.UserPrincipals = []string{"admin@m-1"} }, "maps to both"},
		{"no CA", func(s *sshaccess.Settings) { s.CAKeys = nil }, "no trusted user CA key"},
		{"CA not base64", func(s *sshaccess.Settings) { s.CAKeys = []string{"ssh-ed25519 !!!"} }, "not base64"},
		{"CA wrong type in blob", func(s *sshaccess.Settings) {
			s.CAKeys = []string{strings.Replace(testCAKey, "ssh-ed25519", "ssh-rsa", 1)}
		}, "does not hold a ssh-rsa key"},
		{"CA dsa", func(s *sshaccess.Settings) { s.CAKeys = []string{"ssh-dss AAAAB3NzaC1kc3M="} }, "not one sshd accepts"},
		{"CA two lines", func(s *sshaccess.Settings) { s.CAKeys = []string{testCAKey + "\n" + testCAKey} }, "single line"},
		{"CA options", func(s *sshaccess.Settings) { s.CAKeys = []string{"cert-authority " + testCAKey} }, "not one sshd accepts"},
	} {
		s := good
		s.AdminPrincipals = append([]string(nil), good.AdminPrincipals...)
		tc.change(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want error with %q", tc.name, err, tc.want)
		}
	}
}

func TestNewChecksRoot(t *testing.T) {
	if _, err := sshaccess.New(sshaccess.Host{Root: "relative"}); err == nil {
		t.Error("relative root accepted")
	}
	if _, err := sshaccess.New(sshaccess.Host{Root: "/nonexistent-corral-root"}); err == nil {
		t.Error("missing root accepted")
	}
}
