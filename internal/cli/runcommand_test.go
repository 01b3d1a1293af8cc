package cli

import (
	"strings"
	"testing"
)

// --param values are often secrets: a malformed one is refused with a
// message about parameters (not tags) that never repeats what was typed,
// and a name given twice is refused rather than silently overridden.
func TestRunCommandParamErrors(t *testing.T) {
	isolate(t)
	for _, tt := range []struct {
		params []string
		want   string
	}{
		{[]string{"WHO=me", "hunter2-secret"}, "--param 2 is not KEY=VALUE"},
		{[]string{"=hunter2-secret"}, "--param 1 is not KEY=VALUE"},
		{[]string{"TOKEN=hunter2-secret", "TOKEN=hunter2-secret"}, "TOKEN is given twice"},
	} {
		args := []string{"machine", "run-command", "--machine", "m", "--command", "id"}
		for _, p := range tt.params {
			args = append(args, "--param", p)
		}
		_, stderr, err := run(t, "", args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: got %v, want an error with %q", tt.params, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error()+stderr, "hunter2") {
			t.Errorf("%q: the error repeats a parameter: %v", tt.params, err)
		}
	}
}
