package server

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/corralhq/corral/internal/server/sshca"
)

// loadSSHCA loads the SSH user CA: the key file given (replicas share it,
// like the token and extension signing keys; it is never created then), or
// DataDir/ssh-user-ca, created on first start.
func loadSSHCA(cfg Config) (*sshca.CA, error) {
	if cfg.SSHCAKeyFile == "" {
		ca, err := sshca.LoadOrCreate(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("load ssh user CA: %w", err)
		}
		return ca, nil
	}
	fi, err := os.Stat(cfg.SSHCAKeyFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("ssh user CA key %s does not exist: give every replica the same key file (the first server's %s)",
			cfg.SSHCAKeyFile, filepath.Join("DATA-DIR", sshca.KeyFile))
	}
	if err != nil {
		return nil, fmt.Errorf("ssh user CA key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("ssh user CA key %s has mode %04o: it must be readable by its owner only (chmod 600)", cfg.SSHCAKeyFile, fi.Mode().Perm())
	}
	b, err := os.ReadFile(cfg.SSHCAKeyFile)
	if err != nil {
		return nil, fmt.Errorf("ssh user CA key: %w", err)
	}
	ca, err := sshca.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.SSHCAKeyFile, err)
	}
	return ca, nil
}
