-- Secure access: JIT policies and grants, what machines report about their
-- access feature, SSH certificates issued and relayed sessions. Conventions
-- as in 00001 (times are unix microseconds, names compared on lower(...),
-- text COLLATE "C", string lists are JSON arrays, origin is bytea).

-- +goose Up
-- scope is "/", a subscription, a resource group or a machine id.
CREATE TABLE jit_policies (
    scope            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    ports            TEXT COLLATE "C" NOT NULL,
    allowed_sources  TEXT COLLATE "C" NOT NULL,
    max_duration_ms  BIGINT  NOT NULL,
    require_approval BOOLEAN NOT NULL,
    updated_at       BIGINT  NOT NULL,
    updated_by       TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX jit_policies_scope_ci ON jit_policies (lower(scope));

-- id is the caller's time-ordered id: lists are newest first by id.
CREATE TABLE jit_grants (
    id              TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    machine_id      TEXT COLLATE "C" NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    machine_scope   TEXT COLLATE "C" NOT NULL,
    port            TEXT COLLATE "C" NOT NULL,
    source          TEXT COLLATE "C" NOT NULL,
    duration_ms     BIGINT  NOT NULL,
    justification   TEXT COLLATE "C" NOT NULL,
    state           TEXT COLLATE "C" NOT NULL,
    message         TEXT COLLATE "C" NOT NULL,
    requested_by_id TEXT COLLATE "C" NOT NULL,
    requested_by    TEXT COLLATE "C" NOT NULL,
    requested_at    BIGINT  NOT NULL,
    approved_by_id  TEXT COLLATE "C" NOT NULL,
    approved_by     TEXT COLLATE "C" NOT NULL,
    approved_at     BIGINT  NOT NULL,
    expires_at      BIGINT  NOT NULL,
    applied_at      BIGINT  NOT NULL,
    revoked_by      TEXT COLLATE "C" NOT NULL,
    revoked_at      BIGINT  NOT NULL,
    origin          BYTEA,
    updated_at      BIGINT  NOT NULL
);
CREATE INDEX jit_grants_machine ON jit_grants (machine_id, state, expires_at);
CREATE INDEX jit_grants_scope ON jit_grants (lower(machine_scope), id);

CREATE TABLE machine_access (
    machine_id  TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES machines (id) ON DELETE CASCADE,
    jit_state   TEXT COLLATE "C" NOT NULL,
    jit_message TEXT COLLATE "C" NOT NULL,
    ssh_state   TEXT COLLATE "C" NOT NULL,
    ssh_message TEXT COLLATE "C" NOT NULL,
    admin_user  TEXT COLLATE "C" NOT NULL,
    login_user  TEXT COLLATE "C" NOT NULL,
    host_keys   TEXT COLLATE "C" NOT NULL,
    reported_at BIGINT  NOT NULL
);

CREATE TABLE ssh_certificates (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    machine_id   TEXT COLLATE "C" NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    caller_id    TEXT COLLATE "C" NOT NULL,
    caller       TEXT COLLATE "C" NOT NULL,
    kind         TEXT COLLATE "C" NOT NULL,
    login        TEXT COLLATE "C" NOT NULL,
    principal    TEXT COLLATE "C" NOT NULL,
    serial       TEXT COLLATE "C" NOT NULL,
    issued_at    BIGINT  NOT NULL,
    valid_before BIGINT  NOT NULL
);

CREATE TABLE ssh_sessions (
    id                 TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    machine_id         TEXT COLLATE "C" NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    machine_scope      TEXT COLLATE "C" NOT NULL,
    port               BIGINT  NOT NULL,
    caller_id          TEXT COLLATE "C" NOT NULL,
    caller             TEXT COLLATE "C" NOT NULL,
    source_ip          TEXT COLLATE "C" NOT NULL,
    certificate_id     TEXT COLLATE "C" NOT NULL,
    login              TEXT COLLATE "C" NOT NULL,
    replica            TEXT COLLATE "C" NOT NULL,
    started_at         BIGINT  NOT NULL,
    ended_at           BIGINT  NOT NULL,
    bytes_to_machine   BIGINT  NOT NULL,
    bytes_from_machine BIGINT  NOT NULL,
    end_requested_at   BIGINT  NOT NULL,
    end_requested_by   TEXT COLLATE "C" NOT NULL,
    end_reason         TEXT COLLATE "C" NOT NULL,
    updated_at         BIGINT  NOT NULL
);
CREATE INDEX ssh_sessions_scope ON ssh_sessions (lower(machine_scope), id);
CREATE INDEX ssh_sessions_active ON ssh_sessions (ended_at, id);

-- +goose Down
DROP TABLE ssh_sessions;
DROP TABLE ssh_certificates;
DROP TABLE machine_access;
DROP TABLE jit_grants;
DROP TABLE jit_policies;
