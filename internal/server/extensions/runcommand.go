package extensions

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/sealing"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Limits of run commands.
const (
	MaxScriptBytes        = 256 << 10
	MaxCommandBytes       = 8 << 10
	MaxParameters         = 64
	MaxParameterBytes     = 8 << 10
	MaxUnfinishedRuns     = 50
	MinRunCommandTimeout  = time.Second
	maxRunMessageBytes    = 4 << 10
	maxExtensionMsgBytes  = 4 << 10
	maxReportedNameLength = 100
)

var (
	// parameterNameRE matches what the agent accepts as an environment
	// variable name for a parameter.
	parameterNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`)
	// userNameRE is a POSIX-style account name.
	userNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}\$?$`)
)

func toWireRunCommand(m store.Machine, rc store.RunCommand) wire.RunCommand {
	return wire.RunCommand{
		ID: m.ResourceID().RunCommand(rc.Name).String(), Name: rc.Name, Script: rc.Script, Command: rc.Command, Parameters: rc.Parameters,
		HasProtectedParameters: len(rc.ProtectedParameters) > 0,
		RunAsUser:              rc.RunAsUser, Timeout: wire.Duration(rc.Timeout), State: rc.State, ExitCode: rc.ExitCode,
		Stdout: rc.Stdout, Stderr: rc.Stderr, Message: rc.Message, CreatedAt: rc.CreatedAt, CreatedBy: rc.CreatedBy,
		StartedAt: rc.StartedAt, FinishedAt: rc.FinishedAt,
	}
}

// RunSummary names a run for the activity log without its script, command
// or parameters, which may hold secrets (protected parameters are only
// counted).
func RunSummary(rc wire.RunCommand) string {
	kind := "command"
	if rc.Script != "" {
		kind = "script"
	}
	user := rc.RunAsUser
	if user == "" {
		user = "root"
	}
	return "run " + wire.ExtRunCommand + " " + kind + " as " + user + " (timeout " + time.Duration(rc.Timeout).String() + ")"
}

func validateRunCommand(req wire.RunCommandCreate) (time.Duration, error) {
	switch {
	case strings.TrimSpace(req.Script) == "" && strings.TrimSpace(req.Command) == "":
		return 0, refusal.Invalid("script", "give a script or a command")
	case req.Script != "" && req.Command != "":
		return 0, refusal.Invalid("command", "give a script or a command, not both")
	case len(req.Script) > MaxScriptBytes:
		return 0, refusal.Invalid("script", "the script is larger than %d bytes", MaxScriptBytes)
	case len(req.Command) > MaxCommandBytes:
		return 0, refusal.Invalid("command", "the command is larger than %d bytes", MaxCommandBytes)
	case strings.ContainsRune(req.Script, 0) || strings.ContainsRune(req.Command, 0):
		return 0, refusal.Invalid("script", "the script or command contains a NUL character")
	case len(req.Parameters)+len(req.ProtectedParameters) > MaxParameters:
		return 0, refusal.Invalid("parameters", "at most %d parameters (protected ones included) are allowed", MaxParameters)
	case req.RunAsUser != "" && !userNameRE.MatchString(req.RunAsUser):
		return 0, refusal.Invalid("runAsUser", "runAsUser %q is not a valid account name", req.RunAsUser)
	}
	for _, ps := range []struct {
		target string
		m      map[string]string
	}{{"parameters", req.Parameters}, {"protectedParameters", req.ProtectedParameters}} {
		for k, v := range ps.m {
			if !parameterNameRE.MatchString(k) {
				return 0, refusal.Invalid(ps.target, "parameter name %q is not valid: use letters, digits and '_', not starting with a digit (at most 64)", k)
			}
			if len(v) > MaxParameterBytes || strings.ContainsRune(v, 0) {
				// The value of a protected parameter is never echoed.
				return 0, refusal.Invalid(ps.target, "the value of parameter %q is larger than %d bytes or contains a NUL character", k, MaxParameterBytes)
			}
			if _, both := req.Parameters[k]; both && ps.target == "protectedParameters" {
				return 0, refusal.Invalid(ps.target, "parameter %q is given both in parameters and in protectedParameters", k)
			}
		}
	}
	timeout := time.Duration(req.Timeout)
	switch {
	case timeout == 0:
		timeout = wire.DefaultRunCommandTimeout
	case timeout < MinRunCommandTimeout || timeout > wire.MaxHandlerTimeout:
		return 0, refusal.Invalid("timeout", "timeout must be between %s and %s", MinRunCommandTimeout, wire.MaxHandlerTimeout)
	}
	return timeout, nil
}

// CreateRunCommand records a run (state Pending) and pushes a sync: the
// agent runs it with the Corral/RunCommand handler and reports back. Run
// names are not reused on a machine.
func (s *Service) CreateRunCommand(ctx context.Context, ref resource.MachineRef, name string, req wire.RunCommandCreate, by string) (wire.RunCommand, error) {
	if err := validResourceName("run command", name); err != nil {
		return wire.RunCommand{}, err
	}
	timeout, err := validateRunCommand(req)
	if err != nil {
		return wire.RunCommand{}, err
	}
	m, err := s.machine(ctx, ref)
	if err != nil {
		return wire.RunCommand{}, err
	}
	if m.Status == wire.StatusExpired {
		return wire.RunCommand{}, refusal.Conflict("machine %q is Expired: onboard it again before running commands on it", m.Name)
	}
	open, err := s.store.ListRunCommands(ctx, store.RunCommandFilter{MachineID: m.ID, Unfinished: true, Page: store.Page{Limit: MaxUnfinishedRuns}})
	if err != nil {
		return wire.RunCommand{}, err
	}
	if len(open) >= MaxUnfinishedRuns {
		return wire.RunCommand{}, refusal.Conflict("machine %q already has %d runs waiting or running; wait for some to finish", m.Name, MaxUnfinishedRuns)
	}
	var sealed []byte
	if len(req.ProtectedParameters) > 0 {
		plain, err := json.Marshal(req.ProtectedParameters)
		if err != nil {
			return wire.RunCommand{}, err
		}
		sealed, err = sealing.Seal(m.SealingKey, sealing.RunCommandAAD(m.ID, name), plain)
		clear(plain)
		if errors.Is(err, sealing.ErrNoKey) {
			return wire.RunCommand{}, refusal.Invalid("protectedParameters", "machine %q has no sealing key (its agent is too old): upgrade the agent and connect it again", m.Name)
		}
		if err != nil {
			return wire.RunCommand{}, err
		}
	}
	now := s.now()
	rc := store.RunCommand{Origin: capability.OriginFrom(ctx).Encode(), ID: s.newID(), MachineID: m.ID, Name: name, Script: req.Script, Command: req.Command,
		Parameters: req.Parameters, ProtectedParameters: sealed, RunAsUser: req.RunAsUser, Timeout: timeout, State: wire.RunPending,
		CreatedAt: now, CreatedBy: by, UpdatedAt: now}
	if rc.Parameters == nil {
		rc.Parameters = map[string]string{}
	}
	gen, err := s.store.CreateRunCommand(ctx, rc)
	switch {
	case errors.Is(err, store.ErrConflict):
		return wire.RunCommand{}, refusal.Conflict("a run named %q already exists on machine %q; run names are not reused, choose another", name, m.Name)
	case errors.Is(err, store.ErrNotFound):
		return wire.RunCommand{}, refusal.NotFound("machine %q was deleted", m.Name)
	case err != nil:
		return wire.RunCommand{}, err
	}
	s.notify.Notify(ctx, m.ID, gen)
	s.log.InfoContext(ctx, "run command created", "machine", m.ID, "run", name, "generation", gen, "by", by)
	return toWireRunCommand(m, rc), nil
}

// GetRunCommand returns one run's record.
func (s *Service) GetRunCommand(ctx context.Context, ref resource.MachineRef, name string) (wire.RunCommand, error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return wire.RunCommand{}, err
	}
	rc, err := s.store.GetRunCommand(ctx, m.ID, name)
	if errors.Is(err, store.ErrNotFound) {
		return wire.RunCommand{}, refusal.NotFound("run command %q was not found on machine %q", name, m.Name)
	}
	if err != nil {
		return wire.RunCommand{}, err
	}
	return toWireRunCommand(m, rc), nil
}

// RunCommandPage is one page of a machine's runs, newest first; After is
// the paging key of the next page ("" on the last).
type RunCommandPage struct {
	Runs  []wire.RunCommand
	After string
}

// ListRunCommands lists a machine's runs, newest first. p.Limit is the page
// size; p.After the key from the previous page.
func (s *Service) ListRunCommands(ctx context.Context, ref resource.MachineRef, p store.Page) (RunCommandPage, error) {
	m, err := s.machine(ctx, ref)
	if err != nil {
		return RunCommandPage{}, err
	}
	size := p.Limit
	if size <= 0 || size > 1000 {
		size = 100
	}
	p.Limit = size + 1
	rcs, err := s.store.ListRunCommands(ctx, store.RunCommandFilter{MachineID: m.ID, Page: p})
	if err != nil {
		return RunCommandPage{}, err
	}
	out := RunCommandPage{Runs: []wire.RunCommand{}}
	if len(rcs) > size {
		rcs, out.After = rcs[:size], rcs[size-1].ID
	}
	// Scripts and output make runs large: a page carries at most
	// MaxPageBytes of them, however many it asks for.
	rcs, out.After = store.TrimPage(rcs, out.After, func(rc store.RunCommand) string { return rc.ID }, runSize, store.MaxPageBytes)
	for _, rc := range rcs {
		out.Runs = append(out.Runs, toWireRunCommand(m, rc))
	}
	return out, nil
}

// runSize estimates what a run adds to a list answer.
func runSize(rc store.RunCommand) int {
	n := 1024 + len(rc.Script) + len(rc.Command) + len(rc.Stdout) + len(rc.Stderr) + len(rc.Message)
	for k, v := range rc.Parameters {
		n += len(k) + len(v) + 8
	}
	return n
}

// capText makes agent-reported text safe to store: valid UTF-8 without NUL
// (PostgreSQL text refuses both) and at most n bytes, cut on a rune boundary.
func capText(s string, n int) string {
	s = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", ""), "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
