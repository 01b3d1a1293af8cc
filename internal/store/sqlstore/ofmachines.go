package sqlstore

import (
	"context"
	"fmt"
	"slices"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Reads of several machines at once: the desired states of a batch of
// machines are assembled together (capability.Registry), one query per
// table instead of one per machine and table.

// ofMachines reads the rows of table for each of machineIDs that match
// cond, each machine's together and ordered by order (machines in no
// particular order), at most perMachine per machine (0: all), scanning
// each with scan. Chunks of generationChunk
// machines keep the statement's parameters well under every engine's
// limit.
func ofMachines[T any](ctx context.Context, s *Store, cols, table, cond string, condArgs []any, order string, machineIDs []string,
	perMachine int, scan func(scanner) (T, error)) ([]T, error) {
	out := []T{}
	for chunk := range slices.Chunk(machineIDs, generationChunk) {
		args := append(anys(chunk), condArgs...)
		q := `SELECT ` + cols + ` FROM ` + table + ` WHERE machine_id IN (` + marks(len(chunk)) + `)` + cond + ` ORDER BY machine_id, ` + order
		if perMachine > 0 {
			// The newest perMachine of each machine: numbered within
			// the machine in the list's order.
			q = `SELECT ` + cols + ` FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY machine_id ORDER BY ` + order + `) AS rn
				FROM ` + table + ` WHERE machine_id IN (` + marks(len(chunk)) + `)` + cond + `) AS numbered
				WHERE rn <= ? ORDER BY machine_id, rn`
			args = append(args, perMachine)
		}
		rows, err := s.reader(ctx).QueryContext(ctx, s.q(q), args...)
		got, err := collect(rows, err, scan)
		if err != nil {
			return nil, fmt.Errorf("list %s of %d machines: %w", table, len(chunk), s.mapErr(err))
		}
		out = append(out, got...)
	}
	return out, nil
}

func (s *Store) ListMachineExtensionsOf(ctx context.Context, machineIDs []string) ([]store.MachineExtension, error) {
	return ofMachines(ctx, s, machineExtensionCols, `machine_extensions`, ``, nil, `lower(name)`, machineIDs, 0, scanMachineExtension)
}

func (s *Store) ListUnfinishedRunCommandsOf(ctx context.Context, machineIDs []string, perMachine int) ([]store.RunCommand, error) {
	return ofMachines(ctx, s, runCommandCols, `run_commands`, ` AND state IN (?, ?)`, []any{wire.RunPending, wire.RunRunning},
		`id DESC`, machineIDs, perMachine, scanRunCommand)
}

func (s *Store) ListUnfinishedScansOf(ctx context.Context, machineIDs []string, perMachine int) ([]store.ProtectionScan, error) {
	return ofMachines(ctx, s, scanCols, `protection_scans`, ` AND state IN (?, ?)`, []any{wire.ScanPending, wire.ScanRunning},
		`id DESC`, machineIDs, perMachine, scanProtectionScan)
}

func (s *Store) ListUnfinishedRestoresOf(ctx context.Context, machineIDs []string, perMachine int) ([]store.ProtectionRestore, error) {
	return ofMachines(ctx, s, restoreCols, `protection_restores`, ` AND state IN (?, ?)`, []any{wire.ScanPending, wire.ScanRunning},
		`id DESC`, machineIDs, perMachine, scanRestore)
}

func (s *Store) MachinesEnrolledForUpdates(ctx context.Context, machineIDs []string) ([]string, error) {
	return ofMachines(ctx, s, `machine_id`, `machine_update_status`, ``, nil, `machine_id`, machineIDs, 0, func(r scanner) (string, error) {
		var id string
		return id, r.Scan(&id)
	})
}
