package cli

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

func TestReadSettings(t *testing.T) {
	t.Parallel()
	cmd := &cobra.Command{}
	cmd.SetIn(strings.NewReader(`{"token":"from-stdin"}`))
	if got, err := readSettings(cmd, "protected-settings", "@-"); err != nil || string(got) != `{"token":"from-stdin"}` {
		t.Errorf("protected settings from stdin: %s %v", got, err)
	}
	// A secret on the command line is refused, and never echoed.
	if _, err := readSettings(cmd, "protected-settings", `{"token":"s3cret"}`); err == nil || !strings.Contains(err.Error(), "@FILE or @-") ||
		strings.Contains(err.Error(), "s3cret") {
		t.Errorf("inline protected settings: %v", err)
	}
	// A JSON error says where, without the document.
	_, err := readSettings(cmd, "settings", `{"level": 2,}`)
	if err == nil || !strings.Contains(err.Error(), "at byte 13") || strings.Contains(err.Error(), "level") {
		t.Errorf("bad settings JSON: %v", err)
	}
	if _, err := readSettings(cmd, "settings", `[1,2]`); err == nil || !strings.Contains(err.Error(), "JSON object") {
		t.Errorf("settings that are not an object: %v", err)
	}
}
