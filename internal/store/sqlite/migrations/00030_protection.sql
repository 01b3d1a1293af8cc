-- Endpoint protection: scopes it is enabled on, signed signature sets,
-- alerts, scans, quarantine restores and what each machine reported.
-- Conventions as in 00001 (times are unix microseconds, names compared on
-- lower(...), booleans are INTEGER 0/1, opaque documents are BLOBs).

-- +goose Up
CREATE TABLE protection_scopes (
    scope      TEXT    NOT NULL PRIMARY KEY,
    settings   BLOB    NOT NULL,
    schedule   BLOB,
    machines   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT    NOT NULL
);
CREATE UNIQUE INDEX protection_scopes_ci ON protection_scopes (lower(scope));

-- set is the signed file itself (at most 512 MiB).
CREATE TABLE signature_sets (
    version    INTEGER NOT NULL PRIMARY KEY,
    header     BLOB    NOT NULL,
    sigset     BLOB    NOT NULL,
    size       INTEGER NOT NULL,
    sha256     TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL
);

-- No foreign key to machines: alerts outlive their machine.
CREATE TABLE protection_alerts (
    id               TEXT    NOT NULL PRIMARY KEY,
    machine_id       TEXT    NOT NULL,
    machine_resource TEXT    NOT NULL,
    machine_name     TEXT    NOT NULL,
    detection_id     TEXT    NOT NULL,
    path             TEXT    NOT NULL,
    member           TEXT    NOT NULL,
    sha256           TEXT    NOT NULL,
    signature        TEXT    NOT NULL,
    action           TEXT    NOT NULL,
    error            TEXT    NOT NULL,
    source           TEXT    NOT NULL,
    scan_id          TEXT    NOT NULL,
    process          TEXT    NOT NULL,
    pid              INTEGER NOT NULL,
    quarantine_id    TEXT    NOT NULL,
    detected_at      INTEGER NOT NULL,
    state            TEXT    NOT NULL,
    acknowledged_at  INTEGER NOT NULL,
    acknowledged_by  TEXT    NOT NULL,
    received_at      INTEGER NOT NULL
);
CREATE UNIQUE INDEX protection_alerts_detection ON protection_alerts (machine_id, detection_id);
CREATE INDEX protection_alerts_time ON protection_alerts (detected_at, id);
CREATE INDEX protection_alerts_machine ON protection_alerts (machine_id, state);

CREATE TABLE protection_scans (
    id          TEXT    NOT NULL,
    machine_id  TEXT    NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    type        TEXT    NOT NULL,
    paths       TEXT    NOT NULL DEFAULT '[]',
    state       TEXT    NOT NULL,
    message     TEXT    NOT NULL,
    scheduled   INTEGER NOT NULL,
    files       INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    infected    INTEGER NOT NULL,
    errors      INTEGER NOT NULL,
    origin      BLOB,
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (machine_id, id)
);
CREATE INDEX protection_scans_unfinished ON protection_scans (machine_id, state);

CREATE TABLE protection_restores (
    id            TEXT    NOT NULL,
    machine_id    TEXT    NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    quarantine_id TEXT    NOT NULL,
    no_exclusion  INTEGER NOT NULL,
    force_replace INTEGER NOT NULL,
    state         TEXT    NOT NULL,
    message       TEXT    NOT NULL,
    path          TEXT    NOT NULL,
    origin        BLOB,
    created_at    INTEGER NOT NULL,
    created_by    TEXT    NOT NULL,
    finished_at   INTEGER NOT NULL,
    PRIMARY KEY (machine_id, id)
);

CREATE TABLE machine_protection (
    machine_id    TEXT    NOT NULL PRIMARY KEY REFERENCES machines (id) ON DELETE CASCADE,
    status        BLOB,
    status_at     INTEGER NOT NULL,
    quarantine    BLOB,
    quarantine_at INTEGER NOT NULL
);

-- +goose Down
DROP TABLE machine_protection;
DROP TABLE protection_restores;
DROP TABLE protection_scans;
DROP TABLE protection_alerts;
DROP TABLE signature_sets;
DROP TABLE protection_scopes;
