-- Corral schema, PostgreSQL. Conventions shared with the SQLite schema (see
-- package sqlstore): times are BIGINT unix microseconds UTC; names compared
-- case-insensitively have a unique index on lower(...); tags and string lists
-- are JSON (tags jsonb); opaque documents are bytea. Text is COLLATE "C" so
-- ordering is bytewise, as in SQLite.

-- +goose Up
CREATE TABLE subscriptions (
    name         TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    display_name TEXT COLLATE "C" NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX subscriptions_name_ci ON subscriptions (lower(name));

CREATE TABLE resource_groups (
    subscription TEXT COLLATE "C" NOT NULL REFERENCES subscriptions (name),
    name         TEXT COLLATE "C" NOT NULL,
    tags         JSONB NOT NULL DEFAULT '{}',
    created_at   BIGINT NOT NULL,
    created_by   TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (subscription, name)
);
CREATE UNIQUE INDEX resource_groups_name_ci ON resource_groups (lower(subscription), lower(name));

CREATE TABLE machines (
    id                 TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    subscription       TEXT COLLATE "C" NOT NULL,
    resource_group     TEXT COLLATE "C" NOT NULL,
    name               TEXT COLLATE "C" NOT NULL,
    tags               JSONB NOT NULL DEFAULT '{}',
    status             TEXT COLLATE "C" NOT NULL,
    last_heartbeat     BIGINT NOT NULL,
    agent_version      TEXT COLLATE "C" NOT NULL,
    environment        TEXT COLLATE "C" NOT NULL,
    os_name            TEXT COLLATE "C" NOT NULL,
    properties         BYTEA,
    agent_config       BYTEA,
    cert_serial        TEXT COLLATE "C" NOT NULL,
    cert_not_after     BIGINT NOT NULL,
    generation         BIGINT NOT NULL,
    applied_generation BIGINT NOT NULL,
    created_at         BIGINT NOT NULL,
    created_by         TEXT COLLATE "C" NOT NULL,
    updated_at         BIGINT NOT NULL,
    FOREIGN KEY (subscription, resource_group) REFERENCES resource_groups (subscription, name)
);
CREATE UNIQUE INDEX machines_name_ci ON machines (lower(subscription), lower(resource_group), lower(name));
CREATE INDEX machines_parent ON machines (subscription, resource_group);
CREATE INDEX machines_status_heartbeat ON machines (status, last_heartbeat);

CREATE TABLE users (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name          TEXT COLLATE "C" NOT NULL,
    password_hash TEXT COLLATE "C" NOT NULL,
    disabled      BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL
);
CREATE UNIQUE INDEX users_name_ci ON users (lower(name));

CREATE TABLE service_principals (
    client_id    TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    display_name TEXT COLLATE "C" NOT NULL,
    secret_hash  TEXT COLLATE "C" NOT NULL,
    expires_at   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT COLLATE "C" NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name         TEXT COLLATE "C" NOT NULL,
    principal_id TEXT COLLATE "C" NOT NULL,
    hash         TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX api_tokens_principal ON api_tokens (principal_id);

CREATE TABLE device_codes (
    user_code        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    device_code_hash TEXT COLLATE "C" NOT NULL UNIQUE,
    subscription     TEXT COLLATE "C" NOT NULL,
    resource_group   TEXT COLLATE "C" NOT NULL,
    machine_name     TEXT COLLATE "C" NOT NULL,
    source_ip        TEXT COLLATE "C" NOT NULL,
    expires_at       BIGINT NOT NULL,
    approved_by      TEXT COLLATE "C" NOT NULL,
    approved_at      BIGINT NOT NULL,
    consumed         BOOLEAN NOT NULL,
    created_at       BIGINT NOT NULL
);

CREATE TABLE role_definitions (
    id                TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    name              TEXT COLLATE "C" NOT NULL,
    description       TEXT COLLATE "C" NOT NULL,
    actions           TEXT COLLATE "C" NOT NULL,
    not_actions       TEXT COLLATE "C" NOT NULL,
    assignable_scopes TEXT COLLATE "C" NOT NULL,
    created_at        BIGINT NOT NULL,
    created_by        TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX role_definitions_name_ci ON role_definitions (lower(name));

-- role_id has no foreign key: assignments also name built-in roles, which live in code.
CREATE TABLE role_assignments (
    id             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    principal_id   TEXT COLLATE "C" NOT NULL,
    principal_type TEXT COLLATE "C" NOT NULL,
    role_id        TEXT COLLATE "C" NOT NULL,
    scope          TEXT COLLATE "C" NOT NULL,
    created_at     BIGINT NOT NULL,
    created_by     TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX role_assignments_unique ON role_assignments (principal_id, role_id, lower(scope));
CREATE INDEX role_assignments_role ON role_assignments (role_id);

-- Append-only. id is the caller's time-ordered id and the list order.
CREATE TABLE activity (
    id             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    occurred_at    BIGINT NOT NULL,
    caller_id      TEXT COLLATE "C" NOT NULL,
    caller         TEXT COLLATE "C" NOT NULL,
    caller_type    TEXT COLLATE "C" NOT NULL,
    action         TEXT COLLATE "C" NOT NULL,
    scope          TEXT COLLATE "C" NOT NULL,
    result         TEXT COLLATE "C" NOT NULL,
    status         INTEGER NOT NULL,
    message        TEXT COLLATE "C" NOT NULL,
    correlation_id TEXT COLLATE "C" NOT NULL,
    source_ip      TEXT COLLATE "C" NOT NULL,
    method         TEXT COLLATE "C" NOT NULL,
    path           TEXT COLLATE "C" NOT NULL
);
CREATE INDEX activity_caller ON activity (caller_id);
CREATE INDEX activity_occurred_at ON activity (occurred_at);

-- +goose Down
DROP TABLE activity;
DROP TABLE role_assignments;
DROP TABLE role_definitions;
DROP TABLE device_codes;
DROP TABLE api_tokens;
DROP TABLE service_principals;
DROP TABLE users;
DROP TABLE machines;
DROP TABLE resource_groups;
DROP TABLE subscriptions;
