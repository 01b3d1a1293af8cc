package httpapi

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/corralhq/corral/internal/server/activity"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/extensions"
	"github.com/corralhq/corral/internal/server/identity"
	"github.com/corralhq/corral/internal/server/inventory"
	"github.com/corralhq/corral/internal/server/onboarding"
	"github.com/corralhq/corral/internal/server/pki"
	"github.com/corralhq/corral/internal/server/push"
	"github.com/corralhq/corral/internal/server/roles"
	"github.com/corralhq/corral/internal/server/updates"
	"github.com/corralhq/corral/internal/store"
)

// Settings are the tunables of the API, filled from the server config.
type Settings struct {
	Version           string
	HeartbeatInterval time.Duration // told to agents in the stream's welcome
	MaxBodyBytes      int64
}

// HeartbeatSink receives agent heartbeats; the server batches them into the store.
type HeartbeatSink interface {
	Add(h store.Heartbeat)
}

// Deps are what the API needs from the rest of the server. All are
// required. The API reaches the store only through the contexts.
type Deps struct {
	CA         *pki.CA   // verifies machine client certificates
	Hub        *push.Hub // streams held by this replica
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
	Clock      func() time.Time
	Logger     *slog.Logger
	Metrics    *Metrics
	Settings   Settings

	// Updates is the update-management context.
	Updates *updates.Service
}

// API serves the REST API, the OAuth2 endpoints and the agent protocol.
type API struct {
	Deps
	routes   []Route
	mux      *http.ServeMux
	throttle *signInThrottle
	openapi  []byte
}

// New builds the API and its routing table.
func New(d Deps) *API {
	a := &API{Deps: d, throttle: newSignInThrottle(10, 15*time.Minute)}
	a.routes = a.buildRoutes()
	a.openapi, _ = json.Marshal(a.OpenAPI())
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
