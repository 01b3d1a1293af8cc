-- +goose Up
-- Bulk operations (docs/bulk.md): one request that sets or removes an
-- extension, or starts a run, on every machine of a scope or tag selector.
-- bulk_operation_machines names each machine it touched with the seqNo
-- (extensionSet), delete generation (extensionDelete) or nothing
-- (runCommand) it gave it; a machine's result is read from its extension
-- or run, unless state holds a result fixed when the operation was made
-- (refused for that machine, or nothing to do). Machines are not a foreign
-- key: the history outlives them.
CREATE TABLE bulk_operations (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    subscription TEXT COLLATE "C" NOT NULL,
    scope        TEXT COLLATE "C" NOT NULL,
    tag          TEXT COLLATE "C" NOT NULL,
    kind         TEXT COLLATE "C" NOT NULL,
    name         TEXT COLLATE "C" NOT NULL,
    publisher    TEXT COLLATE "C" NOT NULL,
    type         TEXT COLLATE "C" NOT NULL,
    version      TEXT COLLATE "C" NOT NULL,
    machines     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT COLLATE "C" NOT NULL
);
CREATE INDEX bulk_operations_sub ON bulk_operations (lower(subscription), id);
CREATE TABLE bulk_operation_machines (
    operation_id TEXT COLLATE "C" NOT NULL REFERENCES bulk_operations (id) ON DELETE CASCADE,
    machine_id   TEXT COLLATE "C" NOT NULL,
    seq_no       BIGINT NOT NULL,
    state        TEXT COLLATE "C" NOT NULL,
    message      TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (operation_id, machine_id)
);

-- +goose Down
DROP TABLE bulk_operation_machines;
DROP TABLE bulk_operations;
