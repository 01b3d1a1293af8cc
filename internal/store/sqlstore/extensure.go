package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/corralhq/corral/internal/store"
)

// addChunk bounds the machines of one AddMachineExtensions transaction.
const addChunk = 500

// AddMachineExtensions inserts with one INSERT ... SELECT per machine
// (the machine's generation gives the SeqNo; the NOT EXISTS guard skips
// machines that have the extension or the name), then bumps the
// generations of the machines it added to, chunk by chunk.
func (s *Store) AddMachineExtensions(ctx context.Context, es []store.MachineExtension) (map[string]int64, error) {
	gens := map[string]int64{}
	for chunk := range slices.Chunk(es, addChunk) {
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			var added []string
			for _, e := range chunk {
				n, err := s.exec(ctx, tx, `INSERT INTO machine_extensions (`+machineExtensionCols+`)
					SELECT m.id, ?, ?, ?, ?, ?, ?, ?, m.generation + 1, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?
					FROM machines m WHERE m.id = ? AND NOT EXISTS (SELECT 1 FROM machine_extensions x WHERE x.machine_id = m.id AND
					((lower(x.publisher) = lower(?) AND lower(x.type) = lower(?) AND x.deleting = ?) OR lower(x.name) = lower(?)))`,
					e.Name, e.Publisher, e.Type, e.Version, e.Digest, nilIfEmpty(e.Settings), nilIfEmpty(e.ProtectedSettings), false,
					e.State, e.Message, e.ReportedVersion, false, micros(e.CreatedAt), e.CreatedBy, micros(e.UpdatedAt), e.UpdatedBy,
					nilIfEmpty(e.Origin), e.MachineID, e.Publisher, e.Type, false, e.Name)
				if err != nil {
					return err
				}
				if n > 0 {
					added = append(added, e.MachineID)
				}
			}
			got, err := s.bumpIDs(ctx, tx, added, chunk[0].CreatedAt)
			for id, g := range got {
				gens[id] = g
			}
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("add extensions to %d machines: %w", len(chunk), err)
		}
	}
	return gens, nil
}
