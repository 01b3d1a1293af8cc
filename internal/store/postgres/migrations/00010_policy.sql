-- Policy: custom definitions, assignments, exemptions, compliance per
-- assignment × machine (× rule) with history, remediations made by apply
-- modes, on-demand evaluations. Conventions as in 00001 (times are unix
-- microseconds, names compared on lower(...), text COLLATE "C", blobs are bytea,
-- string lists are JSON arrays).

-- +goose Up
CREATE TABLE policy_definitions (
    name                TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    display_name        TEXT COLLATE "C" NOT NULL,
    description         TEXT COLLATE "C" NOT NULL,
    mode                TEXT COLLATE "C" NOT NULL,
    effect              TEXT COLLATE "C" NOT NULL,
    guest_configuration TEXT COLLATE "C" NOT NULL,
    document            BYTEA    NOT NULL,
    created_at          BIGINT  NOT NULL,
    created_by          TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX policy_definitions_name_ci ON policy_definitions (lower(name));

CREATE TABLE policy_assignments (
    name                   TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    scope                  TEXT COLLATE "C" NOT NULL,
    definition             TEXT COLLATE "C" NOT NULL,
    parameters             BYTEA,
    non_compliance_message TEXT COLLATE "C" NOT NULL,
    assignment_type        TEXT COLLATE "C" NOT NULL,
    not_scopes             TEXT COLLATE "C" NOT NULL,
    description            TEXT COLLATE "C" NOT NULL,
    created_at             BIGINT  NOT NULL,
    created_by             TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX policy_assignments_name_ci ON policy_assignments (lower(name));
CREATE INDEX policy_assignments_scope ON policy_assignments (lower(scope));
CREATE INDEX policy_assignments_definition ON policy_assignments (lower(definition));

CREATE TABLE policy_exemptions (
    name        TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    assignment  TEXT COLLATE "C" NOT NULL,
    scope       TEXT COLLATE "C" NOT NULL,
    category    TEXT COLLATE "C" NOT NULL,
    expires_at  BIGINT  NOT NULL,
    description TEXT COLLATE "C" NOT NULL,
    created_at  BIGINT  NOT NULL,
    created_by  TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX policy_exemptions_name_ci ON policy_exemptions (lower(name));
CREATE INDEX policy_exemptions_assignment ON policy_exemptions (lower(assignment));

CREATE TABLE policy_machine_status (
    assignment         TEXT COLLATE "C" NOT NULL,
    machine_id         TEXT COLLATE "C" NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    machine_scope      TEXT COLLATE "C" NOT NULL,
    definition         TEXT COLLATE "C" NOT NULL,
    compliance_state   TEXT COLLATE "C" NOT NULL,
    reason             TEXT COLLATE "C" NOT NULL,
    evaluation_request TEXT COLLATE "C" NOT NULL,
    evaluated_at       BIGINT  NOT NULL,
    PRIMARY KEY (assignment, machine_id)
);
CREATE INDEX policy_machine_status_machine ON policy_machine_status (machine_id);
CREATE INDEX policy_machine_status_scope ON policy_machine_status (lower(machine_scope));

-- skey is assignment, machine id and rule joined by U+001F: the paging key.
CREATE TABLE policy_states (
    skey             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    assignment       TEXT COLLATE "C" NOT NULL,
    machine_id       TEXT COLLATE "C" NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    machine_scope    TEXT COLLATE "C" NOT NULL,
    definition       TEXT COLLATE "C" NOT NULL,
    rule             TEXT COLLATE "C" NOT NULL,
    title            TEXT COLLATE "C" NOT NULL,
    severity         TEXT COLLATE "C" NOT NULL,
    compliance_state TEXT COLLATE "C" NOT NULL,
    evidence         TEXT COLLATE "C" NOT NULL,
    ssg_rule_id      TEXT COLLATE "C" NOT NULL,
    ts               BIGINT  NOT NULL
);
CREATE INDEX policy_states_am ON policy_states (assignment, machine_id);
CREATE INDEX policy_states_machine ON policy_states (machine_id);
CREATE INDEX policy_states_scope ON policy_states (lower(machine_scope));

CREATE TABLE policy_state_history (
    skey             TEXT COLLATE "C" NOT NULL,
    machine_id       TEXT COLLATE "C" NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    compliance_state TEXT COLLATE "C" NOT NULL,
    evidence         TEXT COLLATE "C" NOT NULL,
    ts               BIGINT  NOT NULL
);
CREATE INDEX policy_state_history_key ON policy_state_history (skey, ts);

CREATE TABLE policy_remediations (
    id                     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    assignment             TEXT COLLATE "C" NOT NULL,
    machine_id             TEXT COLLATE "C" NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    machine_scope          TEXT COLLATE "C" NOT NULL,
    rule                   TEXT COLLATE "C" NOT NULL,
    state                  TEXT COLLATE "C" NOT NULL,
    result                 TEXT COLLATE "C" NOT NULL,
    message                TEXT COLLATE "C" NOT NULL,
    evidence_before        TEXT COLLATE "C" NOT NULL,
    evidence_after         TEXT COLLATE "C" NOT NULL,
    files                  BYTEA,
    created_at             BIGINT  NOT NULL,
    rollback_requested_at  BIGINT  NOT NULL,
    rollback_requested_by  TEXT COLLATE "C" NOT NULL,
    force                  BOOLEAN NOT NULL,
    origin                 BYTEA,
    updated_at             BIGINT  NOT NULL
);
CREATE INDEX policy_remediations_machine ON policy_remediations (machine_id, state);
CREATE INDEX policy_remediations_scope ON policy_remediations (lower(machine_scope), id);

CREATE TABLE policy_evaluations (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    scope        TEXT COLLATE "C" NOT NULL,
    requested_at BIGINT  NOT NULL,
    requested_by TEXT COLLATE "C" NOT NULL
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
