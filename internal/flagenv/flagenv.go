// Package flagenv lets every command-line flag also be set through an
// environment variable: --data-dir reads CORRAL_DATA_DIR when the flag is
// not given. Flags always win over the environment.
package flagenv

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// Name returns the environment variable for a flag: prefix + upper-cased
// flag name with '-' as '_' (prefix "CORRAL_", flag "data-dir" ->
// "CORRAL_DATA_DIR").
func Name(prefix, flag string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Apply sets every flag of fs that was not given on the command line from
// its environment variable, if set. A bad value names the variable.
func Apply(fs *pflag.FlagSet, prefix string) error {
	var firstErr error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || firstErr != nil || f.Name == "help" {
			return
		}
		env := Name(prefix, f.Name)
		v, ok := os.LookupEnv(env)
		if !ok {
			return
		}
		if err := fs.Set(f.Name, v); err != nil {
			firstErr = fmt.Errorf("environment variable %s: %w", env, err)
		}
	})
	return firstErr
}

// Suggest turns pflag's "unknown flag: --colour" into the same error with
// the closest flag the command has ("did you mean --color?") when one is
// within two edits. Use it as a cobra FlagErrorFunc's body.
func Suggest(err error, flags ...*pflag.FlagSet) error {
	msg := err.Error()
	name, ok := strings.CutPrefix(msg, "unknown flag: --")
	if !ok {
		return err
	}
	best, bestDist := "", 3
	for _, fs := range flags {
		fs.VisitAll(func(f *pflag.Flag) {
			if d := editDistance(name, f.Name); d < bestDist {
				best, bestDist = f.Name, d
			}
		})
	}
	if best == "" {
		return err
	}
	return fmt.Errorf("%s (did you mean --%s?)", msg, best)
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
