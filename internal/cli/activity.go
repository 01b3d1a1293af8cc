package cli

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/client"
)

func (a *app) activityCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "activity", Short: "Query, export and verify the activity log"}
	cmd.AddCommand(a.activityListCommand(), a.activityExportCommand(), a.activityVerifyCommand())
	return cmd
}

type activityFlags struct {
	scope, caller, action, result, since, from, to, output string
	top                                                    int
}

func (f *activityFlags) validate(now time.Time) (client.ActivityQuery, error) {
	var q client.ActivityQuery
	if err := checkOutput(f.output); err != nil {
		return q, err
	}
	if err := checkScope("scope", f.scope); err != nil {
		return q, err
	}
	res, err := canonicalValue("result", f.result, results)
	if err != nil {
		return q, err
	}
	if strings.Count(f.action, "*") > 1 || (strings.Contains(f.action, "*") && !strings.HasSuffix(f.action, "*")) {
		return q, fmt.Errorf("invalid --action %q: '*' is only allowed at the end", f.action)
	}
	if f.since != "" && f.from != "" {
		return q, errors.New("--since and --from cannot be used together")
	}
	if f.top < 1 || f.top > 100000 {
		return q, fmt.Errorf("invalid --top %d: must be from 1 to 100000", f.top)
	}
	q = client.ActivityQuery{Scope: f.scope, Caller: f.caller, Action: f.action, Result: res, Max: f.top}
	if f.since != "" {
		d, err := time.ParseDuration(f.since)
		if err != nil || d <= 0 {
			return q, fmt.Errorf("invalid --since %q: use a positive Go duration such as 1h or 30m", f.since)
		}
		q.From = now.Add(-d)
	}
	if f.from != "" {
		t, err := time.Parse(time.RFC3339, f.from)
		if err != nil {
			return q, fmt.Errorf("invalid --from %q: use an RFC 3339 time such as 2026-11-24T08:00:00Z", f.from)
		}
		q.From = t
	}
	if f.to != "" {
		t, err := time.Parse(time.RFC3339, f.to)
		if err != nil {
			return q, fmt.Errorf("invalid --to %q: use an RFC 3339 time such as 2026-11-24T08:00:00Z", f.to)
		}
		q.To = t
	}
	if !q.From.IsZero() && !q.To.IsZero() && q.To.Before(q.From) {
		return q, errors.New("--to is before the start of the time range")
	}
	return q, nil
}

func (a *app) activityListCommand() *cobra.Command {
	var f activityFlags
	cmd := &cobra.Command{
		Use:   "list [--scope S] [--caller ID] [--action A] [--result R] [--since 1h | --from T] [--to T] [--top N]",
		Short: "List activity log entries, newest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q, err := f.validate(a.now())
			if err != nil {
				return err
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			es, err := c.ListActivity(ctxOf(cmd), q)
			if err != nil {
				return err
			}
			return renderActivity(cmd.OutOrStdout(), f.output, es)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.scope, "scope", "", "scope and below (default /)")
	fl.StringVar(&f.caller, "caller", "", "caller principal id")
	fl.StringVar(&f.action, "action", "", "action, or a prefix ending in '*'")
	fl.StringVar(&f.result, "result", "", "Succeeded, Failed or Denied")
	fl.StringVar(&f.since, "since", "", "only entries newer than this duration, e.g. 1h")
	fl.StringVar(&f.from, "from", "", "start time (RFC 3339)")
	fl.StringVar(&f.to, "to", "", "end time (RFC 3339)")
	fl.IntVar(&f.top, "top", 100, "at most this many entries")
	addOutputFlag(cmd, &f.output)
	return cmd
}
