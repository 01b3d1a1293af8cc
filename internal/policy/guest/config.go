package guest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// ErrInvalidConfiguration is wrapped by every configuration parse error.
var ErrInvalidConfiguration = errors.New("invalid machine configuration")

// PathError locates a problem in a machine configuration document.
type PathError struct {
	Path string
	Msg  string
}

func (e *PathError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

func (e *PathError) Unwrap() error { return ErrInvalidConfiguration }

func cfgErr(path, format string, args ...any) error {
	return &PathError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// Configuration is a machine configuration: a named set of guest rules.
type Configuration struct {
	Name        string  `json:"name"`
	DisplayName string  `json:"displayName,omitempty"`
	Description string  `json:"description,omitempty"`
	Version     string  `json:"version,omitempty"`
	Rules       []*Rule `json:"rules"`
}

// Controls maps a rule to compliance frameworks.
type Controls struct {
	CIS       []string `json:"cis,omitempty"`       // CIS benchmark recommendation numbers
	NIST80053 []string `json:"nist80053,omitempty"` // NIST SP 800-53 controls, e.g. AC-6(1)
	PCIDSS    []string `json:"pciDss,omitempty"`    // PCI DSS requirements, e.g. Req-8.2.1
}

// Rule is one guest rule: metadata plus exactly one typed check.
type Rule struct {
	ID          string   `json:"id"`
	Title       string   `json:"title"`
	Severity    string   `json:"severity"` // low, medium, high
	Rationale   string   `json:"rationale"`
	Remediation string   `json:"remediation"`
	Controls    Controls `json:"controls"`
	// SSGRuleID is the SCAP Security Guide rule with the same verdict, e.g.
	// xccdf_org.ssgproject.content_rule_file_permissions_etc_passwd.
	SSGRuleID string `json:"ssgRuleId,omitempty"`
	// OnlyIfInstalled names a package the rule applies to: when it is not
	// installed the rule is Compliant ("does not apply"), as SCAP content
	// marks it not applicable (auditd settings without auditd).
	OnlyIfInstalled string `json:"onlyIfInstalled,omitempty"`

	File         *FileCheck         `json:"file,omitempty"`
	FileContent  *FileContentCheck  `json:"fileContent,omitempty"`
	Sysctl       *SysctlCheck       `json:"sysctl,omitempty"`
	SSHD         *SSHDCheck         `json:"sshd,omitempty"`
	SystemdUnit  *SystemdUnitCheck  `json:"systemdUnit,omitempty"`
	Package      *PackageCheck      `json:"package,omitempty"`
	KernelModule *KernelModuleCheck `json:"kernelModule,omitempty"`
	Mount        *MountCheck        `json:"mount,omitempty"`
	Accounts     *AccountsCheck     `json:"accounts,omitempty"`
	Ports        *PortsCheck        `json:"listeningPorts,omitempty"`
	ConfigValue  *ConfigValueCheck  `json:"configValue,omitempty"`

	check checker
}

// checker is implemented by every check type.
type checker interface {
	validate(path string) error
	evaluate(s *snapshot) (State, string)
	// watch lists the paths (inside the root) the check reads.
	watch(s *snapshot) []string
}

// remediator is implemented by the check types whose fix is safe to automate.
type remediator interface {
	remediate(s *snapshot, tx *changeTx) error
}

var checkTypes = "file, fileContent, sysctl, sshd, systemdUnit, package, kernelModule, mount, accounts, listeningPorts, configValue"

// ParseConfiguration reads a machine configuration (JSON). Unknown
// properties, a rule without exactly one check, duplicate rule ids and
// invalid check settings are refused with the JSON path.
func ParseConfiguration(data []byte) (*Configuration, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, jsonErr(data, "", err)
	}
	c := &Configuration{}
	rulesRaw, ok := top["rules"]
	if !ok {
		return nil, cfgErr("rules", "a machine configuration needs rules")
	}
	delete(top, "rules")
	head, _ := json.Marshal(top)
	if err := strictUnmarshal(head, c, ""); err != nil {
		return nil, err
	}
	if c.Name == "" {
		return nil, cfgErr("name", "a machine configuration needs a name")
	}
	var rules []json.RawMessage
	if err := json.Unmarshal(rulesRaw, &rules); err != nil {
		return nil, cfgErr("rules", "must be an array of rules")
	}
	if len(rules) == 0 {
		return nil, cfgErr("rules", "must hold at least one rule")
	}
	seen := map[string]bool{}
	for i, raw := range rules {
		p := fmt.Sprintf("rules[%d]", i)
		r := &Rule{}
		if err := strictUnmarshal(raw, r, p); err != nil {
			return nil, err
		}
		if err := r.init(p); err != nil {
			return nil, err
		}
		if seen[r.ID] {
			return nil, cfgErr(p+".id", "rule id %q is used twice", r.ID)
		}
		seen[r.ID] = true
		c.Rules = append(c.Rules, r)
	}
	return c, nil
}

var ruleIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

func (r *Rule) init(p string) error {
	if !ruleIDPattern.MatchString(r.ID) {
		return cfgErr(p+".id", "rule id %q must be 1-128 letters, digits, '.', '_' or '-'", r.ID)
	}
	if strings.TrimSpace(r.Title) == "" {
		return cfgErr(p+".title", "a rule needs a title")
	}
	switch r.Severity {
	case "low", "medium", "high":
	default:
		return cfgErr(p+".severity", "severity must be low, medium or high, got %q", r.Severity)
	}
	if r.OnlyIfInstalled != "" && !pkgNamePattern.MatchString(r.OnlyIfInstalled) {
		return cfgErr(p+".onlyIfInstalled", "%q is not a package name", r.OnlyIfInstalled)
	}
	if r.SSGRuleID != "" && !strings.HasPrefix(r.SSGRuleID, "xccdf_org.ssgproject.content_rule_") {
		return cfgErr(p+".ssgRuleId", "an SSG rule id starts with xccdf_org.ssgproject.content_rule_")
	}
	var found []string
	set := func(name string, c checker, isNil bool) {
		if !isNil {
			found = append(found, name)
			r.check = c
		}
	}
	set("file", r.File, r.File == nil)
	set("fileContent", r.FileContent, r.FileContent == nil)
	set("sysctl", r.Sysctl, r.Sysctl == nil)
	set("sshd", r.SSHD, r.SSHD == nil)
	set("systemdUnit", r.SystemdUnit, r.SystemdUnit == nil)
	set("package", r.Package, r.Package == nil)
	set("kernelModule", r.KernelModule, r.KernelModule == nil)
	set("mount", r.Mount, r.Mount == nil)
	set("accounts", r.Accounts, r.Accounts == nil)
	set("listeningPorts", r.Ports, r.Ports == nil)
	set("configValue", r.ConfigValue, r.ConfigValue == nil)
	switch len(found) {
	case 0:
		return cfgErr(p, "a rule needs exactly one check: %s", checkTypes)
	case 1:
	default:
		return cfgErr(p, "a rule takes exactly one check, found %s", strings.Join(found, " and "))
	}
	return r.check.validate(p + "." + found[0])
}

// Remediable reports whether Apply can fix the rule.
func (r *Rule) Remediable() bool {
	_, ok := r.check.(remediator)
	return ok
}

// Kind names the rule's check type (file, sysctl, ...).
func (r *Rule) Kind() string {
	switch r.check.(type) {
	case *FileCheck:
		return "file"
	case *FileContentCheck:
		return "fileContent"
	case *SysctlCheck:
		return "sysctl"
	case *SSHDCheck:
		return "sshd"
	case *SystemdUnitCheck:
		return "systemdUnit"
	case *PackageCheck:
		return "package"
	case *KernelModuleCheck:
		return "kernelModule"
	case *MountCheck:
		return "mount"
	case *AccountsCheck:
		return "accounts"
	case *PortsCheck:
		return "listeningPorts"
	case *ConfigValueCheck:
		return "configValue"
	}
	return ""
}

// Rule returns the rule with the given id.
func (c *Configuration) Rule(id string) (*Rule, bool) {
	for _, r := range c.Rules {
		if r.ID == id {
			return r, true
		}
	}
	return nil, false
}

// strictUnmarshal decodes with unknown fields refused, naming the path.
func strictUnmarshal(data []byte, v any, path string) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		msg := err.Error()
		switch {
		case errors.As(err, &te):
			p := te.Field
			if path != "" && p != "" {
				p = path + "." + p
			} else if p == "" {
				p = path
			}
			return cfgErr(p, "must be %s, got JSON %s", goTypeName(te.Type.String()), te.Value)
		case strings.HasPrefix(msg, "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(msg, "json: unknown field "), `"`)
			return cfgErr(path, "unsupported property %q", field)
		}
		return jsonErr(data, path, err)
	}
	return nil
}

func goTypeName(t string) string {
	switch {
	case t == "string":
		return "a string"
	case t == "bool" || t == "*bool":
		return "a boolean"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint") || strings.HasPrefix(t, "*int") || strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	}
	return "an object"
}

func jsonErr(data []byte, path string, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := 1, 1
		for i := int64(0); i < se.Offset-1 && i < int64(len(data)); i++ {
			if data[i] == '\n' {
				line++
				col = 1
			} else {
				col++
			}
		}
		return cfgErr(path, "invalid JSON at line %d, column %d: %v", line, col, err)
	}
	return cfgErr(path, "invalid JSON: %v", err)
}
