package archtest

// The server's bounded contexts. Each is a service over a narrow store
// interface; none imports another. Where one needs another it declares an
// interface that the server assembly satisfies with the other context
// (onboarding.Principals, roles.Principals).
var contexts = []string{
	"internal/server/access",
	"internal/server/activity",
	"internal/server/extensions",
	"internal/server/identity",
	"internal/server/inventory",
	"internal/server/onboarding",
	"internal/server/policy",
	"internal/server/protection",
	"internal/server/roles",
	"internal/server/updates",
}

// kernel is what every context may import: the wire contract, resource ids,
// the store contract (not its implementations), the shared refusal type,
// the seam, the push notifier, the credential and authorization primitives
// and the batching of concurrent calls.
var kernel = []string{
	"internal/wire",
	"internal/resource",
	"internal/store",
	"internal/server/refusal",
	"internal/server/capability",
	"internal/server/push",
	"internal/server/authn",
	"internal/server/authz",
	"internal/batch",
}

// Rules are the import rules of the repository, as a table of allowed (and
// denied) edges.
var Rules = []Rule{
	{
		Name: "a server context imports only the kernel (never httpapi, webui or another context)",
		From: contexts,
		// The extension context also needs the package format and sealing;
		// endpoint protection builds signed signature sets; updates the
		// schedule logic (cron, windows, waves); the activity context seals
		// its hash chain with the encoding clients verify; the access
		// context signs SSH certificates with the user CA; the policy
		// context parses and evaluates definitions with the policy language.
		Allow: append(append([]string{}, kernel...), "internal/extpkg", "internal/sealing", "internal/scan", "internal/scan/sigset", "internal/schedule",
			"internal/auditchain", "internal/server/sshca", "internal/policy", "internal/policy/builtin", "internal/policy/guest"),
	},
	{
		Name:  "the seam and the shared refusal type import no context",
		From:  []string{"internal/server/capability", "internal/server/refusal", "internal/server/push", "internal/server/authn", "internal/server/authz"},
		Allow: []string{"internal/wire", "internal/resource", "internal/store", "internal/server/refusal", "internal/server/push", "internal/batch"},
	},
	{
		Name: "the store imports no server package",
		From: []string{"internal/store/..."},
		Deny: []string{"internal/server/..."},
	},
	{
		Name:  "leaf packages import nothing of ours",
		From:  []string{"internal/wire", "internal/resource", "internal/capped", "internal/batch"},
		Allow: []string{},
	},
	{
		Name:  "the activity chain encoding depends on the wire contract only",
		From:  []string{"internal/auditchain"},
		Allow: []string{"internal/wire"},
	},
	{
		Name:  "the web UI is a client of the API: it reaches no context, store or handler",
		From:  []string{"internal/server/webui"},
		Allow: []string{"internal/wire", "internal/resource", "internal/client", "internal/extpkg"},
	},
	{
		Name:   "only the server assembly and the API handlers import the contexts",
		From:   []string{"..."},
		Except: append([]string{"internal/server", "internal/server/httpapi"}, contexts...),
		Deny:   contexts,
	},
}

// AncestorContracts are the ancestor packages that packages below them may
// import, with why: each only declares what its children implement or
// extend.
var AncestorContracts = map[string]string{
	"internal/store":    "the persistence contract that sqlstore, sqlite, postgres, storeopen and storetest implement or check",
	"internal/testutil": "the test server that testutil/agenttest and testutil/browser build on",
	"internal/scan":     "the scanning engine that scan/realtime (on access), scan/quarantine and scan/sigset (signed signature sets) drive",
	"internal/policy":   "the policy language that policy/guest (machine configurations) and policy/builtin (built-in definitions) extend",
}
