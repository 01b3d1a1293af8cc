// Package onboarding is the control plane's onboarding context: a machine
// joins by sending a certificate request with the credential of a principal
// allowed to onboard into a resource group; the context signs the request
// and creates the machine resource. It also runs the device-code flow (RFC
// 8628) that lets an operator approve an onboarding interactively, and
// renews machine certificates.
//
// Connect signs first (in memory, with the CA key) and then creates the
// machine in one store transaction: a machine exists only with the serial
// of the one certificate it was given, and a failed create leaves nothing
// behind (the signed certificate is discarded). Authorization stays with
// the caller: Connect and ApproveDeviceCode call an authorize function with
// the scope once it is known, before they change anything.
//
// Refusals the caller can act on are *refusal.Error; any other error is
// internal. The Service is safe for concurrent use; it holds no state of
// its own.
package onboarding

import (
	"context"
	"errors"
	"log/slog"
	"math/big"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Store is what the context needs from persistence.
type Store interface {
	GetResourceGroup(ctx context.Context, sub, name string) (store.ResourceGroup, error)
	CreateMachine(ctx context.Context, m store.Machine, replaceExpired bool) error
	UpdateMachineCert(ctx context.Context, id, serial string, notAfter, at time.Time) error

	CreateDeviceCode(ctx context.Context, d store.DeviceCode) error
	GetDeviceCodeByUserCode(ctx context.Context, userCode string) (store.DeviceCode, error)
	GetDeviceCodeByHash(ctx context.Context, hash string) (store.DeviceCode, error)
	ListPendingDeviceCodes(ctx context.Context, now time.Time) ([]store.DeviceCode, error)
	CountPendingDeviceCodes(ctx context.Context, now time.Time) (int, error)
	CountMachinesCreatedBy(ctx context.Context, principalID string, since time.Time) (int, error)
	ApproveDeviceCode(ctx context.Context, userCode, approvedBy string, at time.Time) error
	ConsumeDeviceCode(ctx context.Context, hash string) error
}

// Signer signs machine certificate requests (pki.CA).
type Signer interface {
	SignMachineCSR(csrPEM []byte, machineID string, now time.Time, validity time.Duration) (certPEM []byte, serial *big.Int, notAfter time.Time, err error)
	CertPEM() []byte
}

// Principals issues access tokens acting as an existing principal; the
// identity context implements it.
type Principals interface {
	IssueAs(ctx context.Context, principalID, restriction string, ttl time.Duration) (wire.TokenResponse, authn.Principal, error)
}

// Settings are the onboarding tunables from the server config.
type Settings struct {
	CertValidity      time.Duration // machine client certificates
	HeartbeatInterval time.Duration // told to the agent at connect
	DeviceCodeTTL     time.Duration
	// MachinesPerPrincipal is the most machines one principal may have
	// onboarded (that still exist); 0: no limit.
	MachinesPerPrincipal int
	// OnboardingsPerMinute is the most machines one principal may onboard
	// in a minute; 0: no limit. Both are counted in the store, so they hold
	// across replicas.
	OnboardingsPerMinute int
}

// deviceTokenTTL is how long a device-code token may be used to onboard.
const deviceTokenTTL = 10 * time.Minute

// maxAgentVersionLen caps the agent version a machine may record.
const maxAgentVersionLen = 64

// Service implements the onboarding context.
type Service struct {
	store      Store
	ca         Signer
	principals Principals
	clock      func() time.Time
	log        *slog.Logger
	settings   Settings
	// gate is the policy context's say on a machine being created (nil:
	// none).
	gate PolicyGate
}

// PolicyGate is what the context asks the policy context about a machine
// being created: the tags it gets (append and modify assignments may add
// some) or the refusal of a deny assignment.
type PolicyGate interface {
	AdmitMachine(ctx context.Context, m store.Machine) (map[string]string, error)
}

// GatePolicy makes onboarding pass the policy gate. Call it at assembly.
func (s *Service) GatePolicy(g PolicyGate) { s.gate = g }

// New returns a Service. clock is the injected time source.
func New(st Store, ca Signer, principals Principals, clock func() time.Time, log *slog.Logger, settings Settings) *Service {
	return &Service{store: st, ca: ca, principals: principals, clock: clock, log: log, settings: settings}
}

func (s *Service) now() time.Time { return s.clock().UTC() }

// OnboardRestriction is the restriction of a device-code token: it may
// onboard into scope and do nothing else.
func OnboardRestriction(scope resource.ID) string { return "onboard:" + scope.String() }

// RestrictionAllows reports whether a token with restriction may onboard
// into scope: an unrestricted token may (its roles decide), a device-code
// token only into the resource group it was approved for.
func RestrictionAllows(restriction string, scope resource.ID) bool {
	return restriction == "" || strings.EqualFold(restriction, OnboardRestriction(scope))
}

// RestrictedScope is the scope a device-code restriction allows.
func RestrictedScope(restriction string) string { return strings.TrimPrefix(restriction, "onboard:") }

func checkName(kind, target, name string) error {
	if err := resource.CheckName(kind, name); err != nil {
		return refusal.Invalid(target, "%v", err)
	}
	return nil
}

func notFoundAs(err error, format string, args ...any) error {
	if errors.Is(err, store.ErrNotFound) {
		return refusal.NotFound(format, args...)
	}
	return err
}

// Connect onboards a machine: it checks the request, calls authorize with
// the resource group's scope, checks the caller's quota and rate, signs the
// CSR and creates the machine (replacing an Expired machine of the same
// name). by is the caller.
func (s *Service) Connect(ctx context.Context, req wire.ConnectRequest, by authn.Principal, authorize authz.ScopeCheck) (wire.ConnectResponse, error) {
	if req.ProtocolVersion < 1 || req.ProtocolVersion > wire.ProtocolVersion {
		return wire.ConnectResponse{}, refusal.Invalid("protocolVersion", "protocol version %d is not supported by this server (it speaks 1..%d)",
			req.ProtocolVersion, wire.ProtocolVersion).WithCode(wire.CodeUnsupportedProtocol)
	}
	for _, v := range []struct{ kind, target, val string }{
		{"subscription", "subscriptionId", req.SubscriptionID}, {"resource group", "resourceGroup", req.ResourceGroup}, {"machine", "name", req.Name},
	} {
		if err := checkName(v.kind, v.target, v.val); err != nil {
			return wire.ConnectResponse{}, err
		}
	}
	if err := resource.CheckTags(req.Tags); err != nil {
		return wire.ConnectResponse{}, refusal.Invalid("tags", "%v", err)
	}
	if err := authorize(resource.ResourceGroup(req.SubscriptionID, req.ResourceGroup)); err != nil {
		return wire.ConnectResponse{}, err
	}
	group, err := s.store.GetResourceGroup(ctx, req.SubscriptionID, req.ResourceGroup)
	if err != nil {
		return wire.ConnectResponse{}, notFoundAs(err, "resource group %q was not found in subscription %q", req.ResourceGroup, req.SubscriptionID)
	}
	props, err := wire.EncodeProperties(req.Properties)
	if err != nil {
		return wire.ConnectResponse{}, refusal.Invalid("properties."+wire.FieldOf(err), "%v", err)
	}
	cfg, err := wire.EncodeAgentConfig(req.AgentConfig)
	if err != nil {
		return wire.ConnectResponse{}, refusal.Invalid("agentConfig."+wire.FieldOf(err), "%v", err)
	}
	if err := s.checkQuota(ctx, by); err != nil {
		return wire.ConnectResponse{}, err
	}
	if len(req.SealingKey) != 0 && len(req.SealingKey) != 32 {
		return wire.ConnectResponse{}, refusal.Invalid("sealingKey", "sealingKey must be a 32-byte X25519 public key")
	}
	tags := req.Tags
	if s.gate != nil {
		// The machine as it would be: deny refuses it before anything is
		// signed or stored; append and modify add their tags.
		cand := store.Machine{Subscription: group.Subscription, ResourceGroup: group.Name, Name: req.Name, Tags: req.Tags,
			Status: wire.StatusConnected, AgentVersion: wire.CleanReported(req.AgentVersion, maxAgentVersionLen),
			Environment: req.Properties.Environment, OSName: strings.ToLower(req.Properties.OSName), Properties: props, AgentConfig: cfg}
		if tags, err = s.gate.AdmitMachine(ctx, cand); err != nil {
			return wire.ConnectResponse{}, err
		}
	}
	now := s.now()
	id := uuid.NewString()
	certPEM, serial, notAfter, err := s.ca.SignMachineCSR([]byte(req.CSR), id, now, s.settings.CertValidity)
	if err != nil {
		return wire.ConnectResponse{}, refusal.Invalid("csr", "the certificate request is not valid: %v", err)
	}
	m := store.Machine{
		// The stored casing of the parents: the resource id the agent keeps
		// is the one every API answer uses.
		ID: id, Subscription: group.Subscription, ResourceGroup: group.Name, Name: req.Name, Tags: req.Tags,
		Status: wire.StatusConnected, LastHeartbeat: now, AgentVersion: wire.CleanReported(req.AgentVersion, maxAgentVersionLen),
		Environment: req.Properties.Environment, OSName: strings.ToLower(req.Properties.OSName), Properties: props, AgentConfig: cfg,
		CertSerial: serial.String(), CertNotAfter: notAfter, Generation: 1, SealingKey: req.SealingKey,
		CreatedAt: now, CreatedBy: by.Name, CreatedByID: by.ID, UpdatedAt: now,
	}
	m.Tags = tags
	if err := s.store.CreateMachine(ctx, m, true); err != nil {
		switch {
		case errors.Is(err, store.ErrConflict):
			return wire.ConnectResponse{}, refusal.Conflict("a machine named %q already exists in resource group %q; delete it or choose another name", req.Name, req.ResourceGroup)
		case errors.Is(err, store.ErrNotFound):
			return wire.ConnectResponse{}, refusal.NotFound("resource group %q was not found in subscription %q", req.ResourceGroup, req.SubscriptionID)
		}
		return wire.ConnectResponse{}, err
	}
	s.log.InfoContext(ctx, "machine onboarded", "machine", id, "resource", m.ResourceID().String())
	return wire.ConnectResponse{
		ResourceID: m.ResourceID().String(), MachineID: id, Certificate: string(certPEM),
		CACert: string(s.ca.CertPEM()), HeartbeatInterval: wire.Duration(s.settings.HeartbeatInterval),
	}, nil
}

// checkQuota refuses an onboarding over the caller's machine quota or rate.
func (s *Service) checkQuota(ctx context.Context, by authn.Principal) error {
	if q := s.settings.MachinesPerPrincipal; q > 0 {
		n, err := s.store.CountMachinesCreatedBy(ctx, by.ID, time.Time{})
		if err != nil {
			return err
		}
		if n >= q {
			return refusal.Conflict("%s %q has onboarded %d machines, its quota; delete machines or ask an operator to raise --machines-per-principal",
				by.Type, by.Name, n).WithCode(wire.CodeQuotaExceeded)
		}
	}
	if r := s.settings.OnboardingsPerMinute; r > 0 {
		n, err := s.store.CountMachinesCreatedBy(ctx, by.ID, s.now().Add(-time.Minute))
		if err != nil {
			return err
		}
		if n >= r {
			return refusal.TooMany(time.Minute, "%s %q onboarded %d machines in the last minute, its rate; try again in a minute",
				by.Type, by.Name, n)
		}
	}
	return nil
}

// Renew signs a new client certificate for the machine; from now on only
// its serial is accepted.
func (s *Service) Renew(ctx context.Context, machineID string, req wire.RenewRequest) (wire.RenewResponse, error) {
	now := s.now()
	certPEM, serial, notAfter, err := s.ca.SignMachineCSR([]byte(req.CSR), machineID, now, s.settings.CertValidity)
	if err != nil {
		return wire.RenewResponse{}, refusal.Invalid("csr", "the certificate request is not valid: %v", err)
	}
	if err := s.store.UpdateMachineCert(ctx, machineID, serial.String(), notAfter, now); err != nil {
		return wire.RenewResponse{}, err
	}
	return wire.RenewResponse{Certificate: string(certPEM)}, nil
}
