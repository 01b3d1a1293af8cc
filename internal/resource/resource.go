// Package resource builds and parses Corral resource ids, the one spelling
// of where a resource lives that the API paths, authorization scopes, the
// activity log and the desired state share:
//
//	/subscriptions/{sub}/resourceGroups/{rg}/machines/{name}/extensions/{ext}
//	/publishers/{name}   /users/{name}   /servicePrincipals/{clientId} ...
//
// An ID is a value (comparable, immutable, safe to share); its zero value is
// the root "/". Builders never fail: they take names as given, and the
// contexts validate names before they build ids. Parse and ParseScope check
// ids that come from outside (a ?scope= query, a role assignment body).
//
// The package imports only the standard library so that the server, the
// CLI, the client and the load generator can all use it.
package resource

import (
	"fmt"
	"net/url"
	"strings"
)

// Types of id segments, spelled as in ids and API paths.
const (
	Subscriptions     = "subscriptions"
	ResourceGroups    = "resourceGroups"
	Machines          = "machines"
	Extensions        = "extensions"
	RunCommands       = "runCommands"
	Publishers        = "publishers"
	ExtensionTypes    = "extensionTypes"
	Versions          = "versions"
	Users             = "users"
	ServicePrincipals = "servicePrincipals"
	Tokens            = "tokens"
	RoleDefinitions   = "roleDefinitions"
)

// ID is a resource id: "/" or a path of type/name pairs.
type ID struct {
	// p is "" for the root, else "/type/name[/type/name...]" with every
	// type and name path-escaped, so that a name holding "/" stays one
	// segment (and cannot redirect an API call built from the id).
	p string
}

// Segment is one type/name pair of an ID.
type Segment struct {
	Type, Name string
}

// Root is the id "/", the scope above every resource.
func Root() ID { return ID{} }

// Subscription is /subscriptions/{sub}.
func Subscription(sub string) ID { return Root().Child(Subscriptions, sub) }

// ResourceGroup is /subscriptions/{sub}/resourceGroups/{rg}.
func ResourceGroup(sub, rg string) ID { return Subscription(sub).Child(ResourceGroups, rg) }

// Machine is /subscriptions/{sub}/resourceGroups/{rg}/machines/{name}.
func Machine(sub, rg, name string) ID { return ResourceGroup(sub, rg).Child(Machines, name) }

// Publisher is /publishers/{name}.
func Publisher(name string) ID { return Root().Child(Publishers, name) }

// ExtensionPackage is /publishers/{pub}/extensionTypes/{typ}/versions/{version}.
func ExtensionPackage(pub, typ, version string) ID {
	return Publisher(pub).Child(ExtensionTypes, typ).Child(Versions, version)
}

// User is /users/{name}.
func User(name string) ID { return Root().Child(Users, name) }

// ServicePrincipal is /servicePrincipals/{clientID}.
func ServicePrincipal(clientID string) ID { return Root().Child(ServicePrincipals, clientID) }

// Token is /tokens/{id}, an API token.
func Token(id string) ID { return Root().Child(Tokens, id) }

// RoleDefinition is /roleDefinitions/{id}.
func RoleDefinition(id string) ID { return Root().Child(RoleDefinitions, id) }

// Child is id followed by /typ/name.
func (id ID) Child(typ, name string) ID {
	return ID{p: id.p + "/" + url.PathEscape(typ) + "/" + url.PathEscape(name)}
}

// Extension is the extension name of the machine id.
func (id ID) Extension(name string) ID { return id.Child(Extensions, name) }

// RunCommand is the run command name of the machine id.
func (id ID) RunCommand(name string) ID { return id.Child(RunCommands, name) }

// String is the id as written, "/" for the root. Names are shown as given
// (unescaped): for the names the API accepts, String and Path agree.
func (id ID) String() string {
	if id.p == "" {
		return "/"
	}
	if !strings.Contains(id.p, "%") {
		return id.p // nothing escaped: the path is the id as written
	}
	var b strings.Builder
	for _, s := range id.Segments() {
		b.WriteByte('/')
		b.WriteString(s.Type)
		b.WriteByte('/')
		b.WriteString(s.Name)
	}
	return b.String()
}

// IsRoot reports whether id is "/".
func (id ID) IsRoot() bool { return id.p == "" }

// Segments returns the type/name pairs of id, outermost first (none for the root).
func (id ID) Segments() []Segment {
	if id.p == "" {
		return nil
	}
	parts := strings.Split(id.p[1:], "/")
	out := make([]Segment, 0, len(parts)/2)
	for i := 0; i+1 < len(parts); i += 2 {
		out = append(out, Segment{Type: unescape(parts[i]), Name: unescape(parts[i+1])})
	}
	return out
}

// unescape undoes url.PathEscape, which made s.
func unescape(s string) string {
	u, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return u
}

// Name returns the name of id's first segment of type typ (compared
// case-insensitively), or "" if it has none: Machine(s, rg, m).Name(ResourceGroups) is rg.
func (id ID) Name(typ string) string {
	for _, s := range id.Segments() {
		if strings.EqualFold(s.Type, typ) {
			return s.Name
		}
	}
	return ""
}

// Parent is id without its last segment; the root's parent is the root.
func (id ID) Parent() ID {
	segs := id.Segments()
	if len(segs) == 0 {
		return id
	}
	p := Root()
	for _, s := range segs[:len(segs)-1] {
		p = p.Child(s.Type, s.Name)
	}
	return p
}

// Path is id with every name path-escaped, to be appended to an API base
// such as "/api/v1". The root's path is "".
func (id ID) Path() string { return id.p }

// Parse reads a resource id: "/" or "/type/name" pairs without empty
// segments or a trailing slash. Types are not checked; see ParseScope.
func Parse(s string) (ID, error) {
	if s == "/" {
		return Root(), nil
	}
	if !strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") {
		return ID{}, fmt.Errorf("resource id %q must be \"/\" or start with / and not end with /", s)
	}
	parts := strings.Split(s[1:], "/")
	if len(parts)%2 != 0 {
		return ID{}, fmt.Errorf("resource id %q must be pairs of /type/name", s)
	}
	id := Root()
	for i := 0; i < len(parts); i += 2 {
		if parts[i] == "" || parts[i+1] == "" {
			return ID{}, fmt.Errorf("resource id %q has an empty segment", s)
		}
		id = id.Child(parts[i], parts[i+1])
	}
	return id, nil
}

// scopeTypes are the types a scope may have, outermost first.
var scopeTypes = []string{Subscriptions, ResourceGroups, Machines}

// ParseScope reads an authorization scope: "/" or
// /subscriptions/S[/resourceGroups/RG[/machines/M]], types matched
// case-insensitively and kept as given.
func ParseScope(s string) (ID, error) {
	if s == "/" {
		return Root(), nil
	}
	if !strings.HasPrefix(s, "/") || strings.HasSuffix(s, "/") {
		return ID{}, fmt.Errorf("scope %q must be \"/\" or start with /subscriptions/ and not end with /", s)
	}
	shape := fmt.Errorf("scope %q must look like /subscriptions/S[/resourceGroups/RG[/machines/M]]", s)
	id, err := Parse(s)
	if err != nil {
		return ID{}, shape
	}
	segs := id.Segments()
	if len(segs) > len(scopeTypes) {
		return ID{}, shape
	}
	for i, seg := range segs {
		if !strings.EqualFold(seg.Type, scopeTypes[i]) {
			return ID{}, shape
		}
	}
	return id, nil
}

// MachineRef names a machine by where it lives, as API paths do.
type MachineRef struct {
	Subscription, ResourceGroup, Name string
}

// ID is the machine's resource id.
func (r MachineRef) ID() ID { return Machine(r.Subscription, r.ResourceGroup, r.Name) }
