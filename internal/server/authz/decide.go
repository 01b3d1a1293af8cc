package authz

import (
	"errors"
	"fmt"
	"strings"

	"github.com/corralhq/corral/internal/resource"
)

// ScopeCheck authorizes the caller of a request at a scope a service learns
// only while it works (from the body or a stored record): it returns nil,
// or the refusal to report, before the service changes anything.
type ScopeCheck func(scope resource.ID) error

// Assignment is one role granted at one scope.
type Assignment struct {
	Role  Role
	Scope string
}

// Allowed reports whether any assignment grants action at scope. Scopes are
// resource ids ("/subscriptions/s/resourceGroups/rg/machines/m") or "/".
func Allowed(assignments []Assignment, action, scope string) bool {
	for _, a := range assignments {
		if ScopeCovers(a.Scope, scope) && RoleGrants(a.Role, action) {
			return true
		}
	}
	return false
}

// AllowedAnywhere reports whether any assignment grants action at any
// scope. It governs reads of global catalogs (the extension packages): whoever
// may read them somewhere may read them, since they are not scoped.
func AllowedAnywhere(assignments []Assignment, action string) bool {
	for _, a := range assignments {
		if RoleGrants(a.Role, action) {
			return true
		}
	}
	return false
}

// RoleGrants reports whether r grants action: some Actions pattern matches and
// no NotActions pattern does.
func RoleGrants(r Role, action string) bool {
	granted := false
	for _, p := range r.Actions {
		if MatchAction(p, action) {
			granted = true
			break
		}
	}
	if !granted {
		return false
	}
	for _, p := range r.NotActions {
		if MatchAction(p, action) {
			return false
		}
	}
	return true
}

// MatchAction matches an action against a pattern in which "*" stands for any
// run of characters (including "/"), case-insensitively.
func MatchAction(pattern, action string) bool {
	return globMatch(strings.ToLower(pattern), strings.ToLower(action))
}

func globMatch(p, s string) bool {
	// Iterative wildcard matching with backtracking to the last star.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(p) && p[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// ScopeCovers reports whether an assignment at scope applies to target: the
// same scope or a descendant, compared by whole path segments,
// case-insensitively. "/" covers everything.
func ScopeCovers(scope, target string) bool {
	scope = strings.TrimSuffix(strings.ToLower(scope), "/")
	target = strings.TrimSuffix(strings.ToLower(target), "/")
	if scope == "" {
		return true
	}
	return target == scope || strings.HasPrefix(target, scope+"/")
}

// ValidateScope checks a scope is "/" or a well-formed resource id prefix:
// /subscriptions/{s}[/resourceGroups/{rg}[/machines/{m}]] (resource.ParseScope).
func ValidateScope(scope string) error {
	_, err := resource.ParseScope(scope)
	return err
}

// ErrInvalidPattern is returned by ValidateRole for a malformed action pattern.
var ErrInvalidPattern = errors.New("invalid action pattern")

// ValidateRole checks a custom role: a name, at least one action, and action
// patterns made of provider/resource segments or wildcards.
func ValidateRole(r Role) error {
	if strings.TrimSpace(r.Name) == "" {
		return errors.New("role name is required")
	}
	if len(r.Actions) == 0 {
		return errors.New("a role needs at least one action")
	}
	for _, list := range [][]string{r.Actions, r.NotActions} {
		for _, p := range list {
			if p == "" || strings.ContainsAny(p, " \t\n?[]") || len(p) > 256 {
				return fmt.Errorf("%w: %q", ErrInvalidPattern, p)
			}
		}
	}
	for _, s := range r.AssignableScopes {
		if err := ValidateScope(s); err != nil {
			return err
		}
	}
	return nil
}

func equalFold(a, b string) bool { return strings.EqualFold(a, b) }

// OnlyOnboarding reports whether assignments grant nothing but onboarding
// (ActMachinesOnboard) — or nothing at all: such a principal exists to
// connect machines, and a leak of its secret must not yield more (it may
// not, for instance, create API tokens).
func OnlyOnboarding(assignments []Assignment) bool {
	for _, a := range assignments {
		for _, act := range AllActions {
			if act != ActMachinesOnboard && RoleGrants(a.Role, act) {
				return false
			}
		}
		// A custom role may grant actions of later capabilities that
		// AllActions does not list: anything but the onboarding action.
		for _, p := range a.Role.Actions {
			if !strings.EqualFold(p, ActMachinesOnboard) {
				return false
			}
		}
	}
	return true
}
