package inventory

import (
	"context"
	"errors"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

func toWireSubscription(s store.Subscription) wire.Subscription {
	return wire.Subscription{ID: resource.Subscription(s.Name).String(), Name: s.Name, DisplayName: s.DisplayName,
		CreatedAt: s.CreatedAt, CreatedBy: s.CreatedBy}
}

func toWireResourceGroup(g store.ResourceGroup) wire.ResourceGroup {
	return wire.ResourceGroup{ID: resource.ResourceGroup(g.Subscription, g.Name).String(), Name: g.Name, SubscriptionID: g.Subscription,
		Tags: g.Tags, CreatedAt: g.CreatedAt, CreatedBy: g.CreatedBy}
}

// ListSubscriptions lists every subscription; the caller keeps those it may read.
func (s *Service) ListSubscriptions(ctx context.Context) ([]wire.Subscription, error) {
	subs, err := s.store.ListSubscriptions(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]wire.Subscription, 0, len(subs))
	for _, sub := range subs {
		out = append(out, toWireSubscription(sub))
	}
	return out, nil
}

// GetSubscription reads one subscription.
func (s *Service) GetSubscription(ctx context.Context, name string) (wire.Subscription, error) {
	sub, err := s.store.GetSubscription(ctx, name)
	if err != nil {
		return wire.Subscription{}, notFoundAs(err, "subscription %q was not found", name)
	}
	return toWireSubscription(sub), nil
}

// CreateSubscription creates subscription name.
func (s *Service) CreateSubscription(ctx context.Context, name, displayName, by string) (wire.Subscription, error) {
	if err := checkName("subscription", "name", name); err != nil {
		return wire.Subscription{}, err
	}
	sub := store.Subscription{Name: name, DisplayName: displayName, CreatedAt: s.now(), CreatedBy: by}
	if err := s.store.CreateSubscription(ctx, sub); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return wire.Subscription{}, refusal.Conflict("subscription %q already exists", name)
		}
		return wire.Subscription{}, err
	}
	return toWireSubscription(sub), nil
}

// ListResourceGroups lists a subscription's groups by name, one page.
func (s *Service) ListResourceGroups(ctx context.Context, sub string, p store.Page) (store.PageOf[wire.ResourceGroup], error) {
	if _, err := s.store.GetSubscription(ctx, sub); err != nil {
		return store.PageOf[wire.ResourceGroup]{}, notFoundAs(err, "subscription %q was not found", sub)
	}
	groups, after, err := store.FetchPage(p, func(p store.Page) ([]store.ResourceGroup, error) {
		return s.store.ListResourceGroups(ctx, sub, p)
	}, func(g store.ResourceGroup) string { return g.Name })
	if err != nil {
		return store.PageOf[wire.ResourceGroup]{}, err
	}
	out := store.PageOf[wire.ResourceGroup]{Items: make([]wire.ResourceGroup, 0, len(groups)), After: after}
	for _, g := range groups {
		out.Items = append(out.Items, toWireResourceGroup(g))
	}
	return out, nil
}

// GetResourceGroup reads one resource group.
func (s *Service) GetResourceGroup(ctx context.Context, sub, name string) (wire.ResourceGroup, error) {
	g, err := s.store.GetResourceGroup(ctx, sub, name)
	if err != nil {
		return wire.ResourceGroup{}, notFoundAs(err, "resource group %q was not found", name)
	}
	return toWireResourceGroup(g), nil
}

// CreateResourceGroup creates group name in subscription sub.
func (s *Service) CreateResourceGroup(ctx context.Context, sub, name string, tags map[string]string, by string) (wire.ResourceGroup, error) {
	if err := checkName("resource group", "name", name); err != nil {
		return wire.ResourceGroup{}, err
	}
	if err := checkTags(tags); err != nil {
		return wire.ResourceGroup{}, err
	}
	g := store.ResourceGroup{Subscription: sub, Name: name, Tags: tags, CreatedAt: s.now(), CreatedBy: by}
	switch err := s.store.CreateResourceGroup(ctx, g); {
	case errors.Is(err, store.ErrNotFound):
		return wire.ResourceGroup{}, refusal.NotFound("subscription %q was not found", sub)
	case errors.Is(err, store.ErrConflict):
		return wire.ResourceGroup{}, refusal.Conflict("resource group %q already exists in subscription %q", name, sub)
	case err != nil:
		return wire.ResourceGroup{}, err
	}
	return toWireResourceGroup(g), nil
}

// DeleteResourceGroup deletes an empty resource group.
func (s *Service) DeleteResourceGroup(ctx context.Context, sub, name string) error {
	switch err := s.store.DeleteResourceGroup(ctx, sub, name); {
	case errors.Is(err, store.ErrNotEmpty):
		return refusal.Conflict("resource group %q still holds machines; delete them first", name)
	case err != nil:
		return notFoundAs(err, "resource group %q was not found", name)
	}
	return nil
}
