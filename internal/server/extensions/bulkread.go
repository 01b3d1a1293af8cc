package extensions

import (
	"context"
	"errors"

	"github.com/corralhq/corral/internal/resource"
	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// Messages of machine results read back.
const (
	bulkMachineGoneMessage = "the machine was deleted"
	bulkSupersededMessage  = "a later change of the same extension replaced this one"
	bulkRemovedMessage     = "the extension was removed"
)

// bulkResult derives one machine's result from its record and what its
// extension or run holds now.
func bulkResult(kind string, r store.BulkMachineResult) wire.BulkMachineResult {
	out := wire.BulkMachineResult{Name: r.MachineName, ResourceGroup: r.ResourceGroup, State: r.State, Message: r.Message}
	if r.MachineFound {
		out.MachineID = resource.Machine(r.Subscription, r.ResourceGroup, r.MachineName).String()
	} else {
		out.MachineID = r.MachineID
	}
	if r.State != "" {
		out.Result = r.State
		return out
	}
	if !r.MachineFound {
		out.Result, out.Message = wire.BulkFailed, bulkMachineGoneMessage
		return out
	}
	switch kind {
	case wire.BulkExtensionSet:
		switch {
		case !r.ExtensionFound:
			out.Result, out.Message = wire.BulkSuperseded, bulkRemovedMessage
		case r.ExtSeqNo != r.SeqNo || r.ExtDeleting:
			out.Result, out.State, out.Message = wire.BulkSuperseded, r.ExtState, bulkSupersededMessage
		default:
			out.State, out.Message = r.ExtState, r.ExtMessage
			out.Result = extResult(r.ExtState)
		}
	case wire.BulkExtensionDelete:
		switch {
		case !r.ExtensionFound:
			out.Result, out.Message = wire.BulkSucceeded, bulkRemovedMessage
		case !r.ExtDeleting || r.ExtDeleteGen != r.SeqNo:
			out.Result, out.State, out.Message = wire.BulkSuperseded, r.ExtState, bulkSupersededMessage
		default:
			out.State, out.Message = r.ExtState, r.ExtMessage
			out.Result = extResult(r.ExtState)
		}
	case wire.BulkRunCommand:
		if !r.RunFound {
			out.Result, out.Message = wire.BulkFailed, "the run is gone"
			break
		}
		out.State, out.Message, out.ExitCode = r.RunState, r.RunMessage, r.RunExitCode
		switch r.RunState {
		case wire.RunPending, wire.RunRunning:
			out.Result = wire.BulkPending
		case wire.RunSucceeded:
			out.Result = wire.BulkSucceeded
		default:
			out.Result = wire.BulkFailed
		}
	}
	return out
}

func extResult(state string) string {
	switch state {
	case wire.ExtSucceeded:
		return wire.BulkSucceeded
	case wire.ExtFailed:
		return wire.BulkFailed
	}
	return wire.BulkPending
}

func toWireBulk(op store.BulkOperation) wire.BulkOperation {
	return wire.BulkOperation{ID: resource.Subscription(op.Subscription).Child("bulkOperations", op.ID).String(), Name: op.ID,
		Kind: op.Kind, Scope: op.Scope, Tag: op.Tag, Target: op.Name, Publisher: op.Publisher, Type: op.Type, Version: op.Version,
		Machines: op.Machines, CreatedAt: op.CreatedAt, CreatedBy: op.CreatedBy}
}

func (s *Service) bulkOperation(ctx context.Context, sub, id string) (store.BulkOperation, error) {
	op, err := s.store.GetBulkOperation(ctx, sub, id)
	if errors.Is(err, store.ErrNotFound) {
		return op, refusal.NotFound("bulk operation %q was not found in subscription %q", id, sub)
	}
	return op, err
}

// BulkOperationScope returns the scope and kind of a bulk operation, for
// authorization.
func (s *Service) BulkOperationScope(ctx context.Context, sub, id string) (scope, kind string, err error) {
	op, err := s.bulkOperation(ctx, sub, id)
	return op.Scope, op.Kind, err
}

// GetBulkOperation returns a bulk operation with its totals, read from
// the machines' extensions or runs as they are now.
func (s *Service) GetBulkOperation(ctx context.Context, sub, id string) (wire.BulkOperation, error) {
	op, err := s.bulkOperation(ctx, sub, id)
	if err != nil {
		return wire.BulkOperation{}, err
	}
	out := toWireBulk(op)
	err = s.store.ScanBulkMachines(ctx, op.ID, "", func(r store.BulkMachineResult) bool {
		switch bulkResult(op.Kind, r).Result {
		case wire.BulkPending:
			out.Totals.Pending++
		case wire.BulkSucceeded:
			out.Totals.Succeeded++
		case wire.BulkFailed:
			out.Totals.Failed++
		case wire.BulkSuperseded:
			out.Totals.Superseded++
		}
		return true
	})
	if err != nil {
		return wire.BulkOperation{}, err
	}
	t := out.Totals
	out.Done = t.Pending == 0 && t.Succeeded+t.Failed+t.Superseded >= op.Machines
	return out, nil
}

// ListBulkMachines pages through a bulk operation's machines in machine
// id order, only those whose result is result if it is not "".
func (s *Service) ListBulkMachines(ctx context.Context, sub, id, result string, p store.Page) (store.PageOf[wire.BulkMachineResult], error) {
	var out store.PageOf[wire.BulkMachineResult]
	if result != "" {
		r, ok := wire.BulkResult(result)
		if !ok {
			return out, refusal.Invalid("result", "result %q is not Pending, Succeeded, Failed or Superseded", result)
		}
		result = r
	}
	op, err := s.bulkOperation(ctx, sub, id)
	if err != nil {
		return out, err
	}
	size := p.Limit
	if size <= 0 || size > store.MaxPageSize {
		size = store.DefaultPageSize
	}
	out.Items = []wire.BulkMachineResult{}
	last := ""
	err = s.store.ScanBulkMachines(ctx, op.ID, p.After, func(r store.BulkMachineResult) bool {
		res := bulkResult(op.Kind, r)
		if result != "" && res.Result != result {
			return true
		}
		if len(out.Items) == size {
			out.After = last // the page key is the store's machine id
			return false
		}
		out.Items = append(out.Items, res)
		last = r.MachineID
		return true
	})
	return out, err
}

// ListBulkOperations lists a subscription's bulk operations, newest first,
// without their totals (GET one for those).
func (s *Service) ListBulkOperations(ctx context.Context, sub string, p store.Page) (store.PageOf[wire.BulkOperation], error) {
	var out store.PageOf[wire.BulkOperation]
	ops, after, err := store.FetchPage(p, func(p store.Page) ([]store.BulkOperation, error) {
		return s.store.ListBulkOperations(ctx, sub, p)
	}, func(op store.BulkOperation) string { return op.ID })
	if err != nil {
		return out, err
	}
	out.Items, out.After = make([]wire.BulkOperation, 0, len(ops)), after
	for _, op := range ops {
		out.Items = append(out.Items, toWireBulk(op))
	}
	return out, nil
}
