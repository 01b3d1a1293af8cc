package sshaccess

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// ErrNotIncluded is returned when the main sshd_config does not Include the
// drop-in: corral does not edit that file.
var ErrNotIncluded = errors.New("sshd_config does not include the corral drop-in")

// Host describes the machine.
type Host struct {
	// Root is the machine's root directory: "/" in production. Tools run
	// inside it (through chroot when it is not "/").
	Root string
	// SSHD is sshd's path inside Root; default /usr/sbin/sshd.
	SSHD string
	// Reload makes the running sshd read its configuration again (e.g.
	// `systemctl reload ssh`). Nil means there is nothing to reload.
	Reload func(ctx context.Context) error
	// Logger receives one line per change; nil discards.
	Logger *slog.Logger
}

// Result says what a call did.
type Result struct {
	Changed         bool     // a file or an account changed
	CreatedAccounts []string // accounts created by this call
	RemovedAccounts []string // accounts deleted by this call
	Reloaded        bool     // the Reload hook ran and succeeded
}

// Access applies Settings to one machine.
type Access struct {
	host Host
	log  *slog.Logger
	mu   sync.Mutex
}

// New checks h and returns an Access.
func New(h Host) (*Access, error) {
	if !filepath.IsAbs(h.Root) {
		return nil, fmt.Errorf("ssh access: root %q is not an absolute path", h.Root)
	}
	if fi, err := os.Stat(h.Root); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("ssh access: root %s is not a directory: %v", h.Root, err)
	}
	h.Root = filepath.Clean(h.Root)
	if h.SSHD == "" {
		h.SSHD = "/usr/sbin/sshd"
	}
	log := h.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Access{host: h, log: log.With("component", "sshaccess")}, nil
}

func (a *Access) path(p string) string { return filepath.Join(a.host.Root, p) }

// run runs a tool of the machine: directly when the root is "/", else
// chrooted into it. The error carries the tool's output.
func (a *Access) run(ctx context.Context, name string, args ...string) (string, error) {
	var cmd *exec.Cmd
	if a.host.Root == "/" {
		cmd = exec.CommandContext(ctx, name, args...)
	} else {
		cmd = exec.CommandContext(ctx, "chroot", append([]string{a.host.Root, name}, args...)...)
	}
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "LC_ALL=C"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := strings.TrimSpace(out.String())
	// sudo complains when the host name does not resolve; it changes
	// nothing and would only bury the message that matters.
	var kept []string
	for _, l := range strings.Split(text, "\n") {
		if !strings.Contains(l, "unable to resolve host") {
			kept = append(kept, l)
		}
	}
	text = strings.Join(kept, "\n")
	if err != nil {
		return text, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, text)
	}
	return text, nil
}

// account is a passwd entry.
type account struct {
	name  string
	uid   string
	shell string
}

// lookup finds an account through the machine's NSS (getent), so accounts
// from LDAP or sssd count as existing.
func (a *Access) lookup(ctx context.Context, name string) (account, bool, error) {
	out, err := a.run(ctx, "getent", "passwd", name)
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 2 {
		return account{}, false, nil
	}
	if err != nil {
		return account{}, false, err
	}
	f := strings.Split(strings.SplitN(out, "\n", 2)[0], ":")
	if len(f) != 7 {
		return account{}, false, fmt.Errorf("getent passwd %s: unexpected line %q", name, out)
	}
	return account{name: f[0], uid: f[2], shell: f[6]}, true, nil
}

func (a *Access) useradd(ctx context.Context, name, comment string) error {
	_, err := a.run(ctx, "useradd", "--create-home", "--shell", "/bin/bash", "--comment", comment, "--password", "*", name)
	return err
}

func (a *Access) userdel(ctx context.Context, name string) error {
	_, err := a.run(ctx, "userdel", "--remove", name)
	return err
}

// Enable puts s in force: accounts, files, checks, reload. See the package
// comment for the checks and the rollback.
func (a *Access) Enable(ctx context.Context, s Settings) (Result, error) {
	s = s.withDefaults()
	if err := s.Validate(); err != nil {
		return Result{}, fmt.Errorf("ssh access settings: %w", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.prerequisites(); err != nil {
		return Result{}, err
	}
	// A configuration sshd already refuses is not ours to fix: say so
	// before touching anything.
	if err := a.sshdTest(ctx); err != nil {
		return Result{}, fmt.Errorf("%w (before any change by corral)", err)
	}

	want := map[string][]byte{
		DropInPath:                        dropIn(),
		CAKeysPath:                        lines(s.CAKeys),
		PrincipalsDir + "/" + s.AdminUser: lines(s.AdminPrincipals),
		PrincipalsDir + "/" + s.User:      lines(s.UserPrincipals),
		SudoersPath:                       []byte(header + s.AdminUser + " ALL=(ALL:ALL) NOPASSWD: ALL\n"),
	}
	// Everything Enable may touch, as it is now, for the rollback.
	touched := []string{AccountsPath}
	for p := range want {
		touched = append(touched, p)
	}
	stale, err := a.principalFiles()
	if err != nil {
		return Result{}, err
	}
	for _, p := range stale {
		if _, ok := want[p]; !ok {
			touched = append(touched, p)
		}
	}
	snap := map[string]file{}
	for _, p := range touched {
		f, err := a.read(p)
		if err != nil {
			return Result{}, err
		}
		snap[p] = f
	}
	// Directories Enable may create, removed again on rollback.
	var newDirs []string
	for _, d := range []string{PrincipalsDir, OwnDir, filepath.Dir(reloadPendingPath)} {
		if _, err := os.Stat(a.path(d)); errors.Is(err, fs.ErrNotExist) {
			newDirs = append(newDirs, d)
		}
	}
	var res Result
	rollback := func(cause error) (Result, error) {
		errs := []error{cause}
		for _, name := range res.CreatedAccounts {
			if err := a.userdel(ctx, name); err != nil {
				errs = append(errs, fmt.Errorf("rollback: %w", err))
			}
		}
		for p, f := range snap {
			if err := a.restore(p, f); err != nil {
				errs = append(errs, fmt.Errorf("rollback %s: %w", p, err))
			}
		}
		for _, d := range newDirs {
			os.Remove(a.path(d)) // only if empty, which it is unless someone else wrote there
		}
		return Result{}, errors.Join(errs...)
	}

	created, err := a.createdAccounts()
	if err != nil {
		return Result{}, err
	}
	for _, acct := range []struct{ name, comment string }{{s.AdminUser, "Corral administrator login"}, {s.User, "Corral user login"}} {
		_, ok, err := a.lookup(ctx, acct.name)
		if err != nil {
			return rollback(err)
		}
		if ok {
			continue
		}
		if err := a.useradd(ctx, acct.name, acct.comment); err != nil {
			return rollback(err)
		}
		a.log.InfoContext(ctx, "created account", "account", acct.name)
		res.CreatedAccounts = append(res.CreatedAccounts, acct.name)
		if !slices.Contains(created, acct.name) {
			created = append(created, acct.name)
		}
	}
	if len(created) > 0 {
		if _, err := a.write(AccountsPath, lines(created), 0o644); err != nil {
			return rollback(err)
		}
	}
	res.Changed = len(res.CreatedAccounts) > 0

	for _, p := range stale {
		if _, ok := want[p]; !ok {
			if _, err := a.remove(p); err != nil {
				return rollback(err)
			}
			res.Changed = true
		}
	}
	for _, p := range []string{CAKeysPath, PrincipalsDir + "/" + s.AdminUser, PrincipalsDir + "/" + s.User, DropInPath} {
		changed, err := a.write(p, want[p], 0o644)
		if err != nil {
			return rollback(err)
		}
		res.Changed = res.Changed || changed
	}
	changed, err := a.writeSudoers(ctx, want[SudoersPath])
	if err != nil {
		return rollback(err)
	}
	res.Changed = res.Changed || changed

	if err := a.check(ctx, s); err != nil {
		return rollback(err)
	}

	// Accounts corral created for names no longer configured go away.
	var keep []string
	for _, name := range created {
		if name == s.AdminUser || name == s.User {
			keep = append(keep, name)
			continue
		}
		if _, ok, err := a.lookup(ctx, name); err == nil && ok {
			if err := a.userdel(ctx, name); err != nil {
				a.log.WarnContext(ctx, "could not remove an account corral created", "account", name, "err", err)
				keep = append(keep, name)
				continue
			}
			res.RemovedAccounts = append(res.RemovedAccounts, name)
			res.Changed = true
		}
	}
	if len(keep) != len(created) {
		if _, err := a.write(AccountsPath, lines(keep), 0o644); err != nil {
			return res, err
		}
	}
	if res.Changed {
		a.log.InfoContext(ctx, "sshd configuration changed", "admin", s.AdminUser, "user", s.User, "ca_keys", len(s.CAKeys))
	}
	return a.reload(ctx, res)
}

// prerequisites are what Enable cannot fix itself.
func (a *Access) prerequisites() error {
	if _, err := os.Stat(a.path(a.host.SSHD)); err != nil {
		return fmt.Errorf("ssh access: sshd not found at %s (is openssh-server installed?): %w", a.path(a.host.SSHD), err)
	}
	ok, err := a.included()
	if err != nil {
		return fmt.Errorf("ssh access: read %s: %w", a.path(MainConfig), err)
	}
	if !ok {
		return fmt.Errorf("ssh access: %w: %s has no Include matching %s; add the line \"Include /etc/ssh/sshd_config.d/*.conf\" at its top (Debian 12's default has it) and try again",
			ErrNotIncluded, a.path(MainConfig), DropInPath)
	}
	if fi, err := os.Stat(a.path(filepath.Dir(SudoersPath))); err != nil || !fi.IsDir() {
		return fmt.Errorf("ssh access: %s is missing: sudo is not installed, and the administrator login needs it", a.path(filepath.Dir(SudoersPath)))
	}
	return nil
}

// writeSudoers replaces the sudoers file only after visudo accepts it.
func (a *Access) writeSudoers(ctx context.Context, data []byte) (bool, error) {
	cur, err := a.read(SudoersPath)
	if err != nil {
		return false, err
	}
	if cur.exists && cur.mode == 0o440 && bytes.Equal(cur.data, data) {
		return false, nil
	}
	return true, writeAtomic(a.path(SudoersPath), data, 0o440, func(tmp string) error {
		inRoot := filepath.Join(filepath.Dir(SudoersPath), filepath.Base(tmp))
		_, err := a.run(ctx, "visudo", "-c", "-f", inRoot)
		return err
	})
}

// check verifies what is in force once the files are written.
func (a *Access) check(ctx context.Context, s Settings) error {
	if err := a.sshdTest(ctx); err != nil {
		return err
	}
	out, err := a.run(ctx, a.host.SSHD, "-T", "-f", MainConfig)
	if err != nil {
		return fmt.Errorf("ssh access: %w", err)
	}
	effective := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, " "); ok {
			effective[k] = v
		}
	}
	for _, kv := range [][2]string{{"trustedusercakeys", CAKeysPath}, {"authorizedprincipalsfile", PrincipalsDir + "/%u"}} {
		if got := effective[kv[0]]; got != kv[1] {
			return fmt.Errorf("ssh access: sshd's effective %s is %q, not corral's %q: an earlier line in sshd_config or an earlier drop-in sets it, and sshd keeps the first value; remove that setting to let corral manage SSH", kv[0], got, kv[1])
		}
	}
	for _, name := range []string{s.AdminUser, s.User} {
		acct, ok, err := a.lookup(ctx, name)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("ssh access: account %s is missing after creation", name)
		}
		if acct.uid == "0" {
			return fmt.Errorf("ssh access: account %s has uid 0; certificate logins must land on ordinary accounts", name)
		}
	}
	out, err = a.run(ctx, "sudo", "-n", "-l", "-U", s.AdminUser)
	if err != nil {
		return fmt.Errorf("ssh access: %w", err)
	}
	if !strings.Contains(out, "NOPASSWD: ALL") {
		return fmt.Errorf("ssh access: sudo does not let %s run everything without a password (is /etc/sudoers.d included by /etc/sudoers?); sudo -l says: %s", s.AdminUser, out)
	}
	out, err = a.run(ctx, "sudo", "-n", "-l", "-U", s.User)
	if err != nil {
		return fmt.Errorf("ssh access: %w", err)
	}
	if !strings.Contains(out, "is not allowed to run sudo") {
		return fmt.Errorf("ssh access: the unprivileged account %s can use sudo, and User Login must not: remove its sudo rights or choose another ssh.user; sudo -l says: %s", s.User, out)
	}
	return nil
}

// sshdTest runs `sshd -t` on the main configuration. sshd insists on its
// privilege separation directory, which systemd creates when it starts sshd;
// create it if sshd is not running.
func (a *Access) sshdTest(ctx context.Context) error {
	if err := os.MkdirAll(a.path("/run/sshd"), 0o755); err != nil {
		return err
	}
	if _, err := a.run(ctx, a.host.SSHD, "-t", "-f", MainConfig); err != nil {
		return fmt.Errorf("ssh access: sshd refuses the configuration: %w", err)
	}
	return nil
}

// reload runs the Reload hook when something changed or an earlier reload
// failed.
func (a *Access) reload(ctx context.Context, res Result) (Result, error) {
	pending, err := a.read(reloadPendingPath)
	if err != nil {
		return res, err
	}
	if !res.Changed && !pending.exists || a.host.Reload == nil {
		return res, nil
	}
	if _, err := a.write(reloadPendingPath, nil, 0o600); err != nil {
		return res, err
	}
	if err := a.host.Reload(ctx); err != nil {
		return res, fmt.Errorf("ssh access: reload sshd (the next call retries): %w", err)
	}
	res.Reloaded = true
	_, err = a.remove(reloadPendingPath)
	return res, err
}

// Disable removes everything Enable put in place and the accounts corral
// created, then reloads sshd if its configuration is valid.
func (a *Access) Disable(ctx context.Context) (Result, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var res Result
	var errs []error
	// The CA keys first: sshd reads them at each login, so certificate
	// logins stop here, before any reload.
	principals, err := a.principalFiles()
	if err != nil {
		return res, err
	}
	for _, p := range append([]string{CAKeysPath, DropInPath, SudoersPath}, principals...) {
		removed, err := a.remove(p)
		if err != nil {
			errs = append(errs, err)
		}
		res.Changed = res.Changed || removed
	}
	created, err := a.createdAccounts()
	if err != nil {
		return res, err
	}
	var keep []string
	for _, name := range created {
		if _, ok, err := a.lookup(ctx, name); err != nil || !ok {
			if err != nil {
				errs = append(errs, err)
				keep = append(keep, name)
			}
			continue
		}
		if err := a.userdel(ctx, name); err != nil {
			errs = append(errs, err)
			keep = append(keep, name)
			continue
		}
		a.log.InfoContext(ctx, "removed account", "account", name)
		res.RemovedAccounts = append(res.RemovedAccounts, name)
		res.Changed = true
	}
	if len(keep) > 0 {
		if _, err := a.write(AccountsPath, lines(keep), 0o644); err != nil {
			errs = append(errs, err)
		}
	} else {
		for _, p := range []string{AccountsPath, PrincipalsDir, OwnDir} {
			if _, err := a.remove(p); err != nil && !errors.Is(err, fs.ErrExist) {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("ssh access: disable (call again to retry): %w", err)
	}
	pending, _ := a.read(reloadPendingPath)
	if !res.Changed && !pending.exists {
		return res, nil
	}
	if _, err := os.Stat(a.path(a.host.SSHD)); err != nil {
		return res, nil // sshd is gone: nothing to reload
	}
	if err := a.sshdTest(ctx); err != nil {
		return res, fmt.Errorf("%w; not reloading sshd (certificate logins stopped anyway: the CA keys file is gone)", err)
	}
	if res.Changed {
		a.log.InfoContext(ctx, "sshd configuration restored")
	}
	return a.reload(ctx, res)
}
