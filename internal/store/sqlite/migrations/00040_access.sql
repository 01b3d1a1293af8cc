-- Secure access: JIT policies and grants, what machines report about their
-- access feature, SSH certificates issued and relayed sessions. Conventions
-- as in 00001 (times are unix microseconds, names compared on lower(...),
-- booleans are INTEGER 0/1, string lists are JSON arrays).

-- +goose Up
-- scope is "/", a subscription, a resource group or a machine id.
CREATE TABLE jit_policies (
    scope            TEXT    NOT NULL PRIMARY KEY,
    ports            TEXT    NOT NULL,
    allowed_sources  TEXT    NOT NULL,
    max_duration_ms  INTEGER NOT NULL,
    require_approval INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    updated_by       TEXT    NOT NULL
);
CREATE UNIQUE INDEX jit_policies_scope_ci ON jit_policies (lower(scope));

-- id is the caller's time-ordered id: lists are newest first by id.
CREATE TABLE jit_grants (
    id              TEXT    NOT NULL PRIMARY KEY,
    machine_id      TEXT    NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    machine_scope   TEXT    NOT NULL,
    port            TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    duration_ms     INTEGER NOT NULL,
    justification   TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    message         TEXT    NOT NULL,
    requested_by_id TEXT    NOT NULL,
    requested_by    TEXT    NOT NULL,
    requested_at    INTEGER NOT NULL,
    approved_by_id  TEXT    NOT NULL,
    approved_by     TEXT    NOT NULL,
    approved_at     INTEGER NOT NULL,
    expires_at      INTEGER NOT NULL,
    applied_at      INTEGER NOT NULL,
    revoked_by      TEXT    NOT NULL,
    revoked_at      INTEGER NOT NULL,
    origin          BLOB,
    updated_at      INTEGER NOT NULL
);
CREATE INDEX jit_grants_machine ON jit_grants (machine_id, state, expires_at);
CREATE INDEX jit_grants_scope ON jit_grants (lower(machine_scope), id);

CREATE TABLE machine_access (
    machine_id  TEXT    NOT NULL PRIMARY KEY REFERENCES machines (id) ON DELETE CASCADE,
    jit_state   TEXT    NOT NULL,
    jit_message TEXT    NOT NULL,
    ssh_state   TEXT    NOT NULL,
    ssh_message TEXT    NOT NULL,
    admin_user  TEXT    NOT NULL,
    login_user  TEXT    NOT NULL,
    host_keys   TEXT    NOT NULL,
    reported_at INTEGER NOT NULL
);

CREATE TABLE ssh_certificates (
    id           TEXT    NOT NULL PRIMARY KEY,
    machine_id   TEXT    NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    caller_id    TEXT    NOT NULL,
    caller       TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    login        TEXT    NOT NULL,
    principal    TEXT    NOT NULL,
    serial       TEXT    NOT NULL,
    issued_at    INTEGER NOT NULL,
    valid_before INTEGER NOT NULL
);

CREATE TABLE ssh_sessions (
    id                 TEXT    NOT NULL PRIMARY KEY,
    machine_id         TEXT    NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    machine_scope      TEXT    NOT NULL,
    port               INTEGER NOT NULL,
    caller_id          TEXT    NOT NULL,
    caller             TEXT    NOT NULL,
    source_ip          TEXT    NOT NULL,
    certificate_id     TEXT    NOT NULL,
    login              TEXT    NOT NULL,
    replica            TEXT    NOT NULL,
    started_at         INTEGER NOT NULL,
    ended_at           INTEGER NOT NULL,
    bytes_to_machine   INTEGER NOT NULL,
    bytes_from_machine INTEGER NOT NULL,
    end_requested_at   INTEGER NOT NULL,
    end_requested_by   TEXT    NOT NULL,
    end_reason         TEXT    NOT NULL,
    updated_at         INTEGER NOT NULL
);
CREATE INDEX ssh_sessions_scope ON ssh_sessions (lower(machine_scope), id);
CREATE INDEX ssh_sessions_active ON ssh_sessions (ended_at, id);

-- +goose Down
DROP TABLE ssh_sessions;
DROP TABLE ssh_certificates;
DROP TABLE machine_access;
DROP TABLE jit_grants;
DROP TABLE jit_policies;
