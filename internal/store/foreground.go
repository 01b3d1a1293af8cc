package store

import "context"

type foregroundKey struct{}

// Foreground marks the writes made with ctx as made for a person waiting on
// them (an API call by a user or a service principal): a store with one
// writer (SQLite) runs them before the background writes queued meanwhile
// (agents' reports and heartbeats, sweeps), so a fleet-wide change is not
// written behind the reports of the machines it already changed. The
// order of writes of one caller is unchanged, and so is what a write
// does; only its place in the writer's queue.
func Foreground(ctx context.Context) context.Context {
	return context.WithValue(ctx, foregroundKey{}, true)
}

// IsForeground reports whether ctx was marked with Foreground.
func IsForeground(ctx context.Context) bool {
	v, _ := ctx.Value(foregroundKey{}).(bool)
	return v
}
