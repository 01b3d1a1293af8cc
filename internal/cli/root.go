package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/flagenv"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/internal/capped"
	"github.com/corralhq/corral/internal/client"
	"github.com/corralhq/corral/internal/wire"
)

// NewRootCommand returns the "corral" command with every admin command, plus
// extra (e.g. "server", "loadgen", "dev").
func NewRootCommand(version string, extra ...*cobra.Command) *cobra.Command {
	root := &cobra.Command{
		Use:   "corral",
		Short: "Corral: a self-hosted control plane for Linux servers",
		Long: `Corral manages Linux servers from one self-hosted control plane.

Sign in with "corral login"; the other commands use the saved credentials.
CORRAL_SERVER, CORRAL_TOKEN and CORRAL_CA_FILE override them.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: false,
	}
	root.SetVersionTemplate("corral {{.Version}}\n")
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return flagenv.Suggest(err, c.Flags(), c.InheritedFlags())
	})
	a := &app{version: version, now: time.Now}
	root.AddCommand(
		a.loginCommand(), a.logoutCommand(),
		a.spCommand(), a.roleCommand(), a.groupCommand(), a.machineCommand(),
		a.userCommand(), a.tokenCommand(), a.activityCommand(), a.publisherCommand(), a.extensionCommand(),
		a.policyCommand(),
		a.updateCommand(), a.bulkCommand(),
		a.jitCommand(), a.sshCommand(), a.sshProxyCommand(), a.sshCertCommand(), a.sshSessionCommand(),
	)
	root.AddCommand(a.protectionCommand(), a.scanCommand(), a.signaturesCommand(), a.alertCommand())
	for _, c := range extra {
		if c != nil {
			root.AddCommand(c)
		}
	}
	a.registerCompletions(root)
	return root
}

type app struct {
	version string
	now     func() time.Time
}

// session is where and how a command calls the API.
type session struct {
	Server string
	Token  string
	CAPEM  []byte
}

var errNotLoggedIn = errors.New(`not logged in: run "corral login --server URL --username NAME --password-stdin" or set CORRAL_SERVER and CORRAL_TOKEN`)

// resolveSession merges saved credentials with the environment. A saved
// token or CA is only used for the saved server, so CORRAL_SERVER never
// receives another server's token.
func (a *app) resolveSession() (session, error) {
	creds, _, err := LoadCredentials()
	if err != nil {
		return session{}, err
	}
	var s session
	envServer, envToken, envCA := os.Getenv(EnvServer), os.Getenv(EnvToken), os.Getenv(EnvCAFile)
	sameServer := creds != nil && (envServer == "" || sameURL(envServer, creds.Server))
	switch {
	case envServer != "":
		s.Server = envServer
	case creds != nil:
		s.Server = creds.Server
	}
	if s.Server == "" {
		return s, errNotLoggedIn
	}
	switch {
	case envToken != "":
		s.Token = envToken
	case sameServer && creds.Token != "":
		if !creds.ExpiresAt.IsZero() && !a.now().Before(creds.ExpiresAt) {
			return s, fmt.Errorf("your session on %s expired at %s: run \"corral login\" again", creds.Server, creds.ExpiresAt.UTC().Format(time.RFC3339))
		}
		s.Token = creds.Token
	default:
		return s, errNotLoggedIn
	}
	switch {
	case envCA != "":
		b, err := capped.ReadFile(envCA, client.MaxCABytes)
		if err != nil {
			return s, fmt.Errorf("%s: %w", EnvCAFile, err)
		}
		s.CAPEM = b
	case sameServer:
		s.CAPEM = []byte(creds.CAPEM)
	}
	return s, nil
}

func sameURL(a, b string) bool {
	ua, err1 := client.ParseServerURL(a)
	ub, err2 := client.ParseServerURL(b)
	return err1 == nil && err2 == nil && ua.String() == ub.String()
}

func (a *app) client(opts ...client.Option) (*client.Client, error) {
	s, err := a.resolveSession()
	if err != nil {
		return nil, err
	}
	return client.New(s.Server, append([]client.Option{client.WithCAPEM(s.CAPEM), client.WithToken(s.Token),
		client.WithUserAgent("corral-cli/" + a.version)}, opts...)...)
}

func ctxOf(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// readSecretLine reads one secret from r (the first line, without its line
// ending). It never echoes the secret.
func readSecretLine(r io.Reader, what string) (string, error) {
	br := bufio.NewReader(io.LimitReader(r, 4096))
	line, err := br.ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read %s from standard input: %w", what, err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("no %s on standard input", what)
	}
	return line, nil
}

// Output formats.
const (
	outTable = "table"
	outJSON  = "json"
)

func addOutputFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVarP(p, "output", "o", outTable, "output format: table or json")
}

func checkOutput(o string) error {
	if o != outTable && o != outJSON {
		return fmt.Errorf("invalid --output %q: must be table or json", o)
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// parseKeyValues parses "k=v" items (each item may hold several, comma
// separated, when commas is true).
func parseKeyValues(items []string, commas bool) (map[string]string, error) {
	out := map[string]string{}
	for _, it := range items {
		parts := []string{it}
		if commas {
			parts = strings.Split(it, ",")
		}
		for _, p := range parts {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			k, v, ok := strings.Cut(p, "=")
			k = strings.TrimSpace(k)
			if !ok || k == "" {
				return nil, fmt.Errorf("invalid tag %q: use KEY=VALUE", p)
			}
			out[k] = v
		}
	}
	return out, nil
}

func formatTags(tags map[string]string) string {
	if len(tags) == 0 {
		return "-"
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + tags[k]
	}
	return strings.Join(parts, ",")
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func validDuration(flag, v string) error {
	if v == "" {
		return nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Minute {
		return fmt.Errorf("invalid --%s %q: use a Go duration of at least 1m, such as 720h", flag, v)
	}
	return nil
}

func canonicalValue(flag, v string, allowed []string) (string, error) {
	if v == "" {
		return "", nil
	}
	for _, a := range allowed {
		if strings.EqualFold(a, v) {
			return a, nil
		}
	}
	return "", fmt.Errorf("invalid --%s %q: must be one of %s", flag, v, strings.Join(allowed, ", "))
}

var statuses = []string{wire.StatusConnected, wire.StatusDisconnected, wire.StatusExpired}
var results = []string{wire.ResultSucceeded, wire.ResultFailed, wire.ResultDenied}

func requireFlag(name, v string) error {
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("--%s is required", name)
	}
	return nil
}
