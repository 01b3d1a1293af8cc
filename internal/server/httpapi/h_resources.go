package httpapi

import (
	"errors"
	"net/http"
	"strings"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/authz"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func (a *API) listSubscriptions(w http.ResponseWriter, r *http.Request, c *Caller) error {
	subs, err := a.Store.ListSubscriptions(r.Context())
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
			out.Value = append(out.Value, toWireSubscription(s))
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getSubscription(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	s, err := a.Store.GetSubscription(r.Context(), r.PathValue("sub"))
	if err != nil {
		return notFoundAs(err, "subscription %q was not found", r.PathValue("sub"))
	}
	writeJSON(w, http.StatusOK, toWireSubscription(s))
	return nil
}

func (a *API) putSubscription(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body struct {
		DisplayName string `json:"displayName"`
	}
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	name := r.PathValue("sub")
	if err := validateName("subscription", "name", name); err != nil {
		return err
	}
	s := store.Subscription{Name: name, DisplayName: body.DisplayName, CreatedAt: a.now(), CreatedBy: c.Name}
	if err := a.Store.CreateSubscription(r.Context(), s); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return errConflict("subscription %q already exists", name)
		}
		return err
	}
	writeJSON(w, http.StatusCreated, toWireSubscription(s))
	return nil
}

func (a *API) listResourceGroups(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	sub := r.PathValue("sub")
	if _, err := a.Store.GetSubscription(r.Context(), sub); err != nil {
		return notFoundAs(err, "subscription %q was not found", sub)
	}
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	limit := p.Limit
	p.Limit++
	groups, err := a.Store.ListResourceGroups(r.Context(), sub, p)
	if err != nil {
		return err
	}
	out := wire.List[wire.ResourceGroup]{Value: []wire.ResourceGroup{}}
	for i, g := range groups {
		if i == limit {
			out.NextLink = nextLink(r, groups[i-1].Name)
			break
		}
		out.Value = append(out.Value, toWireResourceGroup(g))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (a *API) getResourceGroup(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	g, err := a.Store.GetResourceGroup(r.Context(), r.PathValue("sub"), r.PathValue("rg"))
	if err != nil {
		return notFoundAs(err, "resource group %q was not found", r.PathValue("rg"))
	}
	writeJSON(w, http.StatusOK, toWireResourceGroup(g))
	return nil
}

func (a *API) putResourceGroup(w http.ResponseWriter, r *http.Request, c *Caller) error {
	var body wire.ResourceGroupCreate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	sub, name := r.PathValue("sub"), r.PathValue("rg")
	if err := validateName("resource group", "name", name); err != nil {
		return err
	}
	if err := validateTags(body.Tags); err != nil {
		return err
	}
	g := store.ResourceGroup{Subscription: sub, Name: name, Tags: body.Tags, CreatedAt: a.now(), CreatedBy: c.Name}
	switch err := a.Store.CreateResourceGroup(r.Context(), g); {
	case errors.Is(err, store.ErrNotFound):
		return errNotFound("subscription %q was not found", sub)
	case errors.Is(err, store.ErrConflict):
		return errConflict("resource group %q already exists in subscription %q", name, sub)
	case err != nil:
		return err
	}
	writeJSON(w, http.StatusCreated, toWireResourceGroup(g))
	return nil
}

func (a *API) deleteResourceGroup(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	sub, name := r.PathValue("sub"), r.PathValue("rg")
	switch err := a.Store.DeleteResourceGroup(r.Context(), sub, name); {
	case errors.Is(err, store.ErrNotEmpty):
		return errConflict("resource group %q still holds machines; delete them first", name)
	case err != nil:
		return notFoundAs(err, "resource group %q was not found", name)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (a *API) listMachines(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	q := r.URL.Query()
	f := store.MachineFilter{
		Subscription: r.PathValue("sub"), ResourceGroup: r.PathValue("rg"),
		Environment: q.Get("environment"), Status: q.Get("status"), OSName: q.Get("os"), NameContains: q.Get("name"),
	}
	if f.Environment != "" {
		env, ok := canonical(f.Environment, wire.Environments)
		if !ok {
			return errValidation("environment", "environment must be one of %s", strings.Join(wire.Environments, ", "))
		}
		f.Environment = env
	}
	if f.Status != "" {
		st, ok := canonical(f.Status, []string{wire.StatusConnected, wire.StatusDisconnected, wire.StatusExpired})
		if !ok {
			return errValidation("status", "status must be Connected, Disconnected or Expired")
		}
		f.Status = st
	}
	if t := q.Get("tag"); t != "" {
		f.TagKey, f.TagValue, _ = strings.Cut(t, "=")
		if !tagKeyRE.MatchString(f.TagKey) {
			return errValidation("tag", "tag filter must be KEY or KEY=VALUE")
		}
	}
	p, err := pageFromQuery(r)
	if err != nil {
		return err
	}
	if f.ResourceGroup == "" {
		if _, err := a.Store.GetSubscription(r.Context(), f.Subscription); err != nil {
			return notFoundAs(err, "subscription %q was not found", f.Subscription)
		}
	} else if _, err := a.Store.GetResourceGroup(r.Context(), f.Subscription, f.ResourceGroup); err != nil {
		return notFoundAs(err, "resource group %q was not found", f.ResourceGroup)
	}
	limit := p.Limit
	p.Limit++
	f.Page = p
	ms, err := a.Store.ListMachines(r.Context(), f)
	if err != nil {
		return err
	}
	out := wire.List[wire.Machine]{Value: []wire.Machine{}}
	for i, m := range ms {
		if i == limit {
			prev := ms[i-1]
			out.NextLink = nextLink(r, prev.ResourceGroup+"/"+prev.Name)
			break
		}
		out.Value = append(out.Value, a.toWireMachine(m))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func canonical(v string, allowed []string) (string, bool) {
	for _, a := range allowed {
		if strings.EqualFold(a, v) {
			return a, true
		}
	}
	return "", false
}

func (a *API) machine(r *http.Request) (store.Machine, error) {
	m, err := a.Store.GetMachine(r.Context(), r.PathValue("sub"), r.PathValue("rg"), r.PathValue("name"))
	if err != nil {
		return m, notFoundAs(err, "machine %q was not found in resource group %q", r.PathValue("name"), r.PathValue("rg"))
	}
	return m, nil
}

func (a *API) getMachine(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	m, err := a.machine(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.toWireMachine(m))
	return nil
}

func (a *API) patchMachine(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	var body wire.MachineUpdate
	if err := decodeJSON(w, r, a.Settings.MaxBodyBytes, &body); err != nil {
		return err
	}
	if body.Tags == nil {
		return errValidation("tags", "tags is required (use {} to remove all tags)")
	}
	if err := validateTags(body.Tags); err != nil {
		return err
	}
	m, err := a.machine(r)
	if err != nil {
		return err
	}
	gen, err := a.Store.UpdateMachineTags(r.Context(), m.ID, body.Tags, a.now())
	if err != nil {
		return err
	}
	a.Notifier.Notify(r.Context(), m.ID, gen)
	m, err = a.Store.GetMachineByID(r.Context(), m.ID)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, a.toWireMachine(m))
	return nil
}

func (a *API) deleteMachine(w http.ResponseWriter, r *http.Request, _ *Caller) error {
	m, err := a.machine(r)
	if err != nil {
		return err
	}
	if err := a.Store.DeleteMachine(r.Context(), m.ID); err != nil {
		return err
	}
	a.Notifier.Goodbye(r.Context(), m.ID, "the machine resource was deleted from the control plane")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// notFoundAs turns store.ErrNotFound into a 404 with a specific message.
func notFoundAs(err error, format string, args ...any) error {
	if errors.Is(err, store.ErrNotFound) {
		return errNotFound(format, args...)
	}
	return err
}
