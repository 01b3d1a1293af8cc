package jit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"
)

// Options configure a Manager.
type Options struct {
	// NetNS is an open file descriptor of the network namespace to manage;
	// 0 means the agent's own. The caller keeps it open while the Manager
	// is used and closes it afterwards.
	NetNS int
	// Now is the clock used to compute absolute expiries (time.Now when nil).
	Now func() time.Time
}

// Manager owns the `inet corral` table of one network namespace.
type Manager struct {
	netns int
	now   func() time.Time
	obj   objects

	mu      sync.Mutex
	policy  Policy
	applied bool
}

// New returns a Manager. It does not touch the kernel until Apply, Restore
// or a read.
func New(opts Options) *Manager {
	m := &Manager{netns: opts.NetNS, now: opts.Now, obj: newObjects()}
	if m.now == nil {
		m.now = time.Now
	}
	return m
}

// Policy is the policy last applied or restored.
func (m *Manager) Policy() Policy {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.policy
}

func (m *Manager) conn() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.WithNetNSFd(m.netns))
	if err != nil {
		return nil, classify("open netlink", err)
	}
	return c, nil
}

// tableExists asks the kernel whether our table is there.
func (m *Manager) tableExists(c *nftables.Conn) (bool, error) {
	_, err := c.ListTableOfFamily(TableName, nftables.TableFamilyINet)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, syscall.ENOENT):
		return false, nil
	}
	return false, classify("look up table inet "+TableName, err)
}

// elements reads one grant set; the table must exist.
func (m *Manager) elements(c *nftables.Conn, s *nftables.Set) ([]Grant, error) {
	els, err := c.GetSetElements(s)
	if err != nil {
		return nil, classify("read set "+s.Name, err)
	}
	now := m.now()
	out := make([]Grant, 0, len(els))
	for _, e := range els {
		if e.Expires <= 0 {
			continue // expired, not yet collected
		}
		a, p, err := decodeGrantKey(e.Key)
		if err != nil {
			return nil, fmt.Errorf("set %s: %w", s.Name, err)
		}
		out = append(out, Grant{ID: e.Comment, Source: a, Port: p, Expires: now.Add(e.Expires), Remaining: e.Expires})
	}
	return out, nil
}

// grants reads both grant sets of an existing table; a set that is missing
// (a table left half-built by someone else) holds no grants.
func (m *Manager) grants(c *nftables.Conn) ([]Grant, error) {
	sets, err := c.GetSets(m.obj.table)
	if err != nil {
		return nil, classify("list sets", err)
	}
	var out []Grant
	for _, s := range []*nftables.Set{m.obj.grants4, m.obj.grants6} {
		if !slices.ContainsFunc(sets, func(k *nftables.Set) bool { return k.Name == s.Name }) {
			continue
		}
		gs, err := m.elements(c, s)
		if err != nil {
			return nil, err
		}
		out = append(out, gs...)
	}
	slices.SortFunc(out, func(a, b Grant) int { return a.Expires.Compare(b.Expires) })
	return out, nil
}

// Apply puts the table in place (creating it, or updating its rules) and
// makes the policy's ports the managed ones, in one transaction. Grants on
// ports the policy no longer manages are deleted; the others keep their
// kernel timers.
func (m *Manager) Apply(ctx context.Context, p Policy) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := p.Validate(); err != nil {
		return fmt.Errorf("jit policy: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return err
	}
	// A grant may expire between reading and the batch, making its delete
	// fail: read again and retry once.
	for attempt := 0; ; attempt++ {
		err := m.applyOnce(c, p)
		if err == nil {
			m.policy, m.applied = p, true
			return nil
		}
		if attempt == 0 && errors.Is(err, syscall.ENOENT) {
			continue
		}
		if errors.Is(err, syscall.EEXIST) {
			return fmt.Errorf("apply table inet %s: it holds objects of another shape (an older agent's or made by hand); Remove then Restore rebuilds it: %w", TableName, err)
		}
		return classify("apply table inet "+TableName, err)
	}
}

func (m *Manager) applyOnce(c *nftables.Conn, p Policy) error {
	exists, err := m.tableExists(c)
	if err != nil {
		return err
	}
	var stale []Grant
	if exists {
		current, err := m.grants(c)
		if err != nil {
			return err
		}
		for _, g := range current {
			if !p.manages(g.Port) {
				stale = append(stale, g)
			}
		}
	}
	if err := m.obj.queueStructure(c); err != nil {
		return err
	}
	c.FlushSet(m.obj.managed)
	if len(p.Ports) > 0 {
		els := make([]nftables.SetElement, len(p.Ports))
		for i, port := range p.Ports {
			els[i] = nftables.SetElement{Key: portKey(port)}
		}
		if err := c.SetAddElements(m.obj.managed, els); err != nil {
			return err
		}
	}
	for _, g := range stale {
		if err := c.SetDeleteElements(m.obj.grantSet(g.Source), []nftables.SetElement{{Key: grantKey(g.Source, g.Port)}}); err != nil {
			return err
		}
	}
	return c.Flush()
}

// Grant opens r.Port to r.Source for r.Duration, counted by the kernel. A
// grant for the same source and port is replaced (its timer restarts with
// the new duration). The request is checked against the applied policy
// first; a refusal wraps ErrRefused and says why.
func (m *Manager) Grant(ctx context.Context, r GrantRequest) (Grant, error) {
	if err := ctx.Err(); err != nil {
		return Grant{}, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.applied {
		return Grant{}, fmt.Errorf("grant: %w: apply a policy or restore first", ErrNotApplied)
	}
	if err := r.check(m.policy); err != nil {
		return Grant{}, fmt.Errorf("grant %s to %s: %w", r.Port, r.Source, err)
	}
	r.Source = r.Source.Unmap()
	c, err := m.conn()
	if err != nil {
		return Grant{}, err
	}
	set := m.obj.grantSet(r.Source)
	key := grantKey(r.Source, r.Port)
	exists, err := m.hasElement(c, set, key)
	if err != nil {
		return Grant{}, err
	}
	for attempt := 0; ; attempt++ {
		if exists {
			if err := c.SetDeleteElements(set, []nftables.SetElement{{Key: key}}); err != nil {
				return Grant{}, err
			}
		}
		if err := c.SetAddElements(set, []nftables.SetElement{grantElement(r)}); err != nil {
			return Grant{}, err
		}
		start := m.now()
		err := c.Flush()
		if err == nil {
			return Grant{ID: r.ID, Source: r.Source, Port: r.Port, Expires: start.Add(r.Duration), Remaining: r.Duration}, nil
		}
		// The old element expired (ENOENT) or another writer added one
		// (EEXIST) between reading and the batch: retry once the other way.
		if attempt == 0 && (exists && errors.Is(err, syscall.ENOENT) || !exists && errors.Is(err, syscall.EEXIST)) {
			exists = !exists
			continue
		}
		return Grant{}, classify(fmt.Sprintf("grant %s to %s", r.Port, r.Source), err)
	}
}

// hasElement reports whether the set holds an unexpired element with key;
// a missing table is ErrNotApplied.
func (m *Manager) hasElement(c *nftables.Conn, set *nftables.Set, key []byte) (bool, error) {
	els, err := c.GetSetElements(set)
	if err != nil {
		if ok, terr := m.tableExists(c); terr == nil && !ok {
			return false, fmt.Errorf("%w: table inet %s is missing", ErrNotApplied, TableName)
		}
		return false, classify("read set "+set.Name, err)
	}
	for _, e := range els {
		if e.Expires > 0 && slices.Equal(e.Key, key) {
			return true, nil
		}
	}
	return false, nil
}

// Revoke closes a grant early. It reports whether there was one to close;
// revoking a grant that expired or never existed is not an error.
func (m *Manager) Revoke(ctx context.Context, source netip.Addr, port Port) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	if err := validateSource(source); err != nil {
		return false, fmt.Errorf("revoke: %w", err)
	}
	if err := port.Validate(); err != nil {
		return false, fmt.Errorf("revoke: %w", err)
	}
	source = source.Unmap()
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return false, err
	}
	set := m.obj.grantSet(source)
	key := grantKey(source, port)
	exists, err := m.hasElement(c, set, key)
	if err != nil {
		if errors.Is(err, ErrNotApplied) {
			return false, nil
		}
		return false, err
	}
	if !exists {
		return false, nil
	}
	if err := c.SetDeleteElements(set, []nftables.SetElement{{Key: key}}); err != nil {
		return false, err
	}
	if err := c.Flush(); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return false, nil // expired meanwhile
		}
		return false, classify(fmt.Sprintf("revoke %s from %s", port, source), err)
	}
	return true, nil
}

// List returns the open grants, soonest to expire first, with the time left
// as the kernel counts it. No table means no grants.
func (m *Manager) List(ctx context.Context) ([]Grant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return nil, err
	}
	exists, err := m.tableExists(c)
	if err != nil || !exists {
		return nil, err
	}
	return m.grants(c)
}

// State returns what to save for Restore: the applied policy and the open
// grants with their absolute expiry.
func (m *Manager) State(ctx context.Context) (State, error) {
	gs, err := m.List(ctx)
	if err != nil {
		return State{}, err
	}
	for i := range gs {
		gs[i].Remaining = 0
	}
	return State{Policy: m.Policy(), Grants: gs}, nil
}

// Restore makes the kernel hold exactly st: the table is dropped if present
// and rebuilt with st's policy and the grants of st that have not expired,
// each with its remaining time, in one transaction. It returns the grants
// restored. Grants for ports the policy does not manage are skipped.
func (m *Manager) Restore(ctx context.Context, st State) ([]Grant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := st.Policy.Validate(); err != nil {
		return nil, fmt.Errorf("restore: jit policy: %w", err)
	}
	now := m.now()
	var restore []GrantRequest
	for i, g := range st.Grants {
		r := GrantRequest{ID: g.ID, Source: g.Source.Unmap(), Port: g.Port, Duration: g.Expires.Sub(now).Truncate(time.Millisecond)}
		if r.Duration < time.Millisecond || !st.Policy.manages(g.Port) {
			continue
		}
		if err := r.check(Policy{Ports: st.Policy.Ports}); err != nil {
			return nil, fmt.Errorf("restore: grant %d: %w", i, err)
		}
		restore = append(restore, r)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return nil, err
	}
	// Adding the table first makes the delete valid whether or not it
	// exists; the kernel applies the batch as one.
	c.AddTable(m.obj.table)
	c.DelTable(m.obj.table)
	if err := m.obj.queueStructure(c); err != nil {
		return nil, err
	}
	if len(st.Policy.Ports) > 0 {
		els := make([]nftables.SetElement, len(st.Policy.Ports))
		for i, port := range st.Policy.Ports {
			els[i] = nftables.SetElement{Key: portKey(port)}
		}
		if err := c.SetAddElements(m.obj.managed, els); err != nil {
			return nil, err
		}
	}
	out := make([]Grant, 0, len(restore))
	for _, r := range restore {
		if err := c.SetAddElements(m.obj.grantSet(r.Source), []nftables.SetElement{grantElement(r)}); err != nil {
			return nil, err
		}
		out = append(out, Grant{ID: r.ID, Source: r.Source, Port: r.Port, Expires: now.Add(r.Duration), Remaining: r.Duration})
	}
	if err := c.Flush(); err != nil {
		return nil, classify("restore table inet "+TableName, err)
	}
	m.policy, m.applied = st.Policy, true
	return out, nil
}

// Remove deletes the table: every managed port is open again to whatever
// the machine's other rules allow, and every grant is gone. Removing a table
// that is not there is not an error.
func (m *Manager) Remove(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return err
	}
	c.AddTable(m.obj.table)
	c.DelTable(m.obj.table)
	if err := c.Flush(); err != nil {
		return classify("remove table inet "+TableName, err)
	}
	m.policy, m.applied = Policy{}, false
	return nil
}

// Check reports ErrNotApplied when the table, its chain, its sets or its
// rules are not all in the kernel (someone flushed the ruleset), so the
// caller can Restore. It changes nothing.
func (m *Manager) Check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	c, err := m.conn()
	if err != nil {
		return err
	}
	exists, err := m.tableExists(c)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("%w: table inet %s is missing", ErrNotApplied, TableName)
	}
	sets, err := c.GetSets(m.obj.table)
	if err != nil {
		return classify("list sets", err)
	}
	for _, want := range []string{setPorts, setV4, setV6} {
		if !slices.ContainsFunc(sets, func(s *nftables.Set) bool { return s.Name == want }) {
			return fmt.Errorf("%w: set %s is missing", ErrNotApplied, want)
		}
	}
	rules, err := c.GetRules(m.obj.table, m.obj.chain)
	if err != nil {
		return fmt.Errorf("%w: chain %s: %v", ErrNotApplied, chainName, err)
	}
	if got, want := len(rules), len(m.obj.rules()); got != want {
		return fmt.Errorf("%w: chain %s has %d rules, want %d", ErrNotApplied, chainName, got, want)
	}
	return nil
}
