// Package localconfig is the agent's local configuration: the lock-down keys
// of DESIGN.md §4 that only root on the host can change (`corral-agent config
// set|get|list|clear`). The control plane reads them through reports and can
// never write them: nothing in the agent's network path calls Save.
//
// Every key is defined once, in the keys table: its name, help text, kind,
// default, validation and whether monitor mode freezes it. Config is what
// root stored; Effective is what the agent acts on (defaults applied, monitor
// mode's fixed list in force) and Wire is only how Effective is reported.
//
// The file is JSON at STATE/config.json, mode 0600 in a 0700 directory,
// replaced atomically. A missing file means the defaults. A file that cannot
// be parsed fails closed: Current returns a configuration that refuses
// every extension operation, guest configuration and incoming connection
// until root fixes it.
//
// Save writes a marker beside the values (MarkerKey: a digest of them), so
// a file changed any other way — by hand, by a script, or by a command the
// control plane ran as root in full mode — is noticed: Effective.ChangedOutside
// says how, and the daemon reports it to the control plane. The file is
// still in force (root may edit it); the marker only makes the change
// visible. Root can forge the marker like anything else on the machine: it
// is evidence of the ordinary case, not a protection against root.
//
// In force at once: every decision the agent makes under these rules calls
// Current, which reads the file as it is at that moment (a few hundred
// bytes), so a value is in force from the moment `config set` returns.
//
// Semantics follow SEEDS-DIGEST §001: allowlist / blocklist of
// "Publisher/Type" names, the special allowlist value "Allow/None", monitor
// mode (a fixed allowlist, guest configuration off, lists frozen until
// config.mode is full again), and removal always allowed.
package localconfig

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/agent/statedir"
	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/wire"
)

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
var MonitorAllowlist = []string{wire.ExtEndpointProtection, wire.ExtPatchManagement}

// DefaultCPULimit is the default of the CPU limit keys: the agent's helpers
// stay at about 5% of one CPU (SEEDS-DIGEST §003).
const DefaultCPULimit = 5

// ErrFrozen is returned when a key cannot change in monitor mode.
var ErrFrozen = errors.New("frozen in monitor mode")

// ErrUnknownKey is returned for a key that is not in Keys.
var ErrUnknownKey = errors.New("unknown configuration key")

// Config is the local configuration as root stored it: each set key's
// value in canonical form (lists comma-joined). A key that is absent takes
// its default. The zero Config is the default configuration.
type Config struct {
	values map[string]string
	// changedOutside is why the file as loaded was not written by Save
	// (no marker, or one that does not match); "" when it was.
	changedOutside string
}

// MarkerKey is the key of the marker Save writes into the file.
const MarkerKey = "_written-by-corral-agent-config"

// marker is the digest of the values that Save writes under MarkerKey.
func (c Config) marker() string {
	keys := slices.Sorted(maps.Keys(c.values))
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\n", k, c.values[k])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// FileName is the configuration file's name inside the state directory.
const FileName = statedir.ConfigFile

// Path returns the configuration file of a state directory.
func Path(stateDir string) string { return filepath.Join(stateDir, FileName) }

// Load reads the configuration; a missing file is the default configuration.
// A file that exists but cannot be read or parsed, or holds a value `config
// set` would refuse, is an error: callers must fail closed (see Current).
func Load(stateDir string) (Config, error) {
	b, err := os.ReadFile(Path(stateDir))
	if errors.Is(err, os.ErrNotExist) {
		return Config{}, nil
	}
	if err != nil {
		return Config{}, fmt.Errorf("read local configuration: %w", err)
	}
	c, err := parseFile(b)
	if err != nil {
		return Config{}, fmt.Errorf("local configuration %s is damaged (%v): fix or remove it as root", Path(stateDir), err)
	}
	return c, nil
}

// Current is the configuration in force now: the file as it is at this
// moment. A damaged file yields FailClosed with the error, so a caller that
// ignores the error still refuses.
func Current(stateDir string) (Effective, error) {
	c, err := Load(stateDir)
	if err != nil {
		return FailClosed(err), err
	}
	return c.Effective(), nil
}

// parseFile decodes the stored JSON: an object of key → value, with bools,
// numbers and arrays of strings where the key's kind says so.
func parseFile(b []byte) (Config, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&raw); err != nil {
		return Config{}, err
	}
	c := Config{values: map[string]string{}}
	var marker string
	for name, v := range raw {
		if name == MarkerKey {
			if err := json.Unmarshal(v, &marker); err != nil {
				return Config{}, fmt.Errorf("%s: %w", name, err)
			}
			continue
		}
		k, ok := lookup(name)
		if !ok {
			return Config{}, fmt.Errorf("unknown key %q", name)
		}
		s, err := k.kind.fromJSON(v)
		if err != nil {
			return Config{}, fmt.Errorf("%s: %w", name, err)
		}
		// Every stored value must still be valid: a hand-edited file cannot
		// smuggle in what `config set` would refuse.
		canon, err := k.parse(s)
		if err != nil {
			return Config{}, err
		}
		if canon != "" || k.kind != kindList {
			c.values[name] = canon
		}
	}
	switch {
	case marker == "":
		c.changedOutside = "the file has no marker of corral-agent config: it was written another way (by hand, a script, or a command run as root)"
	case marker != c.marker():
		c.changedOutside = "the file's content does not match the marker corral-agent config wrote: it was edited another way since (by hand, a script, or a command run as root)"
	}
	return c, nil
}

// Save writes the configuration root-only and atomically.
func Save(stateDir string, c Config) error {
	if err := statedir.MkdirPrivate(stateDir); err != nil {
		return err
	}
	out := map[string]any{}
	for name, v := range c.values {
		k, _ := lookup(name)
		out[name] = k.kind.toJSON(v)
	}
	out[MarkerKey] = c.marker()
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	return statedir.WriteFileAtomic(Path(stateDir), append(b, '\n'), statedir.PrivateMode)
}

// Set validates and sets key to value. In monitor mode the extension lists
// and guest configuration are frozen: only config.mode may switch back first.
func (c *Config) Set(key, value string) error {
	k, ok := lookup(key)
	if !ok {
		return unknownKey(key)
	}
	if c.Effective().Mode == ModeMonitor && k.frozen {
		return fmt.Errorf("%s cannot be changed while config.mode is monitor (%w): run \"corral-agent config set config.mode full\" first", key, ErrFrozen)
	}
	canon, err := k.parse(value)
	if err != nil {
		return err
	}
	if c.values == nil {
		c.values = map[string]string{}
	}
	if canon == "" && k.kind == kindList {
		// An empty list is the list unset, as Load reads it: stored, it
		// would not match the marker Save writes beside it.
		delete(c.values, key)
		return nil
	}
	c.values[key] = canon
	return nil
}

// Clear restores key's default, under the same monitor-mode rule as Set.
func (c *Config) Clear(key string) error {
	k, ok := lookup(key)
	if !ok {
		return unknownKey(key)
	}
	if c.Effective().Mode == ModeMonitor && k.frozen {
		return fmt.Errorf("%s cannot be cleared while config.mode is monitor (%w): run \"corral-agent config set config.mode full\" first", key, ErrFrozen)
	}
	delete(c.values, key)
	return nil
}

// raw returns the stored value of key and whether it is set.
func (c Config) raw(key string) (string, bool) {
	v, ok := c.values[key]
	return v, ok
}

// value is key's stored value, or its default.
func (c Config) value(key string) string {
	if v, ok := c.values[key]; ok {
		return v
	}
	k, _ := lookup(key)
	return k.def
}

func unknownKey(key string) error {
	return fmt.Errorf("%w %q; the keys are: %s", ErrUnknownKey, key, strings.Join(Keys(), ", "))
}

// Entry is one key as `config get|list` shows it.
type Entry struct {
	Key   string `json:"key"`
	Value string `json:"value"`          // effective value
	Set   bool   `json:"set"`            // explicitly configured (else the default applies)
	Note  string `json:"note,omitempty"` // why the effective value differs from the stored one
}

// Get returns key's effective value.
func (c Config) Get(key string) (Entry, error) {
	k, ok := lookup(key)
	if !ok {
		return Entry{}, unknownKey(key)
	}
	_, set := c.raw(key)
	e := Entry{Key: key, Set: set, Value: c.value(key)}
	if c.Effective().Mode == ModeMonitor && k.monitor != nil {
		e.Value, e.Note = k.monitor()
	}
	return e, nil
}

// List returns every key's effective value, in table order.
func (c Config) List() []Entry {
	out := make([]Entry, 0, len(keys))
	for _, k := range keys {
		e, _ := c.Get(k.name)
		out = append(out, e)
	}
	return out
}

// Effective is the configuration the agent acts on: defaults applied and
// monitor mode's fixed allowlist and guest-configuration switch in force.
type Effective struct {
	Mode               string
	Allowlist          []string
	Blocklist          []string
	ExtensionsEnabled  bool
	GuestConfigEnabled bool
	// HostChanges false is trial mode: nothing may change the host.
	HostChanges         bool
	IncomingEnabled     bool
	IncomingPorts       []int
	ProxyURL            string
	ProxyBypass         []string
	ExtensionsCPULimit  int
	GuestConfigCPULimit int
	// GuestConfigInterval is guestconfiguration.interval.
	GuestConfigInterval time.Duration
	// SSHManage lets the agent make sshd trust the control plane's SSH
	// user CA for SSHAdminUser and SSHUser.
	SSHManage    bool
	SSHAdminUser string
	SSHUser      string
	// PublisherKeys are the signing keys root configured.
	PublisherKeys []PublisherKey
	// ProtectionSignatureKey is the key root configured for endpoint
	// protection's signature sets (nil: the pinned one).
	ProtectionSignatureKey []byte
	// RebootCommand is update.rebootcommand.
	RebootCommand string
	// Damaged is why the configuration could not be read (FailClosed); nil
	// for a readable one.
	Damaged error
	// ChangedOutside says how the file was changed other than by
	// `corral-agent config` ("" when it was not): it is in force all the
	// same, and reported to the control plane.
	ChangedOutside string
}

// Effective computes the configuration in force from what is stored.
func (c Config) Effective() Effective {
	e := Effective{
		Mode:                c.value(KeyMode),
		Allowlist:           splitList(c.value(KeyAllowlist)),
		Blocklist:           splitList(c.value(KeyBlocklist)),
		ExtensionsEnabled:   c.value(KeyExtensionsEnabled) == "true",
		GuestConfigEnabled:  c.value(KeyGuestConfigEnabled) == "true",
		HostChanges:         c.value(KeyHostChanges) == "true",
		IncomingEnabled:     c.value(KeyIncomingEnabled) == "true",
		ProxyURL:            c.value(KeyProxyURL),
		ProxyBypass:         splitList(c.value(KeyProxyBypass)),
		ExtensionsCPULimit:  atoi(c.value(KeyExtensionsCPULimit)),
		GuestConfigCPULimit: atoi(c.value(KeyGuestConfigCPULimit)),
		GuestConfigInterval: time.Duration(atoi(c.value(KeyGuestConfigInterval))) * time.Minute,
		ChangedOutside:      c.changedOutside,
		RebootCommand:       c.value(KeyRebootCommand),
		SSHManage:           c.value(KeySSHManage) == "true",
		SSHAdminUser:        c.value(KeySSHAdminUser),
		SSHUser:             c.value(KeySSHUser),
	}
	for _, p := range splitList(c.value(KeyIncomingPorts)) {
		e.IncomingPorts = append(e.IncomingPorts, atoi(p))
	}
	for _, pk := range splitList(c.value(KeyPublisherKeys)) {
		name, key, _ := strings.Cut(pk, "=")
		if b, err := extpkg.ParsePublicKey(key); err == nil {
			e.PublisherKeys = append(e.PublisherKeys, PublisherKey{Publisher: name, Key: b})
		}
	}
	if k := c.value(KeyProtectionSignatureKey); k != "" {
		e.ProtectionSignatureKey, _ = extpkg.ParsePublicKey(k)
	}
	if e.Mode == ModeMonitor {
		e.Allowlist = slices.Clone(MonitorAllowlist)
		e.GuestConfigEnabled = false
	}
	return e
}

// PublisherKey is a publisher's signing key configured by root.
type PublisherKey struct {
	Publisher string
	Key       []byte
}

// PublisherKey returns the key root configured for publisher (names are
// case-insensitive).
func (e Effective) PublisherKey(publisher string) ([]byte, bool) {
	for _, pk := range e.PublisherKeys {
		if strings.EqualFold(pk.Publisher, publisher) {
			return pk.Key, true
		}
	}
	return nil, false
}

// WithPublisherKey returns the stored value of extensions.publisherkeys with
// publisher's key set to key (nil: removed), for `corral-agent publisher`.
func (c Config) WithPublisherKey(publisher string, key []byte) string {
	var out []string
	for _, pk := range splitList(c.value(KeyPublisherKeys)) {
		name, _, _ := strings.Cut(pk, "=")
		if !strings.EqualFold(name, publisher) {
			out = append(out, pk)
		}
	}
	if key != nil {
		out = append(out, publisher+"="+extpkg.FormatPublicKey(key))
	}
	return strings.Join(out, ",")
}

// ErrHostChangesOff is wrapped by HostChangesRefused.
var ErrHostChangesOff = errors.New("changes to this host are off")

// HostChangesRefused says why an operation that changes the host may not run
// under this configuration (trial mode), or nil.
func (e Effective) HostChangesRefused() error {
	if e.Damaged != nil {
		return fmt.Errorf("%w: the local configuration cannot be read (%v)", ErrHostChangesOff, e.Damaged)
	}
	if !e.HostChanges {
		return fmt.Errorf("%w: %s is false on this machine (trial mode; as root: corral-agent config set %s true)", ErrHostChangesOff, KeyHostChanges, KeyHostChanges)
	}
	return nil
}

// FailClosed is the configuration in force while the file is damaged: the
// extension manager, guest configuration and incoming connections are off
// until root fixes it.
func FailClosed(why error) Effective {
	e := Config{}.Effective()
	e.ExtensionsEnabled, e.GuestConfigEnabled, e.IncomingEnabled, e.HostChanges = false, false, false, false
	e.SSHManage = false
	e.Damaged = why
	return e
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// Wire is the effective configuration as reported to the control plane.
func (e Effective) Wire() wire.AgentConfig {
	ports := make([]string, 0, len(e.IncomingPorts))
	for _, p := range e.IncomingPorts {
		ports = append(ports, strconv.Itoa(p))
	}
	return wire.AgentConfig{
		Mode:                       e.Mode,
		ExtensionsAllowlist:        nonNil(e.Allowlist),
		ExtensionsBlocklist:        nonNil(e.Blocklist),
		ExtensionsEnabled:          e.ExtensionsEnabled,
		GuestConfigurationEnabled:  e.GuestConfigEnabled,
		HostChangesEnabled:         e.HostChanges,
		IncomingConnectionsEnabled: e.IncomingEnabled,
		IncomingConnectionsPorts:   ports,
		ProxyURL:                   e.ProxyURL,
		ProxyBypass:                slices.Clone(e.ProxyBypass),
		ExtensionsCPULimit:         e.ExtensionsCPULimit,
		GuestConfigurationCPULimit: e.GuestConfigCPULimit,
		SSHManage:                  e.SSHManage,
		SSHAdminUser:               e.SSHAdminUser,
		SSHUser:                    e.SSHUser,
	}
}

func nonNil(l []string) []string {
	if l == nil {
		return []string{}
	}
	return slices.Clone(l)
}

func splitList(value string) []string {
	var out []string
	for p := range strings.SplitSeq(value, ",") {
		if p = strings.TrimSpace(p); p != "" && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}
