package localconfig

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Operation is what the control plane asks of an extension.
type Operation string

// Operations of SEEDS-DIGEST §001's table.
const (
	OpInstall Operation = "install"
	OpUpdate  Operation = "update" // reconfigure: new settings, same version
	OpUpgrade Operation = "upgrade"
	OpRemove  Operation = "remove"
)

// ErrExtensionBlocked is wrapped by every refusal of CheckExtension; its
// message is the reason reported to the control plane.
var ErrExtensionBlocked = errors.New("blocked by the local agent configuration")

// CheckExtension decides whether op on extension name ("Publisher/Type") is
// allowed by the local configuration:
//
//	operation  in allowlist  in blocklist  in both  in neither, allowlist set
//	install    allowed       blocked       blocked  blocked
//	update     allowed       blocked       blocked  blocked
//	upgrade    allowed       blocked       blocked  blocked
//	remove     allowed       allowed       allowed  allowed
//
// With neither list set everything is allowed. "Allow/None" blocks every
// install, update and upgrade. Monitor mode replaces the allowlist with
// MonitorAllowlist. extensions.enabled=false refuses every operation.
func (e Effective) CheckExtension(op Operation, name string) error {
	if e.Damaged != nil {
		return fmt.Errorf("%w: the local configuration cannot be read (%v)", ErrExtensionBlocked, e.Damaged)
	}
	if !e.ExtensionsEnabled {
		return fmt.Errorf("%w: the extension manager is disabled on this machine (extensions.enabled=false)", ErrExtensionBlocked)
	}
	if op == OpRemove {
		return nil
	}
	has := func(list []string) bool {
		return slices.ContainsFunc(list, func(s string) bool { return strings.EqualFold(s, name) })
	}
	if has(e.Blocklist) {
		return fmt.Errorf("%w: %s is in extensions.blocklist", ErrExtensionBlocked, name)
	}
	if len(e.Allowlist) == 0 {
		return nil
	}
	if slices.ContainsFunc(e.Allowlist, IsAllowNone) {
		return fmt.Errorf("%w: extensions.allowlist is %s, no extension may be installed or changed", ErrExtensionBlocked, AllowNone)
	}
	if has(e.Allowlist) {
		return nil
	}
	if e.Mode == ModeMonitor {
		return fmt.Errorf("%w: config.mode is monitor and %s is not one of its monitoring and security extensions (%s)",
			ErrExtensionBlocked, name, strings.Join(MonitorAllowlist, ", "))
	}
	return fmt.Errorf("%w: %s is not in extensions.allowlist", ErrExtensionBlocked, name)
}
