package sshaccess

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Paths inside the root.
const (
	MainConfig    = "/etc/ssh/sshd_config"
	DropInPath    = "/etc/ssh/sshd_config.d/corral.conf"
	OwnDir        = "/etc/ssh/corral"
	CAKeysPath    = OwnDir + "/trusted-user-ca-keys.pub"
	PrincipalsDir = OwnDir + "/principals"
	AccountsPath  = OwnDir + "/accounts-created"
	SudoersPath   = "/etc/sudoers.d/corral"
	// reloadPendingPath marks a change whose reload failed; /run is
	// emptied at boot, when sshd starts with the new files anyway.
	reloadPendingPath = "/run/corral-agent/ssh-reload-pending"
)

const header = "# Managed by corral-agent because ssh.manage is true; removed when it is not. Do not edit.\n"

func dropIn() []byte {
	return []byte(header +
		"TrustedUserCAKeys " + CAKeysPath + "\n" +
		"AuthorizedPrincipalsFile " + PrincipalsDir + "/%u\n")
}

func lines(items []string) []byte {
	return []byte(header + strings.Join(items, "\n") + "\n")
}

// file is one file's content and mode, or absence.
type file struct {
	exists bool
	data   []byte
	mode   fs.FileMode
}

func (a *Access) read(p string) (file, error) {
	full := a.path(p)
	fi, err := os.Lstat(full)
	if errors.Is(err, fs.ErrNotExist) {
		return file{}, nil
	}
	if err != nil {
		return file{}, err
	}
	if !fi.Mode().IsRegular() {
		return file{}, fmt.Errorf("%s is not a regular file (%s); refusing to touch it", full, fi.Mode().Type())
	}
	b, err := os.ReadFile(full)
	if err != nil {
		return file{}, err
	}
	return file{exists: true, data: b, mode: fi.Mode().Perm()}, nil
}

// write replaces p atomically with data and mode (root-owned, as the agent
// runs as root), creating parent directories with mode 0755. It reports
// whether anything changed.
func (a *Access) write(p string, data []byte, mode fs.FileMode) (bool, error) {
	cur, err := a.read(p)
	if err != nil {
		return false, err
	}
	if cur.exists && cur.mode == mode && bytes.Equal(cur.data, data) {
		return false, nil
	}
	full := a.path(p)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return false, err
	}
	return true, writeAtomic(full, data, mode, nil)
}

// writeAtomic writes a temporary file next to path (its name starts with a
// dot, which sudo and sshd's *.conf glob both ignore), lets check inspect
// it, then renames it over path.
func writeAtomic(path string, data []byte, mode fs.FileMode, check func(tmp string) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err == nil {
		if _, err = f.Write(data); err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	} else {
		f.Close()
		return err
	}
	if check != nil {
		if err := check(tmp); err != nil {
			return err
		}
	}
	return os.Rename(tmp, path)
}

// remove deletes p if present and reports whether it was.
func (a *Access) remove(p string) (bool, error) {
	err := os.Remove(a.path(p))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

// restore puts p back as snapshotted.
func (a *Access) restore(p string, f file) error {
	if !f.exists {
		_, err := a.remove(p)
		return err
	}
	_, err := a.write(p, f.data, f.mode)
	return err
}

// principalFiles lists the files in the principals directory.
func (a *Access) principalFiles() ([]string, error) {
	ents, err := os.ReadDir(a.path(PrincipalsDir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		out = append(out, PrincipalsDir+"/"+e.Name())
	}
	return out, nil
}

// createdAccounts reads the accounts corral created.
func (a *Access) createdAccounts() ([]string, error) {
	f, err := a.read(AccountsPath)
	if err != nil || !f.exists {
		return nil, err
	}
	var out []string
	for _, l := range strings.Split(string(f.data), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out, nil
}

// included reports whether the main sshd_config has an Include whose
// pattern matches the drop-in. Relative patterns are relative to /etc/ssh,
// as sshd reads them.
func (a *Access) included() (bool, error) {
	b, err := os.ReadFile(a.path(MainConfig))
	if err != nil {
		return false, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 || !strings.EqualFold(f[0], "Include") {
			continue
		}
		for _, pat := range f[1:] {
			pat = strings.Trim(pat, `"`)
			if !strings.HasPrefix(pat, "/") {
				pat = "/etc/ssh/" + pat
			}
			if ok, _ := filepath.Match(pat, DropInPath); ok {
				return true, nil
			}
		}
	}
	return false, nil
}
