package localconfig

import (
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/corralhq/corral/internal/extpkg"
	"github.com/corralhq/corral/internal/wire"
)

// Keys, exactly as in DESIGN.md §4.
const (
	KeyMode                = "config.mode"
	KeyAllowlist           = "extensions.allowlist"
	KeyBlocklist           = "extensions.blocklist"
	KeyExtensionsEnabled   = "extensions.enabled"
	KeyGuestConfigEnabled  = "guestconfiguration.enabled"
	KeyIncomingEnabled     = "incomingconnections.enabled"
	KeyIncomingPorts       = "incomingconnections.ports"
	KeyProxyURL            = "proxy.url"
	KeyProxyBypass         = "proxy.bypass"
	KeyExtensionsCPULimit  = "extensions.agent.cpulimit"
	KeyGuestConfigCPULimit = "guestconfiguration.agent.cpulimit"
	// KeyGuestConfigInterval is how often (minutes) the guest
	// configuration feature evaluates its assignments anyway.
	KeyGuestConfigInterval = "guestconfiguration.interval"
	KeyPublisherKeys       = "extensions.publisherkeys"
	KeyHostChanges         = "hostchanges.enabled"
	// KeyProtectionSignatureKey is the key endpoint protection's signature
	// sets must verify with; empty = the control plane's, pinned on first use.
	KeyProtectionSignatureKey = "protection.signaturekey"
	// KeyRebootCommand is the command update management runs when a
	// deployment reboots the machine; only root on the machine sets it.
	KeyRebootCommand = "update.rebootcommand"
	KeySSHManage     = "ssh.manage"
	KeySSHAdminUser  = "ssh.adminuser"
	KeySSHUser       = "ssh.user"
)

// DefaultRebootCommand is update.rebootcommand's default.
const DefaultRebootCommand = "systemctl reboot"

// kind is how a key's value is stored in the JSON file.
type kind int

const (
	kindString kind = iota
	kindBool
	kindInt
	kindList // comma-separated in `config set`, a JSON array in the file
)

// key is one local configuration key: everything about it, in one place.
type key struct {
	name string
	help string
	kind kind
	def  string // default, in canonical form
	// frozen keys cannot change while config.mode is monitor.
	frozen bool
	// check validates a value and returns its canonical form.
	check func(name, value string) (string, error)
	// monitor, when set, is the key's effective value and note in monitor mode.
	monitor func() (value, note string)
}

// keys is the table of every local configuration key, in the order
// `config list` shows them.
var keys = []key{
	{name: KeyMode, kind: kindString, def: ModeFull, check: checkMode,
		help: "full | monitor (monitor: only monitoring and security extensions, guest configuration off, lists frozen)"},
	{name: KeyAllowlist, kind: kindList, frozen: true, check: checkExtensionList,
		help:    `Publisher/Type,... only these may be installed ("Allow/None": none)`,
		monitor: func() (string, string) { return strings.Join(MonitorAllowlist, ","), "fixed by monitor mode" }},
	{name: KeyBlocklist, kind: kindList, frozen: true, check: checkExtensionList,
		help: "Publisher/Type,... these may not be installed"},
	{name: KeyPublisherKeys, kind: kindList, check: checkPublisherKeys,
		help: "Publisher=ed25519:KEY,... signing keys root trusts (corral-agent publisher trust); required for publishers the allowlist names"},
	{name: KeyExtensionsEnabled, kind: kindBool, def: "true", check: checkBool,
		help: "true | false (false: no extension operations at all)"},
	{name: KeyGuestConfigEnabled, kind: kindBool, def: "true", frozen: true, check: checkBool,
		help:    "true | false (guest configuration: policy rules evaluated and applied inside the OS)",
		monitor: func() (string, string) { return "false", "off in monitor mode" }},
	{name: KeyHostChanges, kind: kindBool, def: "true", check: checkBool,
		help: "true | false (false, trial mode: no extension handler, run command or other change to this host)"},
	{name: KeyIncomingEnabled, kind: kindBool, def: "true", check: checkBool,
		help: "true | false (connections relayed to this machine through the agent, e.g. SSH)"},
	{name: KeyIncomingPorts, kind: kindList, check: checkPorts,
		help: "ports relayed connections may reach, e.g. 22"},
	{name: KeyProxyURL, kind: kindString, check: checkProxyURL,
		help: "http://proxy:3128 (the agent's calls to the control plane go through it)"},
	{name: KeyProxyBypass, kind: kindList, check: checkBypass,
		help: "hosts, .domain suffixes, IPs or CIDRs that skip the proxy"},
	{name: KeyExtensionsCPULimit, kind: kindInt, def: strconv.Itoa(DefaultCPULimit), check: checkPercent,
		help: "percent of one CPU for extension handlers (default 5)"},
	{name: KeyGuestConfigCPULimit, kind: kindInt, def: strconv.Itoa(DefaultCPULimit), check: checkPercent,
		help: "percent of one CPU for guest configuration (default 5)"},
	{name: KeyGuestConfigInterval, kind: kindInt, def: "15", check: checkMinutes,
		help: "minutes between periodic guest configuration evaluations (default 15; file changes are seen at once)"},
	{name: KeyProtectionSignatureKey, kind: kindString, check: checkSignatureKey,
		help: "ed25519:KEY endpoint protection's signature sets must be signed with (default: the control plane's key, pinned on first use)"},
	{name: KeyRebootCommand, kind: kindString, def: DefaultRebootCommand, check: checkCommand,
		help: "command (run with /bin/sh -c) that reboots the machine when an update deployment asks for a reboot"},
	{name: KeySSHManage, kind: kindBool, def: "false", check: checkBool,
		help: "true | false (true: sshd trusts the control plane's SSH user CA for the two accounts below; false undoes it)"},
	{name: KeySSHAdminUser, kind: kindString, def: DefaultSSHAdminUser, check: checkAccount,
		help: "local account of Virtual Machine Administrator Login (may sudo; created if absent)"},
	{name: KeySSHUser, kind: kindString, def: DefaultSSHUser, check: checkAccount,
		help: "local account of Virtual Machine User Login (unprivileged; created if absent)"},
}

// Default account names of ssh.adminuser and ssh.user.
const (
	DefaultSSHAdminUser = "corral-admin"
	DefaultSSHUser      = "corral-user"
)

var accountName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

func checkAccount(name, v string) (string, error) {
	switch {
	case !accountName.MatchString(v):
		return "", fmt.Errorf("%s: %q is not a valid account name (lower case letters, digits, _ and -, at most 32)", name, v)
	case v == "root":
		return "", fmt.Errorf("%s: root cannot be a certificate login; the administrator account uses sudo", name)
	}
	return v, nil
}

// Keys lists every key in the order `config list` shows them.
func Keys() []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = k.name
	}
	return out
}

// Help returns "key  help" lines for every key, for `config --help`.
func Help() string {
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "  %-34s %s\n", k.name, k.help)
	}
	return b.String()
}

func lookup(name string) (key, bool) {
	for _, k := range keys {
		if k.name == name {
			return k, true
		}
	}
	return key{}, false
}

func (k key) parse(value string) (string, error) {
	canon, err := k.check(k.name, strings.TrimSpace(value))
	if err != nil {
		return "", err
	}
	return canon, k.checkReportable(canon)
}

// checkReportable refuses a value the control plane would refuse when the
// agent reports its configuration (wire.EncodeAgentConfig): a machine
// whose reported configuration cannot be stored cannot even onboard.
func (k key) checkReportable(canon string) error {
	switch {
	case k.kind == kindList:
		list := splitList(canon)
		if len(list) > wire.MaxConfigListLen {
			return fmt.Errorf("%s has more than %d entries", k.name, wire.MaxConfigListLen)
		}
		for _, e := range list {
			if err := wire.CheckText(e, wire.MaxConfigValueLen); err != nil {
				return fmt.Errorf("%s: %q %w", k.name, e, err)
			}
		}
	case k.name == KeyProxyURL:
		if err := wire.CheckText(canon, wire.MaxProxyURLLen); err != nil {
			return fmt.Errorf("%s %w", k.name, err)
		}
	case k.kind == kindString && k.name != KeyRebootCommand:
		if err := wire.CheckText(canon, wire.MaxConfigValueLen); err != nil {
			return fmt.Errorf("%s %w", k.name, err)
		}
	}
	return nil
}

// fromJSON turns a stored JSON value into the form `config set` takes.
func (kd kind) fromJSON(v json.RawMessage) (string, error) {
	switch kd {
	case kindBool:
		var b bool
		if err := json.Unmarshal(v, &b); err != nil {
			return "", fmt.Errorf("want true or false")
		}
		return strconv.FormatBool(b), nil
	case kindInt:
		var n int
		if err := json.Unmarshal(v, &n); err != nil {
			return "", fmt.Errorf("want a number")
		}
		return strconv.Itoa(n), nil
	case kindList:
		var l []string
		if err := json.Unmarshal(v, &l); err != nil {
			return "", fmt.Errorf("want a list of strings")
		}
		for _, s := range l {
			if strings.Contains(s, ",") {
				return "", fmt.Errorf("list element %q contains a comma", s)
			}
		}
		return strings.Join(l, ","), nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fmt.Errorf("want a string")
	}
	return s, nil
}

// toJSON is the stored JSON value of a canonical value.
func (kd kind) toJSON(v string) any {
	switch kd {
	case kindBool:
		return v == "true"
	case kindInt:
		return atoi(v)
	case kindList:
		return nonNil(splitList(v))
	}
	return v
}

func checkMode(name, v string) (string, error) {
	l := strings.ToLower(v)
	if l != ModeFull && l != ModeMonitor {
		return "", fmt.Errorf("%s must be %q or %q, not %q", name, ModeFull, ModeMonitor, v)
	}
	return l, nil
}

func checkBool(name, v string) (string, error) {
	b, err := strconv.ParseBool(v)
	if err != nil {
		return "", fmt.Errorf("%s must be true or false, not %q", name, v)
	}
	return strconv.FormatBool(b), nil
}

func checkPercent(name, v string) (string, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 100 {
		return "", fmt.Errorf("%s must be a percentage of one CPU between 1 and 100, not %q", name, v)
	}
	return strconv.Itoa(n), nil
}

func checkMinutes(name, v string) (string, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 1440 {
		return "", fmt.Errorf("%s must be a number of minutes between 1 and 1440, not %q", name, v)
	}
	return strconv.Itoa(n), nil
}

var extensionName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}/[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

// ValidExtensionName reports whether s is a "Publisher/Type" name.
func ValidExtensionName(s string) bool { return extensionName.MatchString(s) }

// IsAllowNone reports whether s is the special allowlist value, in any case.
func IsAllowNone(s string) bool { return strings.EqualFold(s, AllowNone) }

func checkExtensionList(name, v string) (string, error) {
	list := splitList(v)
	for i, n := range list {
		if IsAllowNone(n) {
			if name == KeyBlocklist {
				return "", fmt.Errorf("%s: %q is only meaningful in %s", name, AllowNone, KeyAllowlist)
			}
			if len(list) > 1 {
				return "", fmt.Errorf("%s: %q cannot be combined with other extensions", name, AllowNone)
			}
			list[i] = AllowNone
			continue
		}
		if !ValidExtensionName(n) {
			return "", fmt.Errorf("%s: %q is not an extension name of the form Publisher/Type", name, n)
		}
	}
	return strings.Join(list, ","), nil
}

func checkPorts(name, v string) (string, error) {
	var out []string
	for _, p := range splitList(v) {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("%s: %q is not a port number (1-65535)", name, p)
		}
		// "22" and "+22" are one port: listed once, so that the canonical
		// form checks again as itself (the marker depends on it).
		if p := strconv.Itoa(n); !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return strings.Join(out, ","), nil
}

// checkCommand accepts one command line: not empty, at most 1024 bytes,
// no NUL or line break.
func checkCommand(name, v string) (string, error) {
	switch {
	case v == "":
		return "", fmt.Errorf("%s must not be empty (clear it to restore %q)", name, DefaultRebootCommand)
	case len(v) > 1024:
		return "", fmt.Errorf("%s is longer than 1024 bytes", name)
	case strings.ContainsAny(v, "\x00\n\r"):
		return "", fmt.Errorf("%s must be one line without NUL characters", name)
	}
	return v, nil
}

func checkProxyURL(name, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return "", fmt.Errorf("%s must look like http://proxy.example:3128, not %q", name, v)
	}
	if u.User != nil {
		return "", fmt.Errorf("%s must not carry credentials", name)
	}
	return v, nil
}

func checkBypass(name, v string) (string, error) {
	list := splitList(v)
	for _, h := range list {
		if _, _, err := net.ParseCIDR(h); err == nil {
			continue
		}
		if net.ParseIP(h) != nil {
			continue
		}
		if strings.ContainsAny(h, "/:@ \t") {
			return "", fmt.Errorf("%s: %q is neither a host name, a domain suffix, an IP nor a CIDR", name, h)
		}
	}
	return strings.Join(list, ","), nil
}

func checkPublisherKeys(name, v string) (string, error) {
	list := splitList(v)
	seen := map[string]bool{}
	for i, e := range list {
		pub, key, ok := strings.Cut(e, "=")
		pub = strings.TrimSpace(pub)
		if !ok || !publisherName.MatchString(pub) {
			return "", fmt.Errorf("%s: %q is not of the form Publisher=ed25519:KEY", name, e)
		}
		b, err := extpkg.ParsePublicKey(key)
		if err != nil {
			return "", fmt.Errorf("%s: publisher %s: %w", name, pub, err)
		}
		if seen[strings.ToLower(pub)] {
			return "", fmt.Errorf("%s: publisher %s is listed twice", name, pub)
		}
		seen[strings.ToLower(pub)] = true
		list[i] = pub + "=" + extpkg.FormatPublicKey(b)
	}
	return strings.Join(list, ","), nil
}

var publisherName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)

func checkSignatureKey(name, v string) (string, error) {
	if v == "" {
		return "", nil
	}
	b, err := extpkg.ParsePublicKey(v)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return extpkg.FormatPublicKey(b), nil
}
