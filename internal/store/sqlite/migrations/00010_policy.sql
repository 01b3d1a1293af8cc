-- Policy: custom definitions, assignments, exemptions, compliance per
-- assignment × machine (× rule) with history, remediations made by apply
-- modes, on-demand evaluations. Conventions as in 00001 (times are unix
-- microseconds, names compared on lower(...), booleans are INTEGER 0/1,
-- string lists are JSON arrays).

-- +goose Up
CREATE TABLE policy_definitions (
    name                TEXT    NOT NULL PRIMARY KEY,
    display_name        TEXT    NOT NULL,
    description         TEXT    NOT NULL,
    mode                TEXT    NOT NULL,
    effect              TEXT    NOT NULL,
    guest_configuration TEXT    NOT NULL,
    document            BLOB    NOT NULL,
    created_at          INTEGER NOT NULL,
    created_by          TEXT    NOT NULL
);
CREATE UNIQUE INDEX policy_definitions_name_ci ON policy_definitions (lower(name));

CREATE TABLE policy_assignments (
    name                   TEXT    NOT NULL PRIMARY KEY,
    scope                  TEXT    NOT NULL,
    definition             TEXT    NOT NULL,
    parameters             BLOB,
    non_compliance_message TEXT    NOT NULL,
    assignment_type        TEXT    NOT NULL,
    not_scopes             TEXT    NOT NULL,
    description            TEXT    NOT NULL,
    created_at             INTEGER NOT NULL,
    created_by             TEXT    NOT NULL
);
CREATE UNIQUE INDEX policy_assignments_name_ci ON policy_assignments (lower(name));
CREATE INDEX policy_assignments_scope ON policy_assignments (lower(scope));
CREATE INDEX policy_assignments_definition ON policy_assignments (lower(definition));

CREATE TABLE policy_exemptions (
    name        TEXT    NOT NULL PRIMARY KEY,
    assignment  TEXT    NOT NULL,
    scope       TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    description TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL
);
CREATE UNIQUE INDEX policy_exemptions_name_ci ON policy_exemptions (lower(name));
CREATE INDEX policy_exemptions_assignment ON policy_exemptions (lower(assignment));

CREATE TABLE policy_machine_status (
    assignment         TEXT    NOT NULL,
    machine_id         TEXT    NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    machine_scope      TEXT    NOT NULL,
    definition         TEXT    NOT NULL,
    compliance_state   TEXT    NOT NULL,
    reason             TEXT    NOT NULL,
    evaluation_request TEXT    NOT NULL,
    evaluated_at       INTEGER NOT NULL,
    PRIMARY KEY (assignment, machine_id)
);
CREATE INDEX policy_machine_status_machine ON policy_machine_status (machine_id);
CREATE INDEX policy_machine_status_scope ON policy_machine_status (lower(machine_scope));

-- skey is assignment, machine id and rule joined by U+001F: the paging key.
CREATE TABLE policy_states (
    skey             TEXT    NOT NULL PRIMARY KEY,
    assignment       TEXT    NOT NULL,
    machine_id       TEXT    NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    machine_scope    TEXT    NOT NULL,
    definition       TEXT    NOT NULL,
    rule             TEXT    NOT NULL,
    title            TEXT    NOT NULL,
    severity         TEXT    NOT NULL,
    compliance_state TEXT    NOT NULL,
    evidence         TEXT    NOT NULL,
    ssg_rule_id      TEXT    NOT NULL,
    ts               INTEGER NOT NULL
);
CREATE INDEX policy_states_am ON policy_states (assignment, machine_id);
CREATE INDEX policy_states_machine ON policy_states (machine_id);
CREATE INDEX policy_states_scope ON policy_states (lower(machine_scope));

CREATE TABLE policy_state_history (
    skey             TEXT    NOT NULL,
    machine_id       TEXT    NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    compliance_state TEXT    NOT NULL,
    evidence         TEXT    NOT NULL,
    ts               INTEGER NOT NULL
);
CREATE INDEX policy_state_history_key ON policy_state_history (skey, ts);

CREATE TABLE policy_remediations (
    id                     TEXT    NOT NULL PRIMARY KEY,
    assignment             TEXT    NOT NULL,
    machine_id             TEXT    NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    machine_scope          TEXT    NOT NULL,
    rule                   TEXT    NOT NULL,
    state                  TEXT    NOT NULL,
    result                 TEXT    NOT NULL,
    message                TEXT    NOT NULL,
    evidence_before        TEXT    NOT NULL,
    evidence_after         TEXT    NOT NULL,
    files                  BLOB,
    created_at             INTEGER NOT NULL,
    rollback_requested_at  INTEGER NOT NULL,
    rollback_requested_by  TEXT    NOT NULL,
    force                  INTEGER NOT NULL,
    origin                 BLOB,
    updated_at             INTEGER NOT NULL
);
CREATE INDEX policy_remediations_machine ON policy_remediations (machine_id, state);
CREATE INDEX policy_remediations_scope ON policy_remediations (lower(machine_scope), id);

CREATE TABLE policy_evaluations (
    id           TEXT    NOT NULL PRIMARY KEY,
    scope        TEXT    NOT NULL,
    requested_at INTEGER NOT NULL,
    requested_by TEXT    NOT NULL
);
CREATE INDEX policy_evaluations_scope ON policy_evaluations (lower(scope), id);

-- +goose Down
DROP TABLE policy_evaluations;
DROP TABLE policy_remediations;
DROP TABLE policy_state_history;
DROP TABLE policy_states;
DROP TABLE policy_machine_status;
DROP TABLE policy_exemptions;
DROP TABLE policy_assignments;
DROP TABLE policy_definitions;
