// Package localconfig is the agent's local configuration: the lock-down keys
// of DESIGN.md §4 that only root on the host can change (`corral-agent config
// set|get|list|clear`). The control plane reads them through reports and can
// never write them: nothing in the agent's network path calls Save.
//
// The file is JSON at STATE/config.json, mode 0600 in a 0700 directory,
// replaced atomically. A missing file means the defaults. A file that cannot
// be parsed fails closed: the agent refuses extension operations rather than
// guess (see Load).
//
// Semantics follow SEEDS-DIGEST §001: allowlist / blocklist of
// "Publisher/Type" names, the special allowlist value "Allow/None", monitor
// mode (a fixed allowlist, guest configuration off, lists frozen until
// config.mode is full again), and removal always allowed.
package localconfig

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/wire"
)

// Keys, exactly as in DESIGN.md §4.
const (
	KeyAllowlist           = "extensions.allowlist"
	KeyBlocklist           = "extensions.blocklist"
	KeyExtensionsEnabled   = "extensions.enabled"
	KeyGuestConfigEnabled  = "guestconfiguration.enabled"
	KeyMode                = "config.mode"
	KeyIncomingEnabled     = "incomingconnections.enabled"
	KeyIncomingPorts       = "incomingconnections.ports"
	KeyProxyURL            = "proxy.url"
	KeyProxyBypass         = "proxy.bypass"
	KeyExtensionsCPULimit  = "extensions.agent.cpulimit"
	KeyGuestConfigCPULimit = "guestconfiguration.agent.cpulimit"
)

// Keys lists every key in the order `config list` shows them.
var Keys = []string{
	KeyMode, KeyAllowlist, KeyBlocklist, KeyExtensionsEnabled, KeyGuestConfigEnabled,
	KeyIncomingEnabled, KeyIncomingPorts, KeyProxyURL, KeyProxyBypass,
	KeyExtensionsCPULimit, KeyGuestConfigCPULimit,
}

// Modes.
const (
	ModeFull    = "full"
	ModeMonitor = "monitor"
)

// AllowNone is the allowlist value that lets the extension manager run but
// install nothing.
const AllowNone = "Allow/None"

// MonitorAllowlist is the fixed allowlist of monitor mode: the monitoring
// and security extensions. Run command is never on it.
var MonitorAllowlist = []string{"Corral/EndpointProtection", "Corral/PatchManagement"}

// Defaults of the numeric keys: the agent's helpers stay at about 5% CPU
// (SEEDS-DIGEST §003).
const (
	DefaultCPULimit = 5
)

// ErrFrozen is returned when a key cannot change in monitor mode.
var ErrFrozen = errors.New("frozen in monitor mode")

// ErrUnknownKey is returned for a key that is not in Keys.
var ErrUnknownKey = errors.New("unknown configuration key")

// Config is the local configuration. Pointers distinguish "not set" (the
// default applies) from an explicit value, so `config list` can tell them
// apart and `config clear` restores the default.
type Config struct {
	Mode                string   `json:"config.mode,omitempty"`
	Allowlist           []string `json:"extensions.allowlist,omitempty"`
	Blocklist           []string `json:"extensions.blocklist,omitempty"`
	ExtensionsEnabled   *bool    `json:"extensions.enabled,omitempty"`
	GuestConfigEnabled  *bool    `json:"guestconfiguration.enabled,omitempty"`
	IncomingEnabled     *bool    `json:"incomingconnections.enabled,omitempty"`
	IncomingPorts       []string `json:"incomingconnections.ports,omitempty"`
	ProxyURL            string   `json:"proxy.url,omitempty"`
	ProxyBypass         []string `json:"proxy.bypass,omitempty"`
	ExtensionsCPULimit  *int     `json:"extensions.agent.cpulimit,omitempty"`
	GuestConfigCPULimit *int     `json:"guestconfiguration.agent.cpulimit,omitempty"`
}

// FileName is the configuration file's name inside the state directory.
const FileName = "config.json"

// Path returns the configuration file of a state directory.
func Path(stateDir string) string { return filepath.Join(stateDir, FileName) }

// Load reads the configuration; a missing file is the default configuration.
// A file that exists but cannot be read or parsed is an error: callers must
// fail closed (the daemon refuses extension operations).
func Load(stateDir string) (Config, error) {
	var c Config
	b, err := os.ReadFile(Path(stateDir))
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read local configuration: %w", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("local configuration %s is damaged (%v): fix or remove it as root", Path(stateDir), err)
	}
	// Every stored value must still be valid: a hand-edited file cannot
	// smuggle in what `config set` would refuse.
	for _, k := range Keys {
		if v, set := c.raw(k); set {
			probe := Config{}
			if err := probe.set(k, v); err != nil {
				return Config{}, fmt.Errorf("local configuration %s: %w", Path(stateDir), err)
			}
		}
	}
	return c, nil
}

// Save writes the configuration root-only and atomically.
func Save(stateDir string, c Config) error {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return fmt.Errorf("create state directory: %w", err)
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomic(Path(stateDir), append(b, '\n'), 0o600)
}

// WriteFileAtomic writes data to a temp file in path's directory, syncs it
// and renames it over path, so readers see the old or the new file, never a
// torn one.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Set validates and sets key to value. In monitor mode the extension lists
// and guest configuration are frozen: only config.mode may switch back first.
func (c *Config) Set(key, value string) error {
	if c.EffectiveMode() == ModeMonitor && frozenInMonitor(key) {
		return fmt.Errorf("%s cannot be changed while config.mode is monitor (%w): run \"corral-agent config set config.mode full\" first", key, ErrFrozen)
	}
	return c.set(key, value)
}

// Clear restores key's default, under the same monitor-mode rule as Set.
func (c *Config) Clear(key string) error {
	if !slices.Contains(Keys, key) {
		return unknownKey(key)
	}
	if c.EffectiveMode() == ModeMonitor && frozenInMonitor(key) {
		return fmt.Errorf("%s cannot be cleared while config.mode is monitor (%w): run \"corral-agent config set config.mode full\" first", key, ErrFrozen)
	}
	switch key {
	case KeyMode:
		c.Mode = ""
	case KeyAllowlist:
		c.Allowlist = nil
	case KeyBlocklist:
		c.Blocklist = nil
	case KeyExtensionsEnabled:
		c.ExtensionsEnabled = nil
	case KeyGuestConfigEnabled:
		c.GuestConfigEnabled = nil
	case KeyIncomingEnabled:
		c.IncomingEnabled = nil
	case KeyIncomingPorts:
		c.IncomingPorts = nil
	case KeyProxyURL:
		c.ProxyURL = ""
	case KeyProxyBypass:
		c.ProxyBypass = nil
	case KeyExtensionsCPULimit:
		c.ExtensionsCPULimit = nil
	case KeyGuestConfigCPULimit:
		c.GuestConfigCPULimit = nil
	}
	return nil
}

func frozenInMonitor(key string) bool {
	return key == KeyAllowlist || key == KeyBlocklist || key == KeyGuestConfigEnabled
}

func unknownKey(key string) error {
	return fmt.Errorf("%w %q; the keys are: %s", ErrUnknownKey, key, strings.Join(Keys, ", "))
}

var extensionName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// ValidExtensionName reports whether s is a "Publisher/Type" name.
func ValidExtensionName(s string) bool { return extensionName.MatchString(s) }

func splitList(value string) []string {
	var out []string
	for p := range strings.SplitSeq(value, ",") {
		if p = strings.TrimSpace(p); p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func (c *Config) set(key, value string) error {
	value = strings.TrimSpace(value)
	switch key {
	case KeyMode:
		v := strings.ToLower(value)
		if v != ModeFull && v != ModeMonitor {
			return fmt.Errorf("%s must be %q or %q, not %q", key, ModeFull, ModeMonitor, value)
		}
		c.Mode = v
	case KeyAllowlist, KeyBlocklist:
		list := splitList(value)
		for _, n := range list {
			if n == AllowNone {
				if key == KeyBlocklist {
					return fmt.Errorf("%s: %q is only meaningful in %s", key, AllowNone, KeyAllowlist)
				}
				if len(list) > 1 {
					return fmt.Errorf("%s: %q cannot be combined with other extensions", key, AllowNone)
				}
				continue
			}
			if !ValidExtensionName(n) {
				return fmt.Errorf("%s: %q is not an extension name of the form Publisher/Type", key, n)
			}
		}
		if key == KeyAllowlist {
			c.Allowlist = list
		} else {
			c.Blocklist = list
		}
	case KeyExtensionsEnabled, KeyGuestConfigEnabled, KeyIncomingEnabled:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return fmt.Errorf("%s must be true or false, not %q", key, value)
		}
		switch key {
		case KeyExtensionsEnabled:
			c.ExtensionsEnabled = &b
		case KeyGuestConfigEnabled:
			c.GuestConfigEnabled = &b
		default:
			c.IncomingEnabled = &b
		}
	case KeyIncomingPorts:
		list := splitList(value)
		for _, p := range list {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return fmt.Errorf("%s: %q is not a port number (1-65535)", key, p)
			}
		}
		c.IncomingPorts = list
	case KeyProxyURL:
		if value != "" {
			u, err := url.Parse(value)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" && u.Path != "/" || u.RawQuery != "" {
				return fmt.Errorf("%s must look like http://proxy.example:3128, not %q", key, value)
			}
			if u.User != nil {
				return fmt.Errorf("%s must not carry credentials", key)
			}
		}
		c.ProxyURL = value
	case KeyProxyBypass:
		list := splitList(value)
		for _, h := range list {
			if _, _, err := net.ParseCIDR(h); err == nil {
				continue
			}
			if net.ParseIP(h) != nil {
				continue
			}
			if strings.ContainsAny(h, "/:@ \t") {
				return fmt.Errorf("%s: %q is neither a host name, a domain suffix, an IP nor a CIDR", key, h)
			}
		}
		c.ProxyBypass = list
	case KeyExtensionsCPULimit, KeyGuestConfigCPULimit:
		n, err := strconv.Atoi(value)
		if err != nil || n < 1 || n > 100 {
			return fmt.Errorf("%s must be a percentage of one CPU between 1 and 100, not %q", key, value)
		}
		if key == KeyExtensionsCPULimit {
			c.ExtensionsCPULimit = &n
		} else {
			c.GuestConfigCPULimit = &n
		}
	default:
		return unknownKey(key)
	}
	return nil
}

// raw returns the stored value of key as `config set` would take it, and
// whether it is set at all.
func (c *Config) raw(key string) (string, bool) {
	joined := func(l []string) (string, bool) { return strings.Join(l, ","), l != nil }
	boolv := func(b *bool) (string, bool) {
		if b == nil {
			return "", false
		}
		return strconv.FormatBool(*b), true
	}
	intv := func(n *int) (string, bool) {
		if n == nil {
			return "", false
		}
		return strconv.Itoa(*n), true
	}
	switch key {
	case KeyMode:
		return c.Mode, c.Mode != ""
	case KeyAllowlist:
		return joined(c.Allowlist)
	case KeyBlocklist:
		return joined(c.Blocklist)
	case KeyExtensionsEnabled:
		return boolv(c.ExtensionsEnabled)
	case KeyGuestConfigEnabled:
		return boolv(c.GuestConfigEnabled)
	case KeyIncomingEnabled:
		return boolv(c.IncomingEnabled)
	case KeyIncomingPorts:
		return joined(c.IncomingPorts)
	case KeyProxyURL:
		return c.ProxyURL, c.ProxyURL != ""
	case KeyProxyBypass:
		return joined(c.ProxyBypass)
	case KeyExtensionsCPULimit:
		return intv(c.ExtensionsCPULimit)
	case KeyGuestConfigCPULimit:
		return intv(c.GuestConfigCPULimit)
	}
	return "", false
}

// Entry is one key as `config get|list` shows it.
type Entry struct {
	Key   string `json:"key"`
	Value string `json:"value"`          // effective value
	Set   bool   `json:"set"`            // explicitly configured (else the default applies)
	Note  string `json:"note,omitempty"` // why the effective value differs from the stored one
}

// Get returns key's effective value.
func (c *Config) Get(key string) (Entry, error) {
	if !slices.Contains(Keys, key) {
		return Entry{}, unknownKey(key)
	}
	_, set := c.raw(key)
	e := Entry{Key: key, Set: set}
	w := c.Wire()
	switch key {
	case KeyMode:
		e.Value = w.Mode
	case KeyAllowlist:
		e.Value = strings.Join(w.ExtensionsAllowlist, ",")
		if c.EffectiveMode() == ModeMonitor {
			e.Note = "fixed by monitor mode"
		}
	case KeyBlocklist:
		e.Value = strings.Join(w.ExtensionsBlocklist, ",")
	case KeyExtensionsEnabled:
		e.Value = strconv.FormatBool(w.ExtensionsEnabled)
	case KeyGuestConfigEnabled:
		e.Value = strconv.FormatBool(w.GuestConfigurationEnabled)
		if c.EffectiveMode() == ModeMonitor {
			e.Note = "off in monitor mode"
		}
	case KeyIncomingEnabled:
		e.Value = strconv.FormatBool(w.IncomingConnectionsEnabled)
	case KeyIncomingPorts:
		e.Value = strings.Join(w.IncomingConnectionsPorts, ",")
	case KeyProxyURL:
		e.Value = w.ProxyURL
	case KeyProxyBypass:
		e.Value = strings.Join(w.ProxyBypass, ",")
	case KeyExtensionsCPULimit:
		e.Value = strconv.Itoa(w.ExtensionsCPULimit)
	case KeyGuestConfigCPULimit:
		e.Value = strconv.Itoa(w.GuestConfigurationCPULimit)
	}
	return e, nil
}

// List returns every key's effective value.
func (c *Config) List() []Entry {
	out := make([]Entry, 0, len(Keys))
	for _, k := range Keys {
		e, _ := c.Get(k)
		out = append(out, e)
	}
	return out
}

// EffectiveMode is full unless monitor was set.
func (c *Config) EffectiveMode() string {
	if c.Mode == ModeMonitor {
		return ModeMonitor
	}
	return ModeFull
}

func deref[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// Wire is the effective configuration as reported to the control plane.
func (c *Config) Wire() wire.AgentConfig {
	w := wire.AgentConfig{
		Mode:                       c.EffectiveMode(),
		ExtensionsAllowlist:        slices.Clone(c.Allowlist),
		ExtensionsBlocklist:        slices.Clone(c.Blocklist),
		ExtensionsEnabled:          deref(c.ExtensionsEnabled, true),
		GuestConfigurationEnabled:  deref(c.GuestConfigEnabled, true),
		IncomingConnectionsEnabled: deref(c.IncomingEnabled, true),
		IncomingConnectionsPorts:   slices.Clone(c.IncomingPorts),
		ProxyURL:                   c.ProxyURL,
		ProxyBypass:                slices.Clone(c.ProxyBypass),
		ExtensionsCPULimit:         deref(c.ExtensionsCPULimit, DefaultCPULimit),
		GuestConfigurationCPULimit: deref(c.GuestConfigCPULimit, DefaultCPULimit),
	}
	if w.Mode == ModeMonitor {
		w.ExtensionsAllowlist = slices.Clone(MonitorAllowlist)
		w.GuestConfigurationEnabled = false
	}
	if w.ExtensionsAllowlist == nil {
		w.ExtensionsAllowlist = []string{}
	}
	if w.ExtensionsBlocklist == nil {
		w.ExtensionsBlocklist = []string{}
	}
	if w.IncomingConnectionsPorts == nil {
		w.IncomingConnectionsPorts = []string{}
	}
	return w
}
