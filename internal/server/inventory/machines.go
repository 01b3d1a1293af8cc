package inventory

import (
	"context"
	"fmt"
	"strings"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// MachineQuery selects machines of a subscription or one of its groups,
// with the filters of the API (case-insensitive values, tag "KEY" or
// "KEY=VALUE").
type MachineQuery struct {
	Subscription, ResourceGroup string
	Environment, Status, OS     string
	Name, Tag                   string
	Page                        store.Page
}

var statuses = []string{wire.StatusConnected, wire.StatusDisconnected, wire.StatusExpired}

func (q MachineQuery) filter() (store.MachineFilter, error) {
	f := store.MachineFilter{Subscription: q.Subscription, ResourceGroup: q.ResourceGroup, OSName: q.OS, NameContains: q.Name}
	if q.Environment != "" {
		env, ok := canonical(q.Environment, wire.Environments)
		if !ok {
			return f, refusal.Invalid("environment", "environment must be one of %s", strings.Join(wire.Environments, ", "))
		}
		f.Environment = env
	}
	if q.Status != "" {
		st, ok := canonical(q.Status, statuses)
		if !ok {
			return f, refusal.Invalid("status", "status must be Connected, Disconnected or Expired")
		}
		f.Status = st
	}
	if q.Tag != "" {
		f.TagKey, f.TagValue, _ = strings.Cut(q.Tag, "=")
		if !resource.ValidTagKey(f.TagKey) {
			return f, refusal.Invalid("tag", "tag filter must be KEY or KEY=VALUE")
		}
	}
	return f, nil
}

// ListMachines lists one page of machines, ordered by resource group and
// name.
func (s *Service) ListMachines(ctx context.Context, q MachineQuery) (store.PageOf[wire.Machine], error) {
	f, err := q.filter()
	if err != nil {
		return store.PageOf[wire.Machine]{}, err
	}
	if f.ResourceGroup == "" {
		if _, err := s.store.GetSubscription(ctx, f.Subscription); err != nil {
			return store.PageOf[wire.Machine]{}, notFoundAs(err, "subscription %q was not found", f.Subscription)
		}
	} else if _, err := s.store.GetResourceGroup(ctx, f.Subscription, f.ResourceGroup); err != nil {
		return store.PageOf[wire.Machine]{}, notFoundAs(err, "resource group %q was not found", f.ResourceGroup)
	}
	key := func(m store.Machine) string { return m.ResourceGroup + "/" + m.Name }
	ms, after, err := store.FetchPage(q.Page, func(p store.Page) ([]store.Machine, error) {
		f.Page = p
		return s.store.ListMachines(ctx, f)
	}, key)
	if err != nil {
		return store.PageOf[wire.Machine]{}, err
	}
	// However many machines a page asks for, it carries at most
	// MaxPageBytes of reported documents and tags.
	ms, after = store.TrimPage(ms, after, key, machineSize, store.MaxPageBytes)
	out := store.PageOf[wire.Machine]{Items: make([]wire.Machine, 0, len(ms)), After: after}
	for _, m := range ms {
		out.Items = append(out.Items, s.ToWireMachine(m))
	}
	return out, nil
}

// machineSize estimates what a machine adds to a list answer.
func machineSize(m store.Machine) int {
	n := 1024 + len(m.Properties) + len(m.AgentConfig)
	for k, v := range m.Tags {
		n += len(k) + len(v) + 8
	}
	return n
}

// Machine resolves a machine reference.
func (s *Service) Machine(ctx context.Context, ref resource.MachineRef) (store.Machine, error) {
	m, err := s.store.GetMachine(ctx, ref.Subscription, ref.ResourceGroup, ref.Name)
	if err != nil {
		return m, notFoundAs(err, "machine %q was not found in resource group %q", ref.Name, ref.ResourceGroup)
	}
	return m, nil
}

// GetMachine reads one machine.
func (s *Service) GetMachine(ctx context.Context, ref resource.MachineRef) (wire.Machine, error) {
	m, err := s.Machine(ctx, ref)
	if err != nil {
		return wire.Machine{}, err
	}
	return s.ToWireMachine(m), nil
}

// SetMachineTags replaces a machine's tags (nil is refused: {} removes
// them all), bumps its generation and pushes a sync to its agent.
func (s *Service) SetMachineTags(ctx context.Context, ref resource.MachineRef, tags map[string]string) (wire.Machine, error) {
	if tags == nil {
		return wire.Machine{}, refusal.Invalid("tags", "tags is required (use {} to remove all tags)")
	}
	if err := checkTags(tags); err != nil {
		return wire.Machine{}, err
	}
	m, err := s.Machine(ctx, ref)
	if err != nil {
		return wire.Machine{}, err
	}
	if s.gate != nil {
		cand := m
		cand.Tags = tags
		if tags, err = s.gate.AdmitMachine(ctx, cand); err != nil {
			return wire.Machine{}, err
		}
	}
	gen, err := s.store.UpdateMachineTags(ctx, m.ID, tags, s.now())
	if err != nil {
		return wire.Machine{}, err
	}
	s.notify.Notify(ctx, m.ID, gen)
	m, err = s.store.GetMachineByID(ctx, m.ID)
	if err != nil {
		return wire.Machine{}, err
	}
	if s.gate != nil {
		s.gate.MachineChanged(ctx, m)
	}
	return s.ToWireMachine(m), nil
}

// DeleteMachine deletes a machine with its extensions and run commands and
// tells its agent to stop.
func (s *Service) DeleteMachine(ctx context.Context, ref resource.MachineRef) error {
	m, err := s.Machine(ctx, ref)
	if err != nil {
		return err
	}
	if err := s.store.DeleteMachine(ctx, m.ID); err != nil {
		return err
	}
	s.notify.Goodbye(ctx, m.ID, "the machine resource was deleted from the control plane")
	return nil
}

// Disconnect deletes the machine of the calling agent (corral-agent
// disconnect).
func (s *Service) Disconnect(ctx context.Context, machineID string) error {
	if err := s.store.DeleteMachine(ctx, machineID); err != nil {
		return err
	}
	s.notify.Goodbye(ctx, machineID, "disconnected by the agent")
	return nil
}

// MachineByID reads a machine by its id (the agent's certificate names
// it); store.ErrNotFound if it is gone.
func (s *Service) MachineByID(ctx context.Context, id string) (store.Machine, error) {
	return s.store.GetMachineByID(ctx, id)
}

// maxAgentBatch bounds the machines read together for their agents'
// requests.
const maxAgentBatch = 64

// MachineForAgent is the machine whose agent makes a request, without its
// inventory (Properties and AgentConfig nil): agent requests never read it.
// store.ErrNotFound if it is gone. The machines of agents that ask at the
// same time are read together (a fleet-wide change has every agent ask at
// once; one query per request was a fifth of the server's CPU), each read
// after its request arrived.
func (s *Service) MachineForAgent(ctx context.Context, id string) (store.Machine, error) {
	m, err := s.forAgents.Call(ctx, id)
	if err != nil {
		return store.Machine{}, err
	}
	if m == nil {
		return store.Machine{}, fmt.Errorf("get machine %s: %w", id, store.ErrNotFound)
	}
	return *m, nil
}

// machinesForAgents reads the machines of ids, nil for each that does not
// exist.
func (s *Service) machinesForAgents(ctx context.Context, ids []string) ([]*store.Machine, error) {
	ms, err := s.store.GetMachinesForAgent(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]*store.Machine, len(ids))
	for i := range ms {
		for j, id := range ids {
			if id == ms[i].ID {
				out[j] = &ms[i]
			}
		}
	}
	return out, nil
}
