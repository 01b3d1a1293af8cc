package sshaccess_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/corralhq/corral/internal/agent/sshaccess"
	"github.com/corralhq/corral/internal/testutil"
)

// newTree is a private Debian 12 tree with openssh-server and sudo, with
// host keys of its own (the cached tree's are shared by every copy).
func newTree(t testing.TB, hostKeys bool) string {
	t.Helper()
	testutil.NeedTool(t, "chroot")
	keygen := testutil.NeedTool(t, "ssh-keygen")
	tree := testutil.DebianRoot(t, "openssh-server", "sudo")
	// As on a real machine, the tree's /etc/hosts names this host: sudo
	// resolves it and warns on stderr when it cannot.
	if hn, err := os.Hostname(); err == nil {
		f, err := os.OpenFile(filepath.Join(tree, "etc/hosts"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(f, "127.0.1.1\t%s\n", hn)
		f.Close()
	}
	if !hostKeys {
		return tree
	}
	keys, _ := filepath.Glob(filepath.Join(tree, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		os.Remove(k)
	}
	if out, err := exec.Command(keygen, "-A", "-f", tree).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen -A: %v\n%s", err, out)
	}
	return tree
}

var settings = sshaccess.Settings{
	AdminPrincipals: []string{"admin@m-1"},
	UserPrincipals:  []string{"user@m-1", "user@all"},
	CAKeys:          []string{testCAKey},
}

type counter struct{ n atomic.Int32 }

func (c *counter) reload(context.Context) error { c.n.Add(1); return nil }

func newAccess(t testing.TB, tree string, c *counter) *sshaccess.Access {
	t.Helper()
	a, err := sshaccess.New(sshaccess.Host{Root: tree, Reload: c.reload})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func passwd(t testing.TB, tree, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(tree, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Split(l, ":"); f[0] == name {
			return f
		}
	}
	return nil
}

func shadowPassword(t testing.TB, tree, name string) string {
	t.Helper()
	b, _ := os.ReadFile(filepath.Join(tree, "etc/shadow"))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Split(l, ":"); f[0] == name {
			return f[1]
		}
	}
	return ""
}

// snapshot lists every file under the tree's /etc with its content, to
// prove a refused Enable left nothing behind.
func snapshot(t testing.TB, tree string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(filepath.Join(tree, "etc"), func(p string, d os.DirEntry, err error) error {
		if strings.HasSuffix(p, "-") {
			return nil // backups useradd and userdel keep (passwd-, shadow-...)
		}
		if err == nil && d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			out[p] = string(b)
		} else if err == nil && d.IsDir() {
			out[p] = "<dir>"
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(tree, "home/corral-admin")); err == nil {
		out["home/corral-admin"] = "<dir>"
	}
	return out
}

func TestEnableDisableOnTree(t *testing.T) {
	tree := newTree(t, false)
	var c counter
	a := newAccess(t, tree, &c)
	ctx := t.Context()
	res, err := a.Enable(ctx, settings)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sshaccess.Result{Changed: true, CreatedAccounts: []string{"corral-admin", "corral-user"}, Reloaded: true}, res); diff != "" {
		t.Errorf("first enable (-want +got):\n%s", diff)
	}
	for path, want := range map[string]struct {
		mode    os.FileMode
		content []string
	}{
		sshaccess.DropInPath:                      {0o644, []string{"TrustedUserCAKeys /etc/ssh/corral/trusted-user-ca-keys.pub", "AuthorizedPrincipalsFile /etc/ssh/corral/principals/%u"}},
		sshaccess.CAKeysPath:                      {0o644, []string{testCAKey}},
		sshaccess.PrincipalsDir + "/corral-admin": {0o644, []string{"\nadmin@m-1\n"}},
		sshaccess.PrincipalsDir + "/corral-user":  {0o644, []string{"\nuser@m-1\nuser@all\n"}},
		sshaccess.SudoersPath:                     {0o440, []string{"\ncorral-admin ALL=(ALL:ALL) NOPASSWD: ALL\n"}},
		sshaccess.AccountsPath:                    {0o644, []string{"\ncorral-admin\ncorral-user\n"}},
	} {
		fi, err := os.Stat(filepath.Join(tree, path))
		if err != nil {
			t.Errorf("%s: %v", path, err)
			continue
		}
		if fi.Mode().Perm() != want.mode {
			t.Errorf("%s: mode %04o, want %04o", path, fi.Mode().Perm(), want.mode)
		}
		b, _ := os.ReadFile(filepath.Join(tree, path))
		for _, w := range want.content {
			if !strings.Contains(string(b), w) {
				t.Errorf("%s lacks %q:\n%s", path, w, b)
			}
		}
	}
	for _, name := range []string{"corral-admin", "corral-user"} {
		f := passwd(t, tree, name)
		if f == nil || f[2] == "0" || f[6] != "/bin/bash" || f[5] != "/home/"+name {
			t.Errorf("passwd entry for %s: %v", name, f)
		}
		if p := shadowPassword(t, tree, name); p != "*" {
			t.Errorf("%s password field %q, want * (no password, not locked)", name, p)
		}
		if _, err := os.Stat(filepath.Join(tree, "home", name)); err != nil {
			t.Errorf("home of %s: %v", name, err)
		}
	}
	// The host is untouched: the accounts exist only in the tree.
	if out, err := exec.Command("getent", "passwd", "corral-admin").CombinedOutput(); err == nil {
		t.Fatalf("the host has a corral-admin account: %s", out)
	}

	// Again: nothing to do, no reload.
	res, err = a.Enable(ctx, settings)
	if err != nil || res.Changed || res.Reloaded || c.n.Load() != 1 {
		t.Errorf("second enable = %+v, %v, reloads %d; want no change", res, err, c.n.Load())
	}

	// New principals and a second CA key: files change, accounts stay.
	more := settings
	more.CAKeys = append([]string{testCAKey2}, settings.CAKeys...)
	more.UserPrincipals = []string{"user@m-1"}
	res, err = a.Enable(ctx, more)
	if err != nil || !res.Changed || len(res.CreatedAccounts) != 0 || c.n.Load() != 2 {
		t.Errorf("enable with new settings = %+v, %v, reloads %d", res, err, c.n.Load())
	}
	if b, _ := os.ReadFile(filepath.Join(tree, sshaccess.PrincipalsDir, "corral-user")); strings.Contains(string(b), "user@all") {
		t.Errorf("principals not replaced:\n%s", b)
	}

	res, err = a.Disable(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(res.RemovedAccounts)
	if diff := cmp.Diff(sshaccess.Result{Changed: true, RemovedAccounts: []string{"corral-admin", "corral-user"}, Reloaded: true}, res); diff != "" {
		t.Errorf("disable (-want +got):\n%s", diff)
	}
	for _, p := range []string{sshaccess.DropInPath, sshaccess.OwnDir, sshaccess.SudoersPath, "home/corral-admin", "home/corral-user"} {
		if _, err := os.Stat(filepath.Join(tree, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there after disable: %v", p, err)
		}
	}
	for _, name := range []string{"corral-admin", "corral-user"} {
		if f := passwd(t, tree, name); f != nil {
			t.Errorf("account %s still there: %v", name, f)
		}
	}
	res, err = a.Disable(ctx)
	if err != nil || res.Changed || res.Reloaded {
		t.Errorf("second disable = %+v, %v; want nothing", res, err)
	}
}

// An account that existed before is used, and kept on disable.
func TestExistingAccountIsKept(t *testing.T) {
	tree := newTree(t, false)
	if out, err := exec.Command("chroot", tree, "useradd", "--create-home", "ops").CombinedOutput(); err != nil {
		t.Fatalf("useradd: %v\n%s", err, out)
	}
	var c counter
	a := newAccess(t, tree, &c)
	s := settings
	s.AdminUser = "ops"
	res, err := a.Enable(t.Context(), s)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"corral-user"}, res.CreatedAccounts); diff != "" {
		t.Errorf("created (-want +got):\n%s", diff)
	}
	// Switching the admin name back: corral-admin is created; ops was
	// never corral's and stays.
	if _, err := a.Enable(t.Context(), settings); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(tree, sshaccess.PrincipalsDir, "ops")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("principals file of ops still there: %v", err)
	}
	if _, err := a.Disable(t.Context()); err != nil {
		t.Fatal(err)
	}
	if passwd(t, tree, "ops") == nil {
		t.Error("disable removed an account corral did not create")
	}
	if passwd(t, tree, "corral-admin") != nil || passwd(t, tree, "corral-user") != nil {
		t.Error("disable kept accounts corral created")
	}
}

// Each refusal leaves the tree exactly as it was (apart from the backups
// useradd keeps); the cases share one tree, each undoing its own setup.
func TestEnableRefusals(t *testing.T) {
	tree := newTree(t, false)
	chroot := func(t *testing.T, args ...string) {
		t.Helper()
		if out, err := exec.Command("chroot", append([]string{tree}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	writeFile := func(rel, content string) func() {
		p := filepath.Join(tree, rel)
		old, err := os.ReadFile(p)
		os.WriteFile(p, []byte(content), 0o644)
		return func() {
			if err != nil {
				os.Remove(p)
			} else {
				os.WriteFile(p, old, 0o644)
			}
		}
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) (undo func())
		want  string
		is    error
	}{
		{
			name: "no Include of the drop-in",
			setup: func(t *testing.T) func() {
				b, _ := os.ReadFile(filepath.Join(tree, sshaccess.MainConfig))
				return writeFile(sshaccess.MainConfig, strings.Replace(string(b), "Include /etc/ssh/sshd_config.d/*.conf", "#Include removed", 1))
			},
			want: `add the line "Include /etc/ssh/sshd_config.d/*.conf"`, is: sshaccess.ErrNotIncluded,
		},
		{
			name: "an earlier drop-in sets its own CA",
			setup: func(t *testing.T) func() {
				return writeFile("etc/ssh/sshd_config.d/00-site.conf", "TrustedUserCAKeys /etc/ssh/site-ca.pub\n")
			},
			want: `effective trustedusercakeys is "/etc/ssh/site-ca.pub"`,
		},
		{
			name: "a line above the Include sets the principals file",
			setup: func(t *testing.T) func() {
				b, _ := os.ReadFile(filepath.Join(tree, sshaccess.MainConfig))
				return writeFile(sshaccess.MainConfig, "AuthorizedPrincipalsFile /etc/ssh/principals/%u\n"+string(b))
			},
			want: `effective authorizedprincipalsfile is "/etc/ssh/principals/%u"`,
		},
		{
			name: "the unprivileged account can sudo",
			setup: func(t *testing.T) func() {
				chroot(t, "useradd", "--groups", "sudo", "corral-user")
				return func() { chroot(t, "userdel", "corral-user") }
			},
			want: "the unprivileged account corral-user can use sudo",
		},
		{
			name: "the admin account is uid 0",
			setup: func(t *testing.T) func() {
				chroot(t, "useradd", "--non-unique", "--uid", "0", "corral-admin")
				return func() { chroot(t, "userdel", "corral-admin") }
			},
			want: "account corral-admin has uid 0",
		},
		{
			name: "sshd refuses the configuration",
			setup: func(t *testing.T) func() {
				return writeFile("etc/ssh/sshd_config.d/zz-broken.conf", "NoSuchKeyword yes\n")
			},
			want: "sshd refuses the configuration",
		},
		{
			name: "sudo not installed",
			setup: func(t *testing.T) func() {
				d := filepath.Join(tree, "etc/sudoers.d")
				os.Rename(d, d+".away")
				return func() { os.Rename(d+".away", d) }
			},
			want: "sudo is not installed",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			undo := tc.setup(t)
			defer undo()
			before := snapshot(t, tree)
			var c counter
			_, err := newAccess(t, tree, &c).Enable(t.Context(), settings)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("enable = %v; want error with %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v) = false", tc.is)
			}
			t.Logf("refused: %v", err)
			if diff := cmp.Diff(before, snapshot(t, tree)); diff != "" {
				t.Errorf("a refused enable changed the tree (-before +after):\n%s", diff)
			}
			if c.n.Load() != 0 {
				t.Error("a refused enable reloaded sshd")
			}
		})
	}
	// And with every setup undone, the same tree is accepted.
	if _, err := newAccess(t, tree, &counter{}).Enable(t.Context(), settings); err != nil {
		t.Fatalf("enable after the refusals: %v", err)
	}
}

func TestReloadFailureIsRetried(t *testing.T) {
	tree := newTree(t, false)
	fail := true
	calls := 0
	a, err := sshaccess.New(sshaccess.Host{Root: tree, Reload: func(context.Context) error {
		calls++
		if fail {
			return errors.New("ssh.service is not running")
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Enable(t.Context(), settings); err == nil || !strings.Contains(err.Error(), "the next call retries") {
		t.Fatalf("enable with failing reload = %v", err)
	}
	fail = false
	res, err := a.Enable(t.Context(), settings)
	if err != nil || res.Changed || !res.Reloaded || calls != 2 {
		t.Fatalf("retry = %+v, %v, calls %d; want a reload without changes", res, err, calls)
	}
	res, err = a.Enable(t.Context(), settings)
	if err != nil || res.Reloaded || calls != 2 {
		t.Fatalf("third enable = %+v, %v, calls %d; want nothing", res, err, calls)
	}
}
