package httpapi

import (
	"net/http"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/server/inventory"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func (a *API) listSubscriptions(w http.ResponseWriter, r *http.Request, c *Caller) error {
	subs, err := a.Inventory.ListSubscriptions(r.Context())
	if err != nil {
		return err
	}
	out := wire.List[wire.Subscription]{Value: []wire.Subscription{}}
	for _, s := range subs {
		ok, err := a.allowed(r.Context(), c, authz.ActSubscriptionsRead, resource.Subscription(s.Name).String())
		if err != nil {
			return err
		}
		if ok {
			out.Value = append(out.Value, s)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getSubscription(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	s, err := a.Inventory.GetSubscription(r.Context(), r.PathValue("sub"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, s)
	return nil
}

func (a *API) putSubscription(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.SubscriptionCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	s, err := a.Inventory.CreateSubscription(r.Context(), r.PathValue("sub"), body.DisplayName, c.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, s)
	return nil
}

// writePage writes one page of a list with the link to the next.
func writePage[T any](w http.ResponseWriter, r *http.Request, p store.PageOf[T]) {
	out := wire.List[T]{Value: p.Items}
	if out.Value == nil {
		out.Value = []T{}
	}
	if p.After != "" {
		out.NextLink = nextLink(r, p.After)
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) listResourceGroups(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	page, err := a.Inventory.ListResourceGroups(r.Context(), r.PathValue("sub"), p)
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

func (a *API) getResourceGroup(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	g, err := a.Inventory.GetResourceGroup(r.Context(), r.PathValue("sub"), r.PathValue("rg"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, g)
	return nil
}

func (a *API) putResourceGroup(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.ResourceGroupCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	g, err := a.Inventory.CreateResourceGroup(r.Context(), r.PathValue("sub"), r.PathValue("rg"), body.Tags, c.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, g)
	return nil
}

func (a *API) deleteResourceGroup(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	if err := a.Inventory.DeleteResourceGroup(r.Context(), r.PathValue("sub"), r.PathValue("rg")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listMachines(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	page, err := a.Inventory.ListMachines(r.Context(), inventory.MachineQuery{
		Subscription: r.PathValue("sub"), ResourceGroup: r.PathValue("rg"),
		Environment: q.Get("environment"), Status: q.Get("status"), OS: q.Get("os"), Name: q.Get("name"), Tag: q.Get("tag"),
		Page: p,
	})
	if err != nil {
		return err
	}
	writePage(w, r, page)
	return nil
}

func (a *API) getMachine(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	m, err := a.Inventory.GetMachine(r.Context(), machineRef(r))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (a *API) patchMachine(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	var body wire.MachineUpdate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	m, err := a.Inventory.SetMachineTags(r.Context(), machineRef(r), body.Tags)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (a *API) deleteMachine(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	if err := a.Inventory.DeleteMachine(r.Context(), machineRef(r)); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
