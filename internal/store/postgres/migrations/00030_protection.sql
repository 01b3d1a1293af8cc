-- Endpoint protection: scopes it is enabled on, signed signature sets,
-- alerts, scans, quarantine restores and what each machine reported.
-- Conventions as in 00001 (times are unix microseconds, names compared on
-- lower(...), text COLLATE "C", opaque documents are bytea).

-- +goose Up
CREATE TABLE protection_scopes (
    scope      TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    settings   BYTEA  NOT NULL,
    schedule   BYTEA,
    machines   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX protection_scopes_ci ON protection_scopes (lower(scope));

-- set is the signed file itself (at most 512 MiB).
CREATE TABLE signature_sets (
    version    BIGINT NOT NULL PRIMARY KEY,
    header     BYTEA  NOT NULL,
    sigset     BYTEA  NOT NULL,
    size       BIGINT NOT NULL,
    sha256     TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT COLLATE "C" NOT NULL
);

-- No foreign key to machines: alerts outlive their machine.
CREATE TABLE protection_alerts (
    id               TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    machine_id       TEXT COLLATE "C" NOT NULL,
    machine_resource TEXT COLLATE "C" NOT NULL,
    machine_name     TEXT COLLATE "C" NOT NULL,
    detection_id     TEXT COLLATE "C" NOT NULL,
    path             TEXT COLLATE "C" NOT NULL,
    member           TEXT COLLATE "C" NOT NULL,
    sha256           TEXT COLLATE "C" NOT NULL,
    signature        TEXT COLLATE "C" NOT NULL,
    action           TEXT COLLATE "C" NOT NULL,
    error            TEXT COLLATE "C" NOT NULL,
    source           TEXT COLLATE "C" NOT NULL,
    scan_id          TEXT COLLATE "C" NOT NULL,
    process          TEXT COLLATE "C" NOT NULL,
    pid              BIGINT NOT NULL,
    quarantine_id    TEXT COLLATE "C" NOT NULL,
    detected_at      BIGINT NOT NULL,
    state            TEXT COLLATE "C" NOT NULL,
    acknowledged_at  BIGINT NOT NULL,
    acknowledged_by  TEXT COLLATE "C" NOT NULL,
    received_at      BIGINT NOT NULL
);
CREATE UNIQUE INDEX protection_alerts_detection ON protection_alerts (machine_id, detection_id);
CREATE INDEX protection_alerts_time ON protection_alerts (detected_at, id);
CREATE INDEX protection_alerts_machine ON protection_alerts (machine_id, state);

CREATE TABLE protection_scans (
    id          TEXT COLLATE "C" NOT NULL,
    machine_id  TEXT COLLATE "C" NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    type        TEXT COLLATE "C" NOT NULL,
    paths       TEXT COLLATE "C" NOT NULL DEFAULT '[]',
    state       TEXT COLLATE "C" NOT NULL,
    message     TEXT COLLATE "C" NOT NULL,
    scheduled   BOOLEAN NOT NULL,
    files       BIGINT NOT NULL,
    bytes       BIGINT NOT NULL,
    infected    BIGINT NOT NULL,
    errors      BIGINT NOT NULL,
    origin      BYTEA,
    created_at  BIGINT NOT NULL,
    created_by  TEXT COLLATE "C" NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    PRIMARY KEY (machine_id, id)
);
CREATE INDEX protection_scans_unfinished ON protection_scans (machine_id, state);

CREATE TABLE protection_restores (
    id            TEXT COLLATE "C" NOT NULL,
    machine_id    TEXT COLLATE "C" NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    quarantine_id TEXT COLLATE "C" NOT NULL,
    no_exclusion  BOOLEAN NOT NULL,
    force_replace BOOLEAN NOT NULL,
    state         TEXT COLLATE "C" NOT NULL,
    message       TEXT COLLATE "C" NOT NULL,
    path          TEXT COLLATE "C" NOT NULL,
    origin        BYTEA,
    created_at    BIGINT NOT NULL,
    created_by    TEXT COLLATE "C" NOT NULL,
    finished_at   BIGINT NOT NULL,
    PRIMARY KEY (machine_id, id)
);

CREATE TABLE machine_protection (
    machine_id    TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES machines (id) ON DELETE CASCADE,
    status        BYTEA,
    status_at     BIGINT NOT NULL,
    quarantine    BYTEA,
    quarantine_at BIGINT NOT NULL
);

-- +goose Down
DROP TABLE machine_protection;
DROP TABLE protection_restores;
DROP TABLE protection_scans;
DROP TABLE protection_alerts;
DROP TABLE signature_sets;
DROP TABLE protection_scopes;
