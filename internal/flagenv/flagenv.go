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
