package access

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/corralhq/corral/internal/agent/sshaccess"
	"github.com/corralhq/corral/internal/wire"
)

// sshStateFile marks that sshd trusts the CA because of this feature.
const sshStateFile = "ssh-managed"

// maxHostKeyBytes bounds one host key file read.
const maxHostKeyBytes = 16 << 10

// reconcileSSH enables or disables the certificate login as ssh.manage and
// the desired state say.
func (f *Feature) reconcileSSH(ctx context.Context, d *wire.SSHDesired) wire.SSHStatus {
	cfg := f.env.Config()
	st := wire.SSHStatus{State: wire.SSHStateOff, HostKeys: f.hostKeys()}
	if !cfg.SSHManage {
		if !f.sshManaged() {
			return st
		}
		// Undoing is always allowed, trial mode or not: it only takes
		// away what corral put there.
		a, err := f.sshAccess()
		if err == nil {
			_, err = a.Disable(ctx)
		}
		if err != nil {
			f.env.Logger.ErrorContext(ctx, "SSH certificate login not undone", "err", err)
			st.State, st.Message = wire.SSHStateFailed, "ssh.manage is false but undoing the certificate login failed (retried): "+err.Error()
			return st
		}
		f.sshKey = ""
		f.env.Logger.InfoContext(ctx, "SSH certificate login undone: ssh.manage is not true")
		if err := os.Remove(f.sshMarker()); err != nil && !errors.Is(err, fs.ErrNotExist) {
			st.State, st.Message = wire.SSHStateFailed, err.Error()
		}
		return st
	}
	if d == nil || len(d.CAKeys) == 0 {
		st.State, st.Message = wire.SSHStateFailed, "ssh.manage is true, but the control plane sent no SSH user CA yet"
		return st
	}
	if why := f.env.HostChangesRefused(); why != nil {
		f.env.LogRefused(ctx, "SSH certificate login refused", "reason", why)
		st.State, st.Message = wire.SSHStateRefused, why.Error()
		return st
	}
	// Principals name this machine: a certificate for another opens nothing here.
	suffix := "@" + f.env.Machine.ID
	for _, p := range append(append([]string{}, d.AdminPrincipals...), d.UserPrincipals...) {
		if !strings.HasSuffix(p, suffix) {
			st.State, st.Message = wire.SSHStateFailed, fmt.Sprintf("the control plane sent principal %q, which does not name this machine (%s); refused", p, f.env.Machine.ID)
			return st
		}
	}
	a, err := f.sshAccess()
	if err != nil {
		st.State, st.Message = wire.SSHStateFailed, err.Error()
		return st
	}
	if err := writeFileAtomic(f.sshMarker(), []byte("sshd trusts the corral SSH user CA because ssh.manage is true\n")); err != nil {
		st.State, st.Message = wire.SSHStateFailed, err.Error()
		return st
	}
	settings := sshaccess.Settings{AdminUser: cfg.SSHAdminUser, User: cfg.SSHUser,
		AdminPrincipals: d.AdminPrincipals, UserPrincipals: d.UserPrincipals, CAKeys: d.CAKeys}
	// Enable checks sshd and sudo with a handful of processes each time:
	// the same settings are put in force again only every sshRecheck
	// (every desired-state change would otherwise run them).
	key := fmt.Sprint(settings)
	if key == f.sshKey && f.env.Clock().Sub(f.sshAt) < sshRecheck {
		st.State, st.AdminUser, st.User = wire.SSHStateManaged, cfg.SSHAdminUser, cfg.SSHUser
		return st
	}
	f.sshKey = ""
	res, err := a.Enable(ctx, settings)
	if err != nil {
		f.env.Logger.ErrorContext(ctx, "SSH certificate login not enabled", "err", err)
		st.State, st.Message = wire.SSHStateFailed, err.Error()
		return st
	}
	if res.Changed {
		f.env.Logger.InfoContext(ctx, "SSH certificate login in force", "admin", cfg.SSHAdminUser, "user", cfg.SSHUser,
			"created", res.CreatedAccounts, "reloaded", res.Reloaded)
	}
	f.sshKey, f.sshAt = key, f.env.Clock()
	st.State, st.AdminUser, st.User = wire.SSHStateManaged, cfg.SSHAdminUser, cfg.SSHUser
	return st
}

// sshRecheck is how often settings already in force are checked and put
// in force again (repairing a file someone changed).
const sshRecheck = 5 * time.Minute

func (f *Feature) sshMarker() string { return filepath.Join(f.env.Dir, sshStateFile) }

func (f *Feature) sshManaged() bool {
	_, err := os.Stat(f.sshMarker())
	return err == nil
}

func (f *Feature) sshAccess() (*sshaccess.Access, error) {
	if f.ssh != nil {
		return f.ssh, nil
	}
	reload := f.opts.ReloadSSHD
	if reload == nil {
		reload = func(ctx context.Context) error { return reloadSSHD(ctx, f.env.HostRoot) }
	}
	a, err := sshaccess.New(sshaccess.Host{Root: f.env.HostRoot, Reload: reload, Logger: f.env.Logger})
	if err != nil {
		return nil, err
	}
	f.ssh = a
	return a, nil
}

// reloadSSHD tells the running sshd to read its configuration again: a
// SIGHUP to the pid in ROOT/run/sshd.pid (what `systemctl reload ssh`
// does); with no pid file on the real root, systemctl. No sshd running is
// not an error: it reads the configuration when it starts.
func reloadSSHD(ctx context.Context, root string) error {
	b, err := os.ReadFile(filepath.Join(root, "run/sshd.pid"))
	if err == nil {
		pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
		if perr != nil || pid <= 1 {
			return fmt.Errorf("sshd pid file %s holds %q", filepath.Join(root, "run/sshd.pid"), bytes.TrimSpace(b))
		}
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("signal sshd (pid %d): %w", pid, err)
		}
		return nil
	}
	if root != "/" {
		return nil
	}
	if _, err := exec.LookPath("systemctl"); err != nil {
		return nil
	}
	var out bytes.Buffer
	for _, unit := range []string{"ssh.service", "sshd.service"} {
		cmd := exec.CommandContext(ctx, "systemctl", "try-reload-or-restart", unit)
		cmd.Stdout, cmd.Stderr = &out, &out
		if cmd.Run() == nil {
			return nil
		}
	}
	return fmt.Errorf("reload sshd: systemctl: %s", strings.TrimSpace(out.String()))
}

// hostKeys reads sshd's public host keys under the host root, as
// "TYPE BASE64" lines (comments dropped).
func (f *Feature) hostKeys() []string {
	paths, _ := filepath.Glob(filepath.Join(f.env.HostRoot, "etc/ssh/ssh_host_*_key.pub"))
	sort.Strings(paths)
	var out []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil || !fi.Mode().IsRegular() || fi.Size() > maxHostKeyBytes {
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		fields := strings.Fields(string(b))
		if len(fields) < 2 || !strings.HasPrefix(fields[0], "ssh-") && !strings.HasPrefix(fields[0], "ecdsa-") {
			continue
		}
		out = append(out, fields[0]+" "+fields[1])
	}
	return out
}
