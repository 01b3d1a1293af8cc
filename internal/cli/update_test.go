package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

// TestUpdateFlagsRefuseBadInputBeforeAnyCall: the deploy and schedule
// flags are checked before the CLI signs in or calls the server (here no
// server exists), with messages naming the flag.
func TestUpdateFlagsRefuseBadInputBeforeAnyCall(t *testing.T) {
	t.Setenv("CORRAL_SERVER", "https://127.0.0.1:1")
	t.Setenv("CORRAL_TOKEN", "x")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"update", "deploy", "--machine", "m", "--reboot", "Never"}, "--classification is required"},
		{[]string{"update", "deploy", "--machine", "m", "--classification", "Security,Bogus", "--reboot", "Never"}, `unknown classification "Bogus"`},
		{[]string{"update", "deploy", "--machine", "m", "--classification", "Security", "--reboot", "Soon"}, `invalid --reboot "Soon"`},
		{[]string{"update", "deploy", "--machine", "m", "--classification", "Security", "--window", "59m"}, "between 60 and 235 minutes"},
		{[]string{"update", "deploy", "--machine", "m", "--classification", "Security", "--window", "2 hours"}, "want minutes such as 120m"},
		{[]string{"update", "deploy", "--machine", "m", "--classification", "Security", "--wave", "150%"}, "a percentage is 1% to 100%"},
		{[]string{"update", "deploy", "--machine", "m", "--classification", "Security", "--max-failed-percent", "10"}, "--max-failed-percent needs --wave"},
		{[]string{"update", "deploy", "--classification", "Security"}, "give --machine M, --scope S or --tag KEY=VALUE"},
		{[]string{"update", "deploy", "--machine", "m", "--scope", "rg", "--classification", "Security"}, "not both"},
		{[]string{"update", "assess", "--tag", "novalue"}, "use KEY=VALUE"},
		{[]string{"update", "schedule", "create", "--machine", "m", "--cron", "0 3 * * *", "--classification", "Security"}, "--name is required"},
		{[]string{"update", "schedule", "create", "--name", "n", "--machine", "m", "--classification", "Security"}, "give --cron or --at"},
		{[]string{"update", "schedule", "create", "--name", "n", "--machine", "m", "--at", "tomorrow", "--classification", "Security"}, "invalid --at"},
		{[]string{"update", "list"}, "--machine is required"},
		{[]string{"update", "run", "show", "x", "-o", "yaml"}, `invalid --output "yaml"`},
	} {
		_, _, err := run(t, "", tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("corral %s: %v, want %q", strings.Join(tc.args, " "), err, tc.want)
		}
	}
}

func TestUpdateCounts(t *testing.T) {
	at := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		s    wire.UpdateSummary
		ok   bool
		want string
	}{
		{wire.UpdateSummary{}, false, "-"},
		{wire.UpdateSummary{State: wire.AssessmentPending}, true, "assessing"},
		{wire.UpdateSummary{State: wire.AssessmentFailed, Message: "blocked"}, true, "failed"},
		{wire.UpdateSummary{State: wire.AssessmentSucceeded, Security: 4, Other: 76, AssessedAt: at}, true, "0/4/76"},
		{wire.UpdateSummary{State: wire.AssessmentFailed, Critical: 1, AssessedAt: at}, true, "1/0/0 (last failed)"},
		{wire.UpdateSummary{State: wire.AssessmentPending, Other: 2, AssessedAt: at}, true, "0/0/2"},
	} {
		if got := updateCounts(tc.s, tc.ok); got != tc.want {
			t.Errorf("updateCounts(%+v) = %q, want %q", tc.s, got, tc.want)
		}
	}
}
