package onboarding

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authn"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// DeviceCodeRequest is an agent's request to be approved interactively.
type DeviceCodeRequest struct {
	Subscription, ResourceGroup, MachineName string
	SourceIP                                 string
	// VerificationURI is where the operator approves the code.
	VerificationURI string
	// MaxPending refuses a new code while this many wait for approval (0:
	// no limit): anonymous callers cannot fill the approval list or the
	// store.
	MaxPending int
}

// RequestDeviceCode starts a device-code onboarding (RFC 8628 §3.2): the
// device code is returned once, only its hash is stored.
func (s *Service) RequestDeviceCode(ctx context.Context, req DeviceCodeRequest) (wire.DeviceCodeResponse, error) {
	for _, v := range []struct{ kind, target, val string }{
		{"subscription", "subscription_id", req.Subscription}, {"resource group", "resource_group", req.ResourceGroup},
	} {
		if err := checkName(v.kind, v.target, v.val); err != nil {
			return wire.DeviceCodeResponse{}, err
		}
	}
	if req.MachineName != "" {
		if err := checkName("machine", "machine_name", req.MachineName); err != nil {
			return wire.DeviceCodeResponse{}, err
		}
	}
	if req.MaxPending > 0 {
		n, err := s.store.CountPendingDeviceCodes(ctx, s.now())
		if err != nil {
			return wire.DeviceCodeResponse{}, err
		}
		if n >= req.MaxPending {
			return wire.DeviceCodeResponse{}, refusal.TooMany(time.Minute,
				"%d device codes are already waiting for approval; approve or deny them, or wait for them to expire", n).WithCode("slow_down")
		}
	}
	deviceCode, err := authn.NewSecret("crl_dc_")
	if err != nil {
		return wire.DeviceCodeResponse{}, err
	}
	userCode, err := authn.NewUserCode()
	if err != nil {
		return wire.DeviceCodeResponse{}, err
	}
	now := s.now()
	d := store.DeviceCode{UserCode: userCode, DeviceCodeHash: authn.HashSecret(deviceCode), Subscription: req.Subscription,
		ResourceGroup: req.ResourceGroup, MachineName: req.MachineName, SourceIP: req.SourceIP,
		ExpiresAt: now.Add(s.settings.DeviceCodeTTL), CreatedAt: now}
	if err := s.store.CreateDeviceCode(ctx, d); err != nil {
		return wire.DeviceCodeResponse{}, err
	}
	return wire.DeviceCodeResponse{DeviceCode: deviceCode, UserCode: userCode, VerificationURI: req.VerificationURI,
		ExpiresIn: int(s.settings.DeviceCodeTTL.Seconds()), Interval: 2}, nil
}

// PendingDeviceCodes lists the codes still waiting for approval; the caller
// keeps those it may approve (their Scope).
func (s *Service) PendingDeviceCodes(ctx context.Context) ([]wire.PendingDeviceCode, error) {
	ds, err := s.store.ListPendingDeviceCodes(ctx, s.now())
	if err != nil {
		return nil, err
	}
	out := make([]wire.PendingDeviceCode, 0, len(ds))
	for _, d := range ds {
		out = append(out, wire.PendingDeviceCode{UserCode: d.UserCode, Subscription: d.Subscription,
			ResourceGroup: d.ResourceGroup, MachineName: d.MachineName, SourceIP: d.SourceIP, ExpiresAt: d.ExpiresAt})
	}
	return out, nil
}

// normalizeUserCode accepts "abcd-efgh", "ABCDEFGH" and " ABCD-EFGH ".
func normalizeUserCode(code string) string {
	code = strings.ToUpper(strings.TrimSpace(code))
	if len(code) == 8 && !strings.Contains(code, "-") {
		code = code[:4] + "-" + code[4:]
	}
	return code
}

// ApproveDeviceCode approves a pending code as approver, after authorize
// accepted the code's resource group.
func (s *Service) ApproveDeviceCode(ctx context.Context, userCode string, approver authn.Principal, authorize authz.ScopeCheck) (wire.DeviceCodeApproval, error) {
	code := normalizeUserCode(userCode)
	d, err := s.store.GetDeviceCodeByUserCode(ctx, code)
	if err != nil {
		return wire.DeviceCodeApproval{}, notFoundAs(err, "device code %q was not found", code)
	}
	if err := authorize(resource.ResourceGroup(d.Subscription, d.ResourceGroup)); err != nil {
		return wire.DeviceCodeApproval{}, err
	}
	now := s.now()
	if d.ApprovedBy != "" || !now.Before(d.ExpiresAt) {
		return wire.DeviceCodeApproval{}, refusal.Conflict("device code %q was already approved or has expired", code)
	}
	if err := s.store.ApproveDeviceCode(ctx, code, approver.ID, now); err != nil {
		return wire.DeviceCodeApproval{}, notFoundAs(err, "device code %q is no longer pending", code)
	}
	return wire.DeviceCodeApproval{UserCode: code, Subscription: d.Subscription, ResourceGroup: d.ResourceGroup,
		MachineName: d.MachineName, ApprovedBy: approver.Name}, nil
}

// RedeemDeviceCode turns an approved device code into an access token that
// acts as the approver but may only onboard into the code's resource
// group (the OAuth2 device_code grant). A code is redeemed once.
func (s *Service) RedeemDeviceCode(ctx context.Context, deviceCode string) (wire.TokenResponse, authn.Principal, error) {
	grant := func(code, msg string) error { return refusal.Invalid("", "%s", msg).WithCode(code) }
	if deviceCode == "" {
		return wire.TokenResponse{}, authn.Principal{}, grant("invalid_request", "device_code is required")
	}
	d, err := s.store.GetDeviceCodeByHash(ctx, authn.HashSecret(deviceCode))
	if errors.Is(err, store.ErrNotFound) {
		return wire.TokenResponse{}, authn.Principal{}, grant(wire.CodeInvalidGrant, "unknown device code")
	}
	if err != nil {
		return wire.TokenResponse{}, authn.Principal{}, err
	}
	switch {
	case d.Consumed:
		return wire.TokenResponse{}, authn.Principal{}, grant(wire.CodeInvalidGrant, "the device code was already used")
	case !s.now().Before(d.ExpiresAt):
		return wire.TokenResponse{}, authn.Principal{}, grant(wire.CodeExpiredToken, "the device code expired before it was approved")
	case d.ApprovedBy == "":
		return wire.TokenResponse{}, authn.Principal{}, grant(wire.CodeAuthorizationPending, "waiting for an operator to approve the code")
	}
	if err := s.store.ConsumeDeviceCode(ctx, d.DeviceCodeHash); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return wire.TokenResponse{}, authn.Principal{}, grant(wire.CodeInvalidGrant, "the device code was already used")
		}
		return wire.TokenResponse{}, authn.Principal{}, err
	}
	restriction := OnboardRestriction(resource.ResourceGroup(d.Subscription, d.ResourceGroup))
	tr, p, err := s.principals.IssueAs(ctx, d.ApprovedBy, restriction, deviceTokenTTL)
	if _, refused := refusal.As(err); refused {
		return wire.TokenResponse{}, authn.Principal{}, grant(wire.CodeInvalidGrant, "the approver no longer exists")
	}
	return tr, p, err
}
