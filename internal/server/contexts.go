package server

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"time"

	"github.com/corralhq/corral/internal/server/access"
	"github.com/corralhq/corral/internal/server/activity"
	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/server/capability"
	"github.com/corralhq/corral/internal/server/extensions"
	"github.com/corralhq/corral/internal/server/identity"
	"github.com/corralhq/corral/internal/server/inventory"
	"github.com/corralhq/corral/internal/server/onboarding"
	"github.com/corralhq/corral/internal/server/pki"
	policyctx "github.com/corralhq/corral/internal/server/policy"
	"github.com/corralhq/corral/internal/server/protection"
	"github.com/corralhq/corral/internal/server/push"
	"github.com/corralhq/corral/internal/server/roles"
	"github.com/corralhq/corral/internal/server/sshca"
	"github.com/corralhq/corral/internal/server/updates"
	"github.com/corralhq/corral/internal/store"
)

// agentSupportWindow is how long after its release an agent version is supported.
const agentSupportWindow = 365 * 24 * time.Hour

// contexts are the bounded contexts of the control plane, each a service
// over its narrow view of the one store. Contexts do not import each other:
// where one needs another (onboarding issues tokens through identity, roles
// resolves principals through identity) it declares an interface and is
// given the other here.
type contexts struct {
	inventory  *inventory.Service
	identity   *identity.Service
	onboarding *onboarding.Service
	roles      *roles.Service
	activity   *activity.Service
	extensions *extensions.Service
	protection *protection.Service
	// updates is update management (assessments, runs, schedules).
	updates *updates.Service
	access  *access.Service
	// policy is policy and machine configuration (definitions,
	// assignments, exemptions, compliance, remediations).
	policy *policyctx.Service

	// seam assembles desired states and dispatches agent reports to the
	// contexts registered on it.
	seam *capability.Registry
	// syncer bumps generations and pushes syncs for any context.
	syncer *capability.Syncer
}

// keys are the signing keys the contexts need.
type keys struct {
	token     ed25519.PrivateKey // access tokens
	extension ed25519.PrivateKey // the first-party extension publisher
	// signatures signs endpoint protection's signature sets.
	signatures ed25519.PrivateKey
	sshCA      *sshca.CA // signs SSH user certificates
}

func newContexts(ctx context.Context, cfg Config, st store.Store, ca *pki.CA, k keys, n push.Notifier) (*contexts, error) {
	log := func(component string) *slog.Logger { return cfg.Logger.With("component", component) }
	c := &contexts{}
	c.inventory = inventory.New(st, n, cfg.Clock, log("inventory"), agentSupportWindow)
	c.identity = identity.New(st, authn.NewTokenIssuer(k.token, "corral"), cfg.Clock, log("identity"),
		identity.Settings{ServiceTokenTTL: cfg.ServiceTokenTTL, UserTokenTTL: cfg.UserTokenTTL})
	c.onboarding = onboarding.New(st, ca, c.identity, cfg.Clock, log("onboarding"), onboarding.Settings{
		CertValidity: cfg.CertValidity, HeartbeatInterval: cfg.HeartbeatInterval, DeviceCodeTTL: cfg.DeviceCodeTTL,
		MachinesPerPrincipal: off(cfg.Limits.MachinesPerPrincipal), OnboardingsPerMinute: off(cfg.Limits.OnboardingsPerMinute)})
	c.roles = roles.New(st, c.identity, cfg.Clock, log("roles"))
	c.activity = activity.New(st, cfg.Clock, log("activity"))
	c.extensions = extensions.New(st, n, cfg.Clock, log("extensions"))
	c.extensions.LogOutcomes(c.activity)
	c.inventory.LogOutcomes(c.activity)
	if err := c.extensions.EnsureFirstParty(ctx, k.extension); err != nil {
		return nil, fmt.Errorf("first-party extensions: %w", err)
	}
	c.syncer = capability.NewSyncer(st, n)
	c.protection = protection.New(st, protectionExtensions{c.extensions}, c.syncer, k.signatures, cfg.Clock, log("protection"))
	c.protection.LogOutcomes(c.activity)
	c.updates = updates.New(st, c.extensions, c.syncer, cfg.Clock, log("updates"),
		updates.Settings{AssessmentInterval: cfg.UpdateAssessmentInterval, Tick: cfg.UpdateTick})
	c.updates.LogOutcomes(c.activity)
	c.access = access.New(st, c.syncer, k.sshCA, cfg.Clock, log("access"))
	c.access.LogOutcomes(c.activity)
	pol, err := policyctx.New(st, policyResources{inv: c.inventory, ext: c.extensions}, c.syncer, cfg.Clock, log("policy"))
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	c.policy = pol
	c.policy.LogOutcomes(c.activity)
	c.inventory.GatePolicy(c.policy)
	c.onboarding.GatePolicy(c.policy)

	// The seam. Every context that adds to a machine's desired state or
	// takes agent reports registers here, in this order (contributors and
	// handlers of one report kind run in it). Adding a capability is one
	// more context on this list.
	c.seam = capability.NewRegistry(log("capabilities"), st)
	c.seam.Register(
		c.inventory,  // resource id, tags; properties, agentConfig and applied reports
		c.extensions, // extensions, publishers, run commands; extension and runCommand reports; applied
		c.protection, // signature key and set, scans, restores, schedule; protection reports; properties (joins protected scopes)
		c.updates,    // the updates slice of enrolled machines; update assessment, deployment and reboot reports
		c.access,     // JIT policy and grants, SSH user CA and principals; access reports
		c.policy,     // guest configuration assignments, rollbacks, evaluation requests; compliance, remediation, rollback and properties reports
	)
	return c, nil
}
