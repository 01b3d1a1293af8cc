-- Extensions: publishers, packages and their signed catalogs; extensions and
-- run commands of machines; the machine's sealing key. Conventions as in
-- 00001 (times are unix microseconds, names compared on lower(...), booleans
-- are INTEGER 0/1, opaque documents are BLOBs).

-- +goose Up
ALTER TABLE machines ADD COLUMN sealing_key BLOB;

CREATE TABLE publishers (
    name       TEXT    NOT NULL PRIMARY KEY,
    public_key BLOB    NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL
);
CREATE UNIQUE INDEX publishers_name_ci ON publishers (lower(name));

-- archive holds the package itself (at most 64 MiB). version_key is the
-- version zero-padded ("000001.000010.000000") so it sorts numerically.
CREATE TABLE packages (
    publisher    TEXT    NOT NULL REFERENCES publishers (name),
    type         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    version_key  TEXT    NOT NULL,
    digest       TEXT    NOT NULL UNIQUE,
    size         INTEGER NOT NULL,
    manifest     BLOB    NOT NULL,
    archive      BLOB    NOT NULL,
    published_at INTEGER NOT NULL,
    published_by TEXT    NOT NULL,
    PRIMARY KEY (publisher, type, version)
);
CREATE UNIQUE INDEX packages_ci ON packages (lower(publisher), lower(type), version_key);

-- One current catalog per publisher: the exact signed bytes.
CREATE TABLE catalogs (
    publisher   TEXT    NOT NULL PRIMARY KEY REFERENCES publishers (name),
    serial      INTEGER NOT NULL,
    catalog     BLOB    NOT NULL,
    signature   BLOB    NOT NULL,
    uploaded_at INTEGER NOT NULL,
    uploaded_by TEXT    NOT NULL
);

-- protected_settings is ciphertext sealed to the machine; never plaintext.
CREATE TABLE machine_extensions (
    machine_id         TEXT    NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    name               TEXT    NOT NULL,
    publisher          TEXT    NOT NULL,
    type               TEXT    NOT NULL,
    version            TEXT    NOT NULL,
    digest             TEXT    NOT NULL,
    settings           BLOB,
    protected_settings BLOB,
    seq_no             INTEGER NOT NULL,
    deleting           INTEGER NOT NULL,
    delete_generation  INTEGER NOT NULL,
    state              TEXT    NOT NULL,
    message            TEXT    NOT NULL,
    reported_version   TEXT    NOT NULL,
    agent_reported     INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    created_by         TEXT    NOT NULL,
    updated_at         INTEGER NOT NULL,
    updated_by         TEXT    NOT NULL,
    PRIMARY KEY (machine_id, name)
);
CREATE UNIQUE INDEX machine_extensions_name_ci ON machine_extensions (machine_id, lower(name));

-- id is the caller's time-ordered id: lists are newest first by id.
CREATE TABLE run_commands (
    id          TEXT    NOT NULL PRIMARY KEY,
    machine_id  TEXT    NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    script      TEXT    NOT NULL,
    command     TEXT    NOT NULL,
    parameters  TEXT    NOT NULL DEFAULT '{}',
    run_as_user TEXT    NOT NULL,
    timeout_ms  INTEGER NOT NULL,
    state       TEXT    NOT NULL,
    exit_code   INTEGER,
    stdout      TEXT    NOT NULL,
    stderr      TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE UNIQUE INDEX run_commands_name_ci ON run_commands (machine_id, lower(name));
CREATE INDEX run_commands_machine ON run_commands (machine_id, id);
CREATE INDEX run_commands_unfinished ON run_commands (machine_id, state);

-- +goose Down
DROP TABLE run_commands;
DROP TABLE machine_extensions;
DROP TABLE catalogs;
DROP TABLE packages;
DROP TABLE publishers;
ALTER TABLE machines DROP COLUMN sealing_key;
