package httpapi

import (
	"maps"
	"reflect"

	"github.com/corralhq/corral/internal/wire"
)

// The bulk-operation part of the API description (docs/bulk.md).

var bulkFieldDocs = map[fieldKey]fieldDoc{
	field(wire.BulkOperationCreate{}, "kind"):       {enum: wire.BulkKinds},
	field(wire.BulkOperationCreate{}, "scope"):      {desc: "/subscriptions/S (the default) or /subscriptions/S/resourceGroups/RG of the path's subscription; Expired machines are left out; at most 50,000 machines."},
	field(wire.BulkOperationCreate{}, "tag"):        {desc: "KEY=VALUE: only the machines of the scope with this tag."},
	field(wire.BulkOperationCreate{}, "name"):       {desc: "The extension's name on each machine, or the run's name on each machine (runCommand)."},
	field(wire.BulkOperationCreate{}, "extension"):  {desc: "For extensionSet: what PUT .../extensions/{name} takes; protected settings are sealed to each machine."},
	field(wire.BulkOperationCreate{}, "runCommand"): {desc: "For runCommand: what PUT .../runCommands/{name} takes; protected parameters are sealed to each machine."},
	field(wire.BulkOperation{}, "id"):               {desc: "Resource id: /subscriptions/{sub}/bulkOperations/{name}."},
	field(wire.BulkOperation{}, "kind"):             {enum: wire.BulkKinds},
	field(wire.BulkOperation{}, "machines"):         {desc: "How many machines the scope and tag selected."},
	field(wire.BulkOperation{}, "totals"):           {desc: "The machines by result, read from their extensions or runs as they are now (absent from lists)."},
	field(wire.BulkOperation{}, "done"):             {desc: "True once no machine is Pending."},
	field(wire.BulkMachineResult{}, "result"):       {enum: wire.BulkResults},
	field(wire.BulkMachineResult{}, "state"):        {desc: "The machine's extension state (Creating...Failed) or run state (Pending...TimedOut)."},
}

var bulkTypeDocs = map[reflect.Type]string{
	reflect.TypeOf(wire.BulkOperationCreate{}): "One change for every machine of a scope, optionally only those with a tag.",
	reflect.TypeOf(wire.BulkOperation{}):       "A bulk operation with its totals by result.",
	reflect.TypeOf(wire.BulkMachineResult{}):   "One machine of a bulk operation with its result.",
}

func init() {
	maps.Copy(fieldDocs, bulkFieldDocs)
	maps.Copy(typeDocs, bulkTypeDocs)
}
