package guest

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// AccountsCheck checks the local accounts databases.
type AccountsCheck struct {
	// Check is one of: uid0OnlyRoot, rootGid0, noEmptyPasswords,
	// allShadowed, uniqueNames, uniqueUids, uniqueGroupNames, uniqueGids,
	// groupsExist, systemAccountsNoLogin, shadowGroupEmpty.
	Check string `json:"check"`
}

var accountChecks = map[string]string{
	"uid0OnlyRoot":          "only root has UID 0",
	"rootGid0":              "root's primary group is GID 0",
	"noEmptyPasswords":      "no account in /etc/shadow has an empty password field",
	"allShadowed":           "every /etc/passwd entry keeps its password in /etc/shadow (x)",
	"uniqueNames":           "user names in /etc/passwd are unique",
	"uniqueUids":            "UIDs in /etc/passwd are unique",
	"uniqueGroupNames":      "group names in /etc/group are unique",
	"uniqueGids":            "GIDs in /etc/group are unique",
	"groupsExist":           "every primary group in /etc/passwd exists in /etc/group",
	"systemAccountsNoLogin": "system accounts (UID below 1000, except root, sync, shutdown, halt) have no login shell",
	"shadowGroupEmpty":      "the shadow group has no members",
}

func (c *AccountsCheck) validate(p string) error {
	if _, ok := accountChecks[c.Check]; !ok {
		var names []string
		for n := range accountChecks {
			names = append(names, n)
		}
		sortStrings(names)
		return cfgErr(p+".check", "unsupported accounts check %q: supported are %s", c.Check, strings.Join(names, ", "))
	}
	return nil
}

func (c *AccountsCheck) watch(*snapshot) []string {
	return []string{"/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"}
}

var noLoginShells = map[string]bool{"/usr/sbin/nologin": true, "/sbin/nologin": true, "/bin/false": true, "/usr/bin/false": true, "": false}

func (c *AccountsCheck) evaluate(s *snapshot) (State, string) {
	db := s.passwd()
	if strings.HasPrefix(c.Check, "uniqueGroup") || c.Check == "uniqueGids" || c.Check == "shadowGroupEmpty" {
		db = s.group()
	}
	if c.Check == "noEmptyPasswords" {
		db = s.accounts("/etc/shadow")
	}
	if db.err != nil {
		if errors.Is(db.err, fs.ErrNotExist) {
			return Unknown, db.path + " does not exist"
		}
		return Unknown, describeErr(db.path, db.err)
	}
	field := func(e accountEntry, i int) string {
		if i < len(e.fields) {
			return e.fields[i]
		}
		return ""
	}
	var bad []string
	switch c.Check {
	case "uid0OnlyRoot":
		for _, e := range db.entries {
			if field(e, 2) == "0" && field(e, 0) != "root" {
				bad = append(bad, fmt.Sprintf("%s (line %d)", field(e, 0), e.line))
			}
		}
		return verdict(bad, "accounts with UID 0 other than root: ", "only root has UID 0 in /etc/passwd")
	case "rootGid0":
		for _, e := range db.entries {
			if field(e, 0) == "root" {
				if g := field(e, 3); g != "0" {
					return NonCompliant, fmt.Sprintf("root's primary GID is %s (/etc/passwd line %d), want 0", g, e.line)
				}
				return Compliant, "root's primary GID is 0"
			}
		}
		return NonCompliant, "no root account in /etc/passwd"
	case "noEmptyPasswords":
		for _, e := range db.entries {
			if len(e.fields) > 1 && e.fields[1] == "" {
				bad = append(bad, fmt.Sprintf("%s (line %d)", field(e, 0), e.line))
			}
		}
		return verdict(bad, "accounts with an empty password in /etc/shadow: ", "no account has an empty password in /etc/shadow")
	case "allShadowed":
		for _, e := range db.entries {
			if pw := field(e, 1); pw != "x" && pw != "*" {
				bad = append(bad, fmt.Sprintf("%s (line %d)", field(e, 0), e.line))
			}
		}
		return verdict(bad, "accounts whose password is in /etc/passwd, not /etc/shadow: ", "every account's password field in /etc/passwd is x")
	case "uniqueNames", "uniqueGroupNames":
		return duplicates(db, 0, "name")
	case "uniqueUids", "uniqueGids":
		return duplicates(db, 2, "ID")
	case "groupsExist":
		grp := s.group()
		if grp.err != nil {
			return Unknown, describeErr(grp.path, grp.err)
		}
		gids := map[string]bool{}
		for _, e := range grp.entries {
			gids[field(e, 2)] = true
		}
		for _, e := range db.entries {
			if g := field(e, 3); !gids[g] {
				bad = append(bad, fmt.Sprintf("%s (GID %s)", field(e, 0), g))
			}
		}
		return verdict(bad, "primary groups missing from /etc/group: ", "every primary group in /etc/passwd exists in /etc/group")
	case "systemAccountsNoLogin":
		for _, e := range db.entries {
			name := field(e, 0)
			uid, err := strconv.Atoi(field(e, 2))
			if err != nil || uid >= 1000 || name == "root" || name == "sync" || name == "shutdown" || name == "halt" || uid == 65534 && name != "nobody" {
				continue
			}
			if sh := field(e, 6); !noLoginShells[sh] {
				bad = append(bad, fmt.Sprintf("%s (UID %d) has shell %s", name, uid, sh))
			}
		}
		return verdict(bad, "system accounts with a login shell: ", "system accounts have no login shell")
	case "shadowGroupEmpty":
		for _, e := range db.entries {
			if field(e, 0) == "shadow" && field(e, 3) != "" {
				return NonCompliant, "the shadow group has members: " + field(e, 3)
			}
		}
		pw := s.passwd()
		if pw.err == nil {
			for _, e := range db.entries {
				if field(e, 0) != "shadow" {
					continue
				}
				for _, u := range pw.entries {
					if field(u, 3) == field(e, 2) {
						bad = append(bad, field(u, 0))
					}
				}
			}
		}
		return verdict(bad, "accounts whose primary group is shadow: ", "the shadow group has no members")
	}
	return Unknown, "unsupported check"
}

func verdict(bad []string, badPrefix, good string) (State, string) {
	if len(bad) > 0 {
		return NonCompliant, badPrefix + strings.Join(bad, ", ")
	}
	return Compliant, good
}

func duplicates(db *accountDB, idx int, what string) (State, string) {
	seen := map[string]int{}
	var bad []string
	for _, e := range db.entries {
		if idx >= len(e.fields) {
			continue
		}
		v := e.fields[idx]
		if first, ok := seen[v]; ok {
			bad = append(bad, fmt.Sprintf("%s %s (lines %d and %d)", what, v, first, e.line))
			continue
		}
		seen[v] = e.line
	}
	return verdict(bad, "duplicates in "+db.path+": ", "no duplicate "+what+" in "+db.path)
}
