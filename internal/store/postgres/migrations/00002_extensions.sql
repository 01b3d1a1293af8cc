-- Extensions: publishers, packages and their signed catalogs; extensions and
-- run commands of machines; the machine's sealing key. Conventions as in
-- 00001 (times are BIGINT unix microseconds, names compared on lower(...),
-- text COLLATE "C", opaque documents are bytea).

-- +goose Up
ALTER TABLE machines ADD COLUMN sealing_key BYTEA;

CREATE TABLE publishers (
    name       TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    public_key BYTEA  NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX publishers_name_ci ON publishers (lower(name));

-- archive holds the package itself (at most 64 MiB). version_key is the
-- version zero-padded ("000001.000010.000000") so it sorts numerically.
CREATE TABLE packages (
    publisher    TEXT COLLATE "C" NOT NULL REFERENCES publishers (name),
    type         TEXT COLLATE "C" NOT NULL,
    version      TEXT COLLATE "C" NOT NULL,
    version_key  TEXT COLLATE "C" NOT NULL,
    digest       TEXT COLLATE "C" NOT NULL UNIQUE,
    size         BIGINT NOT NULL,
    manifest     BYTEA  NOT NULL,
    archive      BYTEA  NOT NULL,
    published_at BIGINT NOT NULL,
    published_by TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (publisher, type, version)
);
CREATE UNIQUE INDEX packages_ci ON packages (lower(publisher), lower(type), version_key);

-- One current catalog per publisher: the exact signed bytes.
CREATE TABLE catalogs (
    publisher   TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES publishers (name),
    serial      BIGINT NOT NULL,
    catalog     BYTEA  NOT NULL,
    signature   BYTEA  NOT NULL,
    uploaded_at BIGINT NOT NULL,
    uploaded_by TEXT COLLATE "C" NOT NULL
);

-- protected_settings is ciphertext sealed to the machine; never plaintext.
CREATE TABLE machine_extensions (
    machine_id         TEXT COLLATE "C" NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    name               TEXT COLLATE "C" NOT NULL,
    publisher          TEXT COLLATE "C" NOT NULL,
    type               TEXT COLLATE "C" NOT NULL,
    version            TEXT COLLATE "C" NOT NULL,
    digest             TEXT COLLATE "C" NOT NULL,
    settings           BYTEA,
    protected_settings BYTEA,
    seq_no             BIGINT  NOT NULL,
    deleting           BOOLEAN NOT NULL,
    delete_generation  BIGINT  NOT NULL,
    state              TEXT COLLATE "C" NOT NULL,
    message            TEXT COLLATE "C" NOT NULL,
    reported_version   TEXT COLLATE "C" NOT NULL,
    agent_reported     BOOLEAN NOT NULL,
    created_at         BIGINT NOT NULL,
    created_by         TEXT COLLATE "C" NOT NULL,
    updated_at         BIGINT NOT NULL,
    updated_by         TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (machine_id, name)
);
CREATE UNIQUE INDEX machine_extensions_name_ci ON machine_extensions (machine_id, lower(name));

-- id is the caller's time-ordered id: lists are newest first by id.
CREATE TABLE run_commands (
    id          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    machine_id  TEXT COLLATE "C" NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    name        TEXT COLLATE "C" NOT NULL,
    script      TEXT COLLATE "C" NOT NULL,
    command     TEXT COLLATE "C" NOT NULL,
    parameters  TEXT COLLATE "C" NOT NULL DEFAULT '{}',
    run_as_user TEXT COLLATE "C" NOT NULL,
    timeout_ms  BIGINT NOT NULL,
    state       TEXT COLLATE "C" NOT NULL,
    exit_code   INTEGER,
    stdout      TEXT COLLATE "C" NOT NULL,
    stderr      TEXT COLLATE "C" NOT NULL,
    message     TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT NOT NULL,
    created_by  TEXT COLLATE "C" NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
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
