package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

const machineCols = `id, subscription, resource_group, name, tags, status, last_heartbeat, agent_version,
	environment, os_name, properties, agent_config, cert_serial, cert_not_after, generation,
	applied_generation, sealing_key, created_at, created_by, updated_at, created_by_id`

func scanMachine(r scanner) (store.Machine, error) {
	var m store.Machine
	var tags string
	var hb, notAfter, created, updated int64
	err := r.Scan(&m.ID, &m.Subscription, &m.ResourceGroup, &m.Name, &tags, &m.Status, &hb, &m.AgentVersion,
		&m.Environment, &m.OSName, &m.Properties, &m.AgentConfig, &m.CertSerial, &notAfter, &m.Generation,
		&m.AppliedGeneration, &m.SealingKey, &created, &m.CreatedBy, &updated, &m.CreatedByID)
	if err != nil {
		return m, err
	}
	m.LastHeartbeat, m.CertNotAfter = fromMicros(hb), fromMicros(notAfter)
	m.CreatedAt, m.UpdatedAt = fromMicros(created), fromMicros(updated)
	m.Tags, err = decodeTags(tags)
	return m, err
}

// CreateMachine stores the machine under the stored names of its
// subscription and resource group, whatever casing m uses.
func (s *Store) CreateMachine(ctx context.Context, m store.Machine, replaceExpired bool) error {
	tags, err := encodeTags(m.Tags)
	if err != nil {
		return fmt.Errorf("create machine %q: %w", m.Name, err)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		sub, rg, err := s.resourceGroupNames(ctx, tx, m.Subscription, m.ResourceGroup)
		if err != nil {
			return err
		}
		var oldID, oldStatus string
		err = tx.QueryRowContext(ctx, s.q(`SELECT id, status FROM machines
			WHERE lower(subscription) = lower(?) AND lower(resource_group) = lower(?) AND lower(name) = lower(?)`),
			sub, rg, m.Name).Scan(&oldID, &oldStatus)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return s.mapErr(err)
		case !replaceExpired || oldStatus != wire.StatusExpired:
			return fmt.Errorf("%w: machine %q exists in resource group %q (status %s)", store.ErrConflict, m.Name, rg, oldStatus)
		default:
			if _, err := s.exec(ctx, tx, `DELETE FROM machines WHERE id = ?`, oldID); err != nil {
				return err
			}
		}
		_, err = s.exec(ctx, tx, `INSERT INTO machines (`+machineCols+`)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			m.ID, sub, rg, m.Name, tags, m.Status, micros(m.LastHeartbeat), m.AgentVersion,
			m.Environment, m.OSName, m.Properties, m.AgentConfig, m.CertSerial, micros(m.CertNotAfter), m.Generation,
			m.AppliedGeneration, nilIfEmpty(m.SealingKey), micros(m.CreatedAt), m.CreatedBy, micros(m.UpdatedAt), m.CreatedByID)
		return err
	})
	if err != nil {
		return fmt.Errorf("create machine %q: %w", m.Name, err)
	}
	return nil
}

func (s *Store) GetMachine(ctx context.Context, sub, rg, name string) (store.Machine, error) {
	m, err := scanMachine(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+machineCols+` FROM machines
		WHERE lower(subscription) = lower(?) AND lower(resource_group) = lower(?) AND lower(name) = lower(?)`),
		sub, rg, name))
	if err != nil {
		return m, fmt.Errorf("get machine %q: %w", name, s.mapErr(err))
	}
	return m, nil
}

// machineAgentCols are machineCols without the inventory (NULL instead):
// for agent requests and bulk selections.
var machineAgentCols = func() string {
	cols := strings.Replace(machineCols, "properties, agent_config,", "NULL, NULL,", 1)
	if cols == machineCols {
		panic("machineCols lost properties, agent_config")
	}
	return cols
}()

func (s *Store) GetMachineByID(ctx context.Context, id string) (store.Machine, error) {
	m, err := scanMachine(s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT `+machineCols+` FROM machines WHERE id = ?`), id))
	if err != nil {
		return m, fmt.Errorf("get machine %s: %w", id, s.mapErr(err))
	}
	return m, nil
}

func (s *Store) GetMachinesForAgent(ctx context.Context, ids []string) ([]store.Machine, error) {
	var out []store.Machine
	for chunk := range slices.Chunk(slices.Compact(slices.Sorted(slices.Values(ids))), generationChunk) {
		rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+machineAgentCols+` FROM machines WHERE id IN (`+marks(len(chunk))+`)`), anys(chunk)...)
		got, err := collect(rows, err, scanMachine)
		if err != nil {
			return nil, fmt.Errorf("get %d machines: %w", len(chunk), s.mapErr(err))
		}
		out = append(out, got...)
	}
	return out, nil
}

// ListMachines matches Environment and Status exactly (callers pass the
// canonical spelling), OSName and NameContains case-insensitively. Page.After
// "rg/name" splits at the first "/"; without one it is a group name and the
// page starts at that group's first machine.
func (s *Store) ListMachines(ctx context.Context, f store.MachineFilter) ([]store.Machine, error) {
	var w where
	w.add(`lower(subscription) = lower(?)`, f.Subscription)
	if f.ResourceGroup != "" {
		w.add(`lower(resource_group) = lower(?)`, f.ResourceGroup)
	}
	if f.Environment != "" {
		w.add(`environment = ?`, f.Environment)
	}
	if f.Status != "" {
		w.add(`status = ?`, f.Status)
	}
	if f.OSName != "" {
		w.add(`lower(os_name) = lower(?)`, f.OSName)
	}
	if f.NameContains != "" {
		w.add(`lower(name) LIKE '%' || lower(?) || '%' ESCAPE '\'`, escapeLike(f.NameContains))
	}
	if f.TagKey != "" {
		if f.TagValue == "" {
			w.add(s.d.TagValue("tags", "?")+` IS NOT NULL`, f.TagKey)
		} else {
			w.add(s.d.TagValue("tags", "?")+` = ?`, f.TagKey, f.TagValue)
		}
	}
	if f.Page.After != "" {
		rg, name, ok := strings.Cut(f.Page.After, "/")
		if ok {
			w.add(`(lower(resource_group) > lower(?) OR (lower(resource_group) = lower(?) AND lower(name) > lower(?)))`, rg, rg, name)
		} else {
			w.add(`lower(resource_group) >= lower(?)`, rg)
		}
	}
	cols := machineCols
	if f.WithoutInventory {
		cols = machineAgentCols
	}
	rows, err := s.reader(ctx).QueryContext(ctx, s.q(`SELECT `+cols+` FROM machines`+w.String()+`
		ORDER BY lower(resource_group), lower(name) LIMIT ?`), append(w.args, limit(f.Page))...)
	ms, err := collect(rows, err, scanMachine)
	if err != nil {
		return nil, fmt.Errorf("list machines: %w", s.mapErr(err))
	}
	return ms, nil
}

func (s *Store) CountMachinesByStatus(ctx context.Context) (map[string]int, error) {
	type count struct {
		status string
		n      int
	}
	rows, err := s.reader(ctx).QueryContext(ctx, `SELECT status, count(*) FROM machines GROUP BY status`)
	counts, err := collect(rows, err, func(r scanner) (count, error) {
		var c count
		return c, r.Scan(&c.status, &c.n)
	})
	if err != nil {
		return nil, fmt.Errorf("count machines: %w", s.mapErr(err))
	}
	out := make(map[string]int, len(counts))
	for _, c := range counts {
		out[c.status] = c.n
	}
	return out, nil
}

func (s *Store) UpdateMachineTags(ctx context.Context, id string, tags map[string]string, at time.Time) (int64, error) {
	enc, err := encodeTags(tags)
	if err != nil {
		return 0, fmt.Errorf("update machine %s tags: %w", id, err)
	}
	var gen int64
	err = s.write.QueryRowContext(ctx, s.q(`UPDATE machines SET tags = ?, generation = generation + 1, updated_at = ?
		WHERE id = ? RETURNING generation`), enc, micros(at), id).Scan(&gen)
	if err != nil {
		return 0, fmt.Errorf("update machine %s tags: %w", id, s.mapErr(err))
	}
	return gen, nil
}

// generationChunk bounds the ids per statement of BumpGenerations.
const generationChunk = 500

// BumpGenerations updates the machines in one transaction (bumpIDs: row
// locks taken in id order).
func (s *Store) BumpGenerations(ctx context.Context, ids []string, at time.Time) (map[string]int64, error) {
	gens := map[string]int64{}
	if len(ids) == 0 {
		return gens, nil
	}
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		gens, err = s.bumpIDs(ctx, tx, ids, at)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bump the generation of %d machines: %w", len(ids), err)
	}
	return gens, nil
}

// UpdateMachineReport sets UpdatedAt to r.At along with the reported fields.
func (s *Store) UpdateMachineReport(ctx context.Context, id string, r store.MachineReport) error {
	set := []string{`updated_at = ?`}
	args := []any{micros(r.At)}
	for _, f := range []struct {
		col   string
		val   any
		unset bool
	}{
		{"agent_version", r.AgentVersion, r.AgentVersion == ""},
		{"environment", r.Environment, r.Environment == ""},
		{"os_name", r.OSName, r.OSName == ""},
		{"properties", r.Properties, r.Properties == nil},
		{"agent_config", r.AgentConfig, r.AgentConfig == nil},
		{"applied_generation", r.AppliedGeneration, r.AppliedGeneration == 0},
	} {
		if !f.unset {
			set = append(set, f.col+` = ?`)
			args = append(args, f.val)
		}
	}
	err := affected1(s.exec(ctx, s.write, `UPDATE machines SET `+strings.Join(set, ", ")+` WHERE id = ?`, append(args, id)...))
	if err != nil {
		return fmt.Errorf("update machine %s report: %w", id, err)
	}
	return nil
}

// appliedChunk bounds the machines of one statement (4 bind parameters
// each).
const appliedChunk = 500

// RecordAppliedGenerations locks the machines in id order (as every
// transaction changing several does) and updates them with one statement
// per chunk joined to a VALUES list.
func (s *Store) RecordAppliedGenerations(ctx context.Context, rs []store.AppliedGeneration) ([]bool, error) {
	last := make(map[string]store.AppliedGeneration, len(rs))
	for _, r := range rs {
		last[r.MachineID] = r
	}
	ids := slices.Sorted(maps.Keys(last))
	found := make(map[string]bool, len(ids))
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		clear(found)
		if err := s.lockMachines(ctx, tx, ids); err != nil {
			return err
		}
		for chunk := range slices.Chunk(ids, appliedChunk) {
			args := make([]any, 0, 4*len(chunk))
			for _, id := range chunk {
				r := last[id]
				args = append(args, id, r.Generation, r.AgentVersion, micros(r.At))
			}
			rows, err := tx.QueryContext(ctx, s.q(`WITH ap (ap_id, ap_gen, ap_version, ap_at) AS (VALUES `+
				rowsOf(len(chunk), "?, CAST(? AS BIGINT), ?, CAST(? AS BIGINT)")+`)
				UPDATE machines SET
					applied_generation = CASE WHEN ap.ap_gen = 0 THEN machines.applied_generation ELSE ap.ap_gen END,
					agent_version = CASE WHEN ap.ap_version = '' THEN machines.agent_version ELSE ap.ap_version END,
					updated_at = ap.ap_at
				FROM ap WHERE machines.id = ap.ap_id RETURNING machines.id`), args...)
			got, err := collect(rows, err, func(r scanner) (string, error) {
				var id string
				return id, r.Scan(&id)
			})
			if err != nil {
				return err
			}
			for _, id := range got {
				found[id] = true
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("record %d applied generations: %w", len(rs), s.mapErr(err))
	}
	out := make([]bool, len(rs))
	for i, r := range rs {
		out[i] = found[r.MachineID]
	}
	return out, nil
}

func (s *Store) UpdateMachineCert(ctx context.Context, id, serial string, notAfter, at time.Time) error {
	err := affected1(s.exec(ctx, s.write, `UPDATE machines SET cert_serial = ?, cert_not_after = ?, updated_at = ? WHERE id = ?`,
		serial, micros(notAfter), micros(at), id))
	if err != nil {
		return fmt.Errorf("update machine %s certificate: %w", id, err)
	}
	return nil
}

// heartbeatChunk bounds the bind parameters per statement (3 each), well
// under SQLite's and PostgreSQL's limits.
const heartbeatChunk = 500

// RecordHeartbeats writes the batch with one UPDATE per chunk joined to a
// VALUES list. A batch holding one machine twice keeps its latest heartbeat;
// LastHeartbeat never moves backwards, so batches from several replicas may
// land in any order. AgentVersion is updated when the heartbeat carries one.
// UpdatedAt is left alone: liveness is not a change of the resource.
func (s *Store) RecordHeartbeats(ctx context.Context, hs []store.Heartbeat) error {
	if len(hs) == 0 {
		return nil
	}
	latest := make(map[string]store.Heartbeat, len(hs))
	for _, h := range hs {
		prev, ok := latest[h.MachineID]
		switch {
		case !ok:
			latest[h.MachineID] = h
		case h.At.After(prev.At):
			if h.AgentVersion == "" {
				h.AgentVersion = prev.AgentVersion
			}
			latest[h.MachineID] = h
		case prev.AgentVersion == "":
			prev.AgentVersion = h.AgentVersion
			latest[h.MachineID] = prev
		}
	}
	batch := make([]store.Heartbeat, 0, len(latest))
	for _, h := range latest {
		batch = append(batch, h)
	}
	// A stable order keeps lock acquisition consistent across concurrent batches.
	slices.SortFunc(batch, func(a, b store.Heartbeat) int { return strings.Compare(a.MachineID, b.MachineID) })

	err := s.inTx(ctx, func(tx *sql.Tx) error {
		ids := make([]string, len(batch))
		for i, h := range batch {
			ids[i] = h.MachineID
		}
		if err := s.lockMachines(ctx, tx, ids); err != nil {
			return err
		}
		for chunk := range slices.Chunk(batch, heartbeatChunk) {
			var b strings.Builder
			args := make([]any, 0, 3*len(chunk))
			for i, h := range chunk {
				if i > 0 {
					b.WriteString(", ")
				}
				b.WriteString(`(?, CAST(? AS BIGINT), ?)`)
				args = append(args, h.MachineID, micros(h.At), h.AgentVersion)
			}
			args = append(args, wire.StatusExpired, wire.StatusConnected)
			_, err := s.exec(ctx, tx, `WITH hb (hb_id, hb_at, hb_version) AS (VALUES `+b.String()+`)
				UPDATE machines SET
					last_heartbeat = CASE WHEN hb.hb_at > machines.last_heartbeat THEN hb.hb_at ELSE machines.last_heartbeat END,
					agent_version = CASE WHEN hb.hb_version = '' THEN machines.agent_version ELSE hb.hb_version END,
					status = CASE WHEN machines.status = ? THEN machines.status ELSE ? END
				FROM hb WHERE machines.id = hb.hb_id`, args...)
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("record %d heartbeats: %w", len(hs), err)
	}
	return nil
}

// MarkStale returns the changed ids sorted. UpdatedAt is left alone: the
// store has no clock, and the change is derived from LastHeartbeat.
func (s *Store) MarkStale(ctx context.Context, disconnectedBefore, expiredBefore time.Time) ([]string, error) {
	var changed []string
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		changed = []string{}
		for _, u := range []struct {
			query string
			args  []any
		}{
			// The rows are locked in id order first, as every
			// transaction that changes several machines does.
			{`UPDATE machines SET status = ? WHERE id IN (SELECT id FROM machines WHERE status <> ? AND last_heartbeat < ?
				ORDER BY id ` + s.d.LockRows + `) RETURNING id`,
				[]any{wire.StatusExpired, wire.StatusExpired, micros(expiredBefore)}},
			{`UPDATE machines SET status = ? WHERE id IN (SELECT id FROM machines WHERE status = ? AND last_heartbeat < ?
				ORDER BY id ` + s.d.LockRows + `) RETURNING id`,
				[]any{wire.StatusDisconnected, wire.StatusConnected, micros(disconnectedBefore)}},
		} {
			rows, err := tx.QueryContext(ctx, s.q(u.query), u.args...)
			ids, err := collect(rows, err, func(r scanner) (string, error) {
				var id string
				return id, r.Scan(&id)
			})
			if err != nil {
				return s.mapErr(err)
			}
			changed = append(changed, ids...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mark stale machines: %w", err)
	}
	slices.Sort(changed)
	return changed, nil
}

// DeleteMachine deletes the machine and the role assignments at its scope
// and below (its extensions and runs go by cascade), in one transaction.
func (s *Store) DeleteMachine(ctx context.Context, id string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var sub, rg, name string
		err := tx.QueryRowContext(ctx, s.q(`SELECT subscription, resource_group, name FROM machines WHERE id = ?`), id).Scan(&sub, &rg, &name)
		if err != nil {
			return s.mapErr(err)
		}
		if err := affected1(s.exec(ctx, tx, `DELETE FROM machines WHERE id = ?`, id)); err != nil {
			return err
		}
		return s.deleteAssignmentsBelow(ctx, tx, resource.Machine(sub, rg, name).String())
	})
	if err != nil {
		return fmt.Errorf("delete machine %s: %w", id, err)
	}
	return nil
}

// deleteAssignmentsBelow removes the role assignments at scope and below it
// (whole path segments, case-insensitively): a resource re-created under
// the same name must not inherit the grants of the one deleted.
func (s *Store) deleteAssignmentsBelow(ctx context.Context, tx *sql.Tx, scope string) error {
	cond, args := scopeCond("scope", scope)
	if cond == "" {
		return errors.New("refusing to delete the role assignments of the root scope")
	}
	_, err := s.exec(ctx, tx, `DELETE FROM role_assignments WHERE `+cond, args...)
	return err
}

func (s *Store) CountMachinesCreatedBy(ctx context.Context, principalID string, since time.Time) (int, error) {
	var n int
	err := s.reader(ctx).QueryRowContext(ctx, s.q(`SELECT count(*) FROM machines WHERE created_by_id = ? AND created_at >= ?`),
		principalID, micros(since)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count machines created by %s: %w", principalID, s.mapErr(err))
	}
	return n, nil
}
