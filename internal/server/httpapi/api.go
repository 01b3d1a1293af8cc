package httpapi

import (
	"log/slog"
	"net/http"
	"runtime"
	"time"

	"github.com/corralhq/corral/internal/server/access"
	"github.com/corralhq/corral/internal/server/activity"
	"github.com/corralhq/corral/internal/server/admission"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/extensions"
	"github.com/corralhq/corral/internal/server/identity"
	"github.com/corralhq/corral/internal/server/inventory"
	"github.com/corralhq/corral/internal/server/onboarding"
	"github.com/corralhq/corral/internal/server/pki"
	policyctx "github.com/corralhq/corral/internal/server/policy"
	"github.com/corralhq/corral/internal/server/protection"
	"github.com/corralhq/corral/internal/server/push"
	"github.com/corralhq/corral/internal/server/relay"
	"github.com/corralhq/corral/internal/server/roles"
	"github.com/corralhq/corral/internal/server/updates"
	"github.com/corralhq/corral/internal/store"
)

// Settings are the tunables of the API, filled from the server config.
type Settings struct {
	Version           string
	HeartbeatInterval time.Duration // told to agents in the stream's welcome
	MaxBodyBytes      int64
	Limits            Limits
}

// Limits bound what callers can make the API spend. Zero fields take the
// defaults of DefaultLimits.
type Limits struct {
	// SignInFailuresPerAccount failed sign-ins of one account from one
	// source address lock that account for that source for SignInLockout
	// (after the last failure); SignInFailuresPerSource failed sign-ins
	// from one address, across accounts, lock every sign-in from it.
	SignInFailuresPerAccount int
	SignInFailuresPerSource  int
	SignInLockout            time.Duration
	// PasswordHashes bounds concurrent argon2id checks (19 MiB each):
	// Slots at once, Queue waiting, PerKey per source address.
	PasswordHashes admission.GateLimits
	// DeviceCodesPerSource device-code requests per source address per
	// minute; MaxPendingDeviceCodes pending codes in all.
	DeviceCodesPerSource  int
	MaxPendingDeviceCodes int
	// StreamsPerSecond and StreamBurst admit new push channels,
	// ConnectsPerSecond and ConnectBurst onboardings (0: no limit).
	StreamsPerSecond, StreamBurst   int
	ConnectsPerSecond, ConnectBurst int
}

// DefaultLimits are the production defaults.
func DefaultLimits() Limits {
	n := runtime.NumCPU()
	return Limits{
		SignInFailuresPerAccount: 10, SignInFailuresPerSource: 50, SignInLockout: 15 * time.Minute,
		PasswordHashes:       admission.GateLimits{Slots: n, Queue: 4 * n, PerKey: 4, MaxWait: 5 * time.Second},
		DeviceCodesPerSource: 10, MaxPendingDeviceCodes: 1000,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	set(&l.SignInFailuresPerAccount, d.SignInFailuresPerAccount)
	set(&l.SignInFailuresPerSource, d.SignInFailuresPerSource)
	set(&l.PasswordHashes.Slots, d.PasswordHashes.Slots)
	set(&l.PasswordHashes.Queue, d.PasswordHashes.Queue)
	set(&l.PasswordHashes.PerKey, d.PasswordHashes.PerKey)
	set(&l.DeviceCodesPerSource, d.DeviceCodesPerSource)
	set(&l.MaxPendingDeviceCodes, d.MaxPendingDeviceCodes)
	if l.SignInLockout == 0 {
		l.SignInLockout = d.SignInLockout
	}
	if l.PasswordHashes.MaxWait == 0 {
		l.PasswordHashes.MaxWait = d.PasswordHashes.MaxWait
	}
	return l
}

// HeartbeatSink receives agent heartbeats; the server batches them into the store.
type HeartbeatSink interface {
	Add(h store.Heartbeat)
}

// Deps are what the API needs from the rest of the server. All are
// required. The API reaches the store only through the contexts.
type Deps struct {
	CA  *pki.CA   // verifies machine client certificates
	Hub *push.Hub // streams held by this replica
	// Relay connects users' streams to tunnels the agents open.
	Relay      *relay.Relay
	Heartbeats HeartbeatSink
	// Capabilities assembles desired states and dispatches agent reports
	// to the contexts registered on it.
	Capabilities *capability.Registry
	// The contexts whose services the handlers call.
	Inventory  *inventory.Service
	Identity   *identity.Service
	Onboarding *onboarding.Service
	Roles      *roles.Service
	Activity   *activity.Service
	// Extensions is the extension context (publishers, packages, catalogs,
	// machine extensions, run commands).
	Extensions *extensions.Service
	// Protection is the endpoint-protection context.
	Protection *protection.Service
	Clock      func() time.Time
	Logger     *slog.Logger
	Metrics    *Metrics
	Settings   Settings
	// StoreHealth says whether the store can write (the server's write
	// probe feeds it); mutating calls and sign-ins are refused while it
	// cannot. Nil: always healthy.
	StoreHealth *StoreHealth

	// Updates is the update-management context.
	Updates *updates.Service

	// Access is the secure-access context (JIT, SSH certificates and
	// sessions).
	Access *access.Service

	// Policy is the policy context (definitions, assignments, exemptions,
	// compliance, remediations).
	Policy *policyctx.Service
}

// API serves the REST API, the OAuth2 endpoints and the agent protocol.
type API struct {
	Deps
	routes []Route
	mux    *http.ServeMux
	// throttle counts failed sign-ins per account and source address,
	// sourceThrottle per source address across accounts.
	throttle       *signInThrottle
	sourceThrottle *signInThrottle
	// Hashes admits password hashing (exported for tests that hold its
	// slots to prove the refusal).
	Hashes      *admission.Gate
	deviceCodes *admission.Window
	denials     *anonymousDenials
	// streamAdmit and connectAdmit pace new push channels and onboardings
	// (reconnect storms).
	streamAdmit, connectAdmit *admission.Rate
	// openapi is the API description served at /api/v1/openapi.json;
	// openapiErr says why there is none (a route the generator cannot
	// describe: the route tests fail on it).
	openapi    []byte
	openapiErr error
}

// New builds the API and its routing table.
func New(d Deps) *API {
	d.Settings.Limits = d.Settings.Limits.withDefaults()
	l := d.Settings.Limits
	a := &API{Deps: d,
		throttle:       newSignInThrottle(l.SignInFailuresPerAccount, l.SignInLockout),
		sourceThrottle: newSignInThrottle(l.SignInFailuresPerSource, l.SignInLockout),
		Hashes:         admission.NewGate(l.PasswordHashes),
		deviceCodes:    admission.NewWindow(l.DeviceCodesPerSource, time.Minute, 0),
		denials:        newAnonymousDenials(time.Minute, 10_000),
		streamAdmit:    admission.NewRate(float64(l.StreamsPerSecond), l.StreamBurst),
		connectAdmit:   admission.NewRate(float64(l.ConnectsPerSecond), l.ConnectBurst),
	}
	a.routes = a.buildRoutes()
	a.openapi, a.openapiErr = a.OpenAPIJSON()
	if a.openapiErr != nil && d.Logger != nil {
		d.Logger.Error("the OpenAPI document cannot be built", "err", a.openapiErr)
	}
	a.mux = http.NewServeMux()
	for _, rt := range a.routes {
		a.mux.Handle(rt.Method+" "+rt.Pattern, a.wrap(rt))
	}
	a.mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errNotFound("no route for %s %s", r.Method, r.URL.Path))
	})
	a.mux.HandleFunc("/agent/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, errNotFound("no route for %s %s", r.Method, r.URL.Path))
	})
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// Routes returns the routing table (for the OpenAPI document and tests).
func (a *API) Routes() []Route { return a.routes }

func (a *API) now() time.Time { return a.Clock().UTC() }
