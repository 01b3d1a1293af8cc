package flagenv

import (
	"errors"
	"testing"

	"github.com/spf13/pflag"
)

func TestSuggest(t *testing.T) {
	t.Parallel()
	fs := pflag.NewFlagSet("x", pflag.ContinueOnError)
	fs.String("resource-group", "", "")
	fs.String("output", "", "")
	tests := map[string]string{
		"unknown flag: --resource-grup": "unknown flag: --resource-grup (did you mean --resource-group?)",
		"unknown flag: --ouptut":        "unknown flag: --ouptut (did you mean --output?)",
		"unknown flag: --nothing-alike": "unknown flag: --nothing-alike",
		"unknown shorthand flag: 'z'":   "unknown shorthand flag: 'z'",
	}
	for in, want := range tests {
		if got := Suggest(errors.New(in), fs).Error(); got != want {
			t.Errorf("Suggest(%q) = %q, want %q", in, got, want)
		}
	}
}
