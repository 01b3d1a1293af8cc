-- Corral schema, SQLite. Conventions shared with the PostgreSQL schema (see
-- package sqlstore): times are INTEGER unix microseconds UTC; names compared
-- case-insensitively have a unique index on lower(...); tags and string lists
-- are JSON text; opaque documents are BLOBs.

-- +goose Up
CREATE TABLE subscriptions (
    name         TEXT    NOT NULL PRIMARY KEY,
    display_name TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    created_by   TEXT    NOT NULL
);
CREATE UNIQUE INDEX subscriptions_name_ci ON subscriptions (lower(name));

CREATE TABLE resource_groups (
    subscription TEXT    NOT NULL REFERENCES subscriptions (name),
    name         TEXT    NOT NULL,
    tags         TEXT    NOT NULL DEFAULT '{}',
    created_at   INTEGER NOT NULL,
    created_by   TEXT    NOT NULL,
    PRIMARY KEY (subscription, name)
);
CREATE UNIQUE INDEX resource_groups_name_ci ON resource_groups (lower(subscription), lower(name));

CREATE TABLE machines (
    id                 TEXT    NOT NULL PRIMARY KEY,
    subscription       TEXT    NOT NULL,
    resource_group     TEXT    NOT NULL,
    name               TEXT    NOT NULL,
    tags               TEXT    NOT NULL DEFAULT '{}',
    status             TEXT    NOT NULL,
    last_heartbeat     INTEGER NOT NULL,
    agent_version      TEXT    NOT NULL,
    environment        TEXT    NOT NULL,
    os_name            TEXT    NOT NULL,
    properties         BLOB,
    agent_config       BLOB,
    cert_serial        TEXT    NOT NULL,
    cert_not_after     INTEGER NOT NULL,
    generation         INTEGER NOT NULL,
    applied_generation INTEGER NOT NULL,
    created_at         INTEGER NOT NULL,
    created_by         TEXT    NOT NULL,
    updated_at         INTEGER NOT NULL,
    FOREIGN KEY (subscription, resource_group) REFERENCES resource_groups (subscription, name)
);
CREATE UNIQUE INDEX machines_name_ci ON machines (lower(subscription), lower(resource_group), lower(name));
CREATE INDEX machines_parent ON machines (subscription, resource_group);
CREATE INDEX machines_status_heartbeat ON machines (status, last_heartbeat);

CREATE TABLE users (
    id            TEXT    NOT NULL PRIMARY KEY,
    name          TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    disabled      INTEGER NOT NULL,
    created_at    INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_name_ci ON users (lower(name));

CREATE TABLE service_principals (
    client_id    TEXT    NOT NULL PRIMARY KEY,
    display_name TEXT    NOT NULL,
    secret_hash  TEXT    NOT NULL,
    expires_at   INTEGER NOT NULL,
    created_at   INTEGER NOT NULL,
    created_by   TEXT    NOT NULL
);

CREATE TABLE api_tokens (
    id           TEXT    NOT NULL PRIMARY KEY,
    name         TEXT    NOT NULL,
    principal_id TEXT    NOT NULL,
    hash         TEXT    NOT NULL UNIQUE,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL
);
CREATE INDEX api_tokens_principal ON api_tokens (principal_id);

CREATE TABLE device_codes (
    user_code        TEXT    NOT NULL PRIMARY KEY,
    device_code_hash TEXT    NOT NULL UNIQUE,
    subscription     TEXT    NOT NULL,
    resource_group   TEXT    NOT NULL,
    machine_name     TEXT    NOT NULL,
    source_ip        TEXT    NOT NULL,
    expires_at       INTEGER NOT NULL,
    approved_by      TEXT    NOT NULL,
    approved_at      INTEGER NOT NULL,
    consumed         INTEGER NOT NULL,
    created_at       INTEGER NOT NULL
);

CREATE TABLE role_definitions (
    id                TEXT    NOT NULL PRIMARY KEY,
    name              TEXT    NOT NULL,
    description       TEXT    NOT NULL,
    actions           TEXT    NOT NULL,
    not_actions       TEXT    NOT NULL,
    assignable_scopes TEXT    NOT NULL,
    created_at        INTEGER NOT NULL,
    created_by        TEXT    NOT NULL
);
CREATE UNIQUE INDEX role_definitions_name_ci ON role_definitions (lower(name));

-- role_id has no foreign key: assignments also name built-in roles, which live in code.
CREATE TABLE role_assignments (
    id             TEXT    NOT NULL PRIMARY KEY,
    principal_id   TEXT    NOT NULL,
    principal_type TEXT    NOT NULL,
    role_id        TEXT    NOT NULL,
    scope          TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    created_by     TEXT    NOT NULL
);
CREATE UNIQUE INDEX role_assignments_unique ON role_assignments (principal_id, role_id, lower(scope));
CREATE INDEX role_assignments_role ON role_assignments (role_id);

-- Append-only. id is the caller's time-ordered id and the list order.
CREATE TABLE activity (
    id             TEXT    NOT NULL PRIMARY KEY,
    occurred_at    INTEGER NOT NULL,
    caller_id      TEXT    NOT NULL,
    caller         TEXT    NOT NULL,
    caller_type    TEXT    NOT NULL,
    action         TEXT    NOT NULL,
    scope          TEXT    NOT NULL,
    result         TEXT    NOT NULL,
    status         INTEGER NOT NULL,
    message        TEXT    NOT NULL,
    correlation_id TEXT    NOT NULL,
    source_ip      TEXT    NOT NULL,
    method         TEXT    NOT NULL,
    path           TEXT    NOT NULL
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
