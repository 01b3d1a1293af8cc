package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/store"
)

// Subscription and resource group names are unique case-insensitively and
// stored as first given. Children record their parents' stored names, so a
// lookup with other casing still finds them and foreign keys hold.

func (s *Store) CreateSubscription(ctx context.Context, sub store.Subscription) error {
	_, err := s.exec(ctx, s.write,
		`INSERT INTO subscriptions (name, display_name, created_at, created_by) VALUES (?, ?, ?, ?)`,
		sub.Name, sub.DisplayName, micros(sub.CreatedAt), sub.CreatedBy)
	if err != nil {
		return fmt.Errorf("create subscription %q: %w", sub.Name, err)
	}
	return nil
}

const subscriptionCols = `name, display_name, created_at, created_by`

func scanSubscription(r scanner) (store.Subscription, error) {
	var sub store.Subscription
	var created int64
	if err := r.Scan(&sub.Name, &sub.DisplayName, &created, &sub.CreatedBy); err != nil {
		return sub, err
	}
	sub.CreatedAt = fromMicros(created)
	return sub, nil
}

func (s *Store) GetSubscription(ctx context.Context, name string) (store.Subscription, error) {
	sub, err := scanSubscription(s.reader(ctx).QueryRowContext(ctx,
		s.q(`SELECT `+subscriptionCols+` FROM subscriptions WHERE lower(name) = lower(?)`), name))
	if err != nil {
		return sub, fmt.Errorf("get subscription %q: %w", name, s.mapErr(err))
	}
	return sub, nil
}

func (s *Store) ListSubscriptions(ctx context.Context) ([]store.Subscription, error) {
	rows, err := s.reader(ctx).QueryContext(ctx, `SELECT `+subscriptionCols+` FROM subscriptions ORDER BY lower(name)`)
	subs, err := collect(rows, err, scanSubscription)
	if err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", s.mapErr(err))
	}
	return subs, nil
}

// subscriptionName returns the stored name of a subscription.
func (s *Store) subscriptionName(ctx context.Context, db querier, name string) (string, error) {
	var stored string
	err := db.QueryRowContext(ctx, s.q(`SELECT name FROM subscriptions WHERE lower(name) = lower(?)`), name).Scan(&stored)
	if err != nil {
		return "", fmt.Errorf("subscription %q: %w", name, s.mapErr(err))
	}
	return stored, nil
}

func (s *Store) CreateResourceGroup(ctx context.Context, g store.ResourceGroup) error {
	tags, err := encodeTags(g.Tags)
	if err != nil {
		return fmt.Errorf("create resource group %q: %w", g.Name, err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		sub, err := s.subscriptionName(ctx, tx, g.Subscription)
		if err != nil {
			return err
		}
		_, err = s.exec(ctx, tx,
			`INSERT INTO resource_groups (subscription, name, tags, created_at, created_by) VALUES (?, ?, ?, ?, ?)`,
			sub, g.Name, tags, micros(g.CreatedAt), g.CreatedBy)
		return err
	})
	if err != nil {
		return fmt.Errorf("create resource group %q: %w", g.Name, err)
	}
	return nil
}

const resourceGroupCols = `subscription, name, tags, created_at, created_by`

func scanResourceGroup(r scanner) (store.ResourceGroup, error) {
	var g store.ResourceGroup
	var tags string
	var created int64
	if err := r.Scan(&g.Subscription, &g.Name, &tags, &created, &g.CreatedBy); err != nil {
		return g, err
	}
	g.CreatedAt = fromMicros(created)
	var err error
	g.Tags, err = decodeTags(tags)
	return g, err
}

func (s *Store) GetResourceGroup(ctx context.Context, sub, name string) (store.ResourceGroup, error) {
	g, err := scanResourceGroup(s.reader(ctx).QueryRowContext(ctx,
		s.q(`SELECT `+resourceGroupCols+` FROM resource_groups WHERE lower(subscription) = lower(?) AND lower(name) = lower(?)`),
		sub, name))
	if err != nil {
		return g, fmt.Errorf("get resource group %q: %w", name, s.mapErr(err))
	}
	return g, nil
}

func (s *Store) ListResourceGroups(ctx context.Context, sub string, p store.Page) ([]store.ResourceGroup, error) {
	var w where
	w.add(`lower(subscription) = lower(?)`, sub)
	if p.After != "" {
		w.add(`lower(name) > lower(?)`, p.After)
	}
	rows, err := s.reader(ctx).QueryContext(ctx,
		s.q(`SELECT `+resourceGroupCols+` FROM resource_groups`+w.String()+` ORDER BY lower(name) LIMIT ?`),
		append(w.args, limit(p))...)
	gs, err := collect(rows, err, scanResourceGroup)
	if err != nil {
		return nil, fmt.Errorf("list resource groups: %w", s.mapErr(err))
	}
	return gs, nil
}

func (s *Store) DeleteResourceGroup(ctx context.Context, sub, name string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var machines int
		err := tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM machines
			WHERE lower(subscription) = lower(?) AND lower(resource_group) = lower(?)`), sub, name).Scan(&machines)
		if err != nil {
			return s.mapErr(err)
		}
		if machines > 0 {
			return fmt.Errorf("%w: it holds %d machines", store.ErrNotEmpty, machines)
		}
		n, err := tx.ExecContext(ctx, s.q(`DELETE FROM resource_groups
			WHERE lower(subscription) = lower(?) AND lower(name) = lower(?)`), sub, name)
		if s.d.IsForeignKeyViolation(err) {
			// A machine arrived after the count (PostgreSQL, read committed).
			return fmt.Errorf("%w: %w", store.ErrNotEmpty, err)
		}
		if err != nil {
			return s.mapErr(err)
		}
		if err := affected1(n.RowsAffected()); err != nil {
			return err
		}
		return s.deleteAssignmentsBelow(ctx, tx, resource.ResourceGroup(sub, name).String())
	})
	if err != nil {
		return fmt.Errorf("delete resource group %q: %w", name, err)
	}
	return nil
}

// resourceGroupNames returns the stored subscription and group names.
func (s *Store) resourceGroupNames(ctx context.Context, db querier, sub, rg string) (string, string, error) {
	var storedSub, storedRG string
	err := db.QueryRowContext(ctx, s.q(`SELECT subscription, name FROM resource_groups
		WHERE lower(subscription) = lower(?) AND lower(name) = lower(?)`), sub, rg).Scan(&storedSub, &storedRG)
	if errors.Is(err, sql.ErrNoRows) {
		return "", "", fmt.Errorf("resource group %q in subscription %q: %w", rg, sub, store.ErrNotFound)
	}
	if err != nil {
		return "", "", s.mapErr(err)
	}
	return storedSub, storedRG, nil
}
