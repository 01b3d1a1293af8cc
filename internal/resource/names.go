package resource

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// The rules for names and tags, written once for the API, the web UI's
// form checks and the CLI.
var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	tagKeyRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$`)
)

// unsafeRune is a control character (C0, DEL, C1) or a bidirectional
// override — what a terminal or a renderer acts on instead of showing. It
// is wire.UnsafeRune, repeated: this package imports nothing of ours.
func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || (r >= 0x202A && r <= 0x202E) || (r >= 0x2066 && r <= 0x2069) || r == 0x200E || r == 0x200F
}

// Tag limits.
const (
	MaxTags        = 50
	MaxTagValueLen = 256
)

// ValidName reports whether name is a valid resource name: 1-63 letters,
// digits, '.', '_' or '-', starting with a letter or digit and not ending
// with '.' (as in Azure: "web." and "web" would read alike in many places).
func ValidName(name string) bool { return nameRE.MatchString(name) && !strings.HasSuffix(name, ".") }

// CheckName explains why name is not a valid name of a kind of resource
// ("machine", "resource group"), or returns nil.
func CheckName(kind, name string) error {
	if !ValidName(name) {
		return fmt.Errorf("%s name %q is not valid: use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit and not ending with '.'", kind, name)
	}
	return nil
}

// ValidTagKey reports whether k is a valid tag key: 1-128 letters, digits
// or ._:/-, starting with a letter or digit.
func ValidTagKey(k string) bool { return tagKeyRE.MatchString(k) }

// CheckTags explains what is wrong with a set of tags (too many, a bad key,
// a long value or one with control characters), or returns nil.
func CheckTags(tags map[string]string) error {
	if len(tags) > MaxTags {
		return fmt.Errorf("at most %d tags are allowed", MaxTags)
	}
	for k, v := range tags {
		if !ValidTagKey(k) {
			return fmt.Errorf("tag key %q is not valid: 1-128 letters, digits or ._:/-", k)
		}
		if len(v) > MaxTagValueLen || strings.ContainsFunc(v, unsafeRune) {
			return fmt.Errorf("tag %q has a value longer than %d characters or with control characters", k, MaxTagValueLen)
		}
	}
	return nil
}
