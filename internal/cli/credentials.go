package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/corralhq/corral/internal/capped"
)

// Environment variables read by the CLI.
const (
	EnvConfig = "CORRAL_CONFIG"
	EnvServer = "CORRAL_SERVER"
	EnvToken  = "CORRAL_TOKEN"
	EnvCAFile = "CORRAL_CA_FILE"
)

const maxCredentialsBytes = 1 << 20

// Credentials is what "corral login" saves.
type Credentials struct {
	Server    string    `json:"server"`
	CAPEM     string    `json:"caPem,omitempty"`
	Token     string    `json:"token"`
	ExpiresAt time.Time `json:"expiresAt,omitzero"`
	Username  string    `json:"username,omitempty"`
}

// CredentialsPath is where credentials are saved and read.
func CredentialsPath() (string, error) {
	if p := os.Getenv(EnvConfig); p != "" {
		return p, nil
	}
	if x := os.Getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "corral", "credentials.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return "", fmt.Errorf("cannot find a place for credentials: set %s or HOME", EnvConfig)
	}
	return filepath.Join(home, ".config", "corral", "credentials.json"), nil
}

// LoadCredentials reads the saved credentials; it returns (nil, nil) when
// there are none.
func LoadCredentials() (*Credentials, string, error) {
	p, err := CredentialsPath()
	if err != nil {
		return nil, "", err
	}
	b, err := capped.ReadFile(p, maxCredentialsBytes)
	if errors.Is(err, os.ErrNotExist) {
		return nil, p, nil
	}
	if err != nil {
		return nil, p, fmt.Errorf("read credentials: %w", err)
	}
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, p, fmt.Errorf("credentials file %s is damaged (run \"corral login\" again): %v", p, err)
	}
	return &c, p, nil
}

// SaveCredentials writes c atomically with mode 0600, creating its directory
// with mode 0700.
func SaveCredentials(c Credentials) (string, error) {
	p, err := CredentialsPath()
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(p)
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", fmt.Errorf("create %s: %w", dir, err)
		}
		if err := os.Chmod(dir, 0o700); err != nil {
			return "", err
		}
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, ".credentials-*.tmp")
	if err != nil {
		return "", fmt.Errorf("save credentials: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("save credentials: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return "", fmt.Errorf("save credentials: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("save credentials: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", fmt.Errorf("save credentials: %w", err)
	}
	return p, os.Chmod(p, 0o600)
}

// RemoveCredentials deletes the saved credentials; removed is false when
// there were none.
func RemoveCredentials() (removed bool, path string, err error) {
	p, err := CredentialsPath()
	if err != nil {
		return false, "", err
	}
	err = os.Remove(p)
	if errors.Is(err, os.ErrNotExist) {
		return false, p, nil
	}
	if err != nil {
		return false, p, fmt.Errorf("remove credentials: %w", err)
	}
	return true, p, nil
}
