package httpapi

import (
	"net/http"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/onboarding"
	"github.com/corralhq/corral/internal/wire"
)

// agentBodyLimit caps agent request bodies (reports carry inventory).
const agentBodyLimit = 4 << 20

func (a *API) postConnect(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if err := a.admit(a.connectAdmit, "onboarding", "machines onboarding"); err != nil {
		return err
	}
	var req wire.ConnectRequest
	if err := decodeJSON(w, r, agentBodyLimit, &req); err != nil {
		return err
	}
	resp, err := a.Onboarding.Connect(r.Context(), req, c.principal(), func(scope resource.ID) error {
		setAuditScope(r, scope.Child(resource.Machines, req.Name).String())
		if !onboarding.RestrictionAllows(c.Restriction, scope) {
			return errForbidden("this device-code token was approved for %s, not for %s", onboarding.RestrictedScope(c.Restriction), scope)
		}
		return a.authorize(r.Context(), c, authz.ActMachinesOnboard, scope.String())
	})
	if err != nil {
		return err
	}
	a.Metrics.onboarded.Inc()
	writeJSON(w, http.StatusCreated, resp)
	return nil
}

func (a *API) getDesired(w http.ResponseWriter, r *http.Request, c *Caller) error {
	ds, err := a.Capabilities.DesiredState(r.Context(), *c.Machine)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ds)
	return nil
}

func (a *API) postReports(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var batch wire.ReportBatch
	// A NUL is left to each report's handler (run output may hold one and
	// is cleaned; properties refuse it): one bad report never refuses its
	// batch.
	if err := decodeJSONBody(w, r, agentBodyLimit, &batch, false); err != nil {
		return err
	}
	ack, err := a.Capabilities.ApplyReports(r.Context(), *c.Machine, batch.Reports, a.now())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, ack)
	return nil
}

func (a *API) postRenew(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var req wire.RenewRequest
	if err := decodeJSON(w, r, agentBodyLimit, &req); err != nil {
		return err
	}
	resp, err := a.Onboarding.Renew(r.Context(), c.ID, req)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, resp)
	return nil
}

func (a *API) deleteSelf(w http.ResponseWriter, r *http.Request, c *Caller) error {
	if err := a.Inventory.Disconnect(r.Context(), c.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
