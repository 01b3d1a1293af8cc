-- Update management: assessments and each machine's update status, runs
-- (deployments across machines) with their machines, and schedules.
-- Conventions as in 00001 (times are unix microseconds, names compared on
-- lower(...), booleans are INTEGER 0/1, opaque documents are BLOBs).

-- +goose Up
-- id is the caller's time-ordered id: lists are newest first by id.
CREATE TABLE update_assessments (
    id             TEXT    NOT NULL PRIMARY KEY,
    machine_id     TEXT    NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    batch_id       TEXT    NOT NULL,
    trigger_kind   TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    message        TEXT    NOT NULL,
    manager        TEXT    NOT NULL,
    refreshed      INTEGER NOT NULL,
    critical       INTEGER NOT NULL,
    security       INTEGER NOT NULL,
    other          INTEGER NOT NULL,
    reboot_pending INTEGER NOT NULL,
    origin         BLOB,
    requested_at   INTEGER NOT NULL,
    requested_by   TEXT    NOT NULL,
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER NOT NULL
);
CREATE INDEX update_assessments_machine ON update_assessments (machine_id, id);
CREATE INDEX update_assessments_pending ON update_assessments (machine_id, state);
CREATE INDEX update_assessments_batch ON update_assessments (batch_id, state);
-- The scheduler fails requests nobody answered: pending ones by age.
CREATE INDEX update_assessments_expiry ON update_assessments (state, requested_at);

-- One row per enrolled machine; updates is the JSON list of its last
-- successful assessment.
CREATE TABLE machine_update_status (
    machine_id     TEXT    NOT NULL PRIMARY KEY REFERENCES machines (id) ON DELETE CASCADE,
    assessment_id  TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    message        TEXT    NOT NULL,
    manager        TEXT    NOT NULL,
    refreshed      INTEGER NOT NULL,
    critical       INTEGER NOT NULL,
    security       INTEGER NOT NULL,
    other          INTEGER NOT NULL,
    reboot_pending INTEGER NOT NULL,
    updates        BLOB,
    assessed_at    INTEGER NOT NULL,
    enrolled_at    INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);

CREATE TABLE update_runs (
    id           TEXT    NOT NULL PRIMARY KEY,
    subscription TEXT    NOT NULL,
    scope        TEXT    NOT NULL,
    targets      BLOB    NOT NULL,
    settings     BLOB    NOT NULL,
    rollout      BLOB,
    waves        INTEGER NOT NULL,
    current_wave INTEGER NOT NULL,
    status       TEXT    NOT NULL,
    reason       TEXT    NOT NULL,
    message      TEXT    NOT NULL,
    trigger_kind TEXT    NOT NULL,
    schedule     TEXT    NOT NULL,
    origin       BLOB,
    created_at   INTEGER NOT NULL,
    created_by   TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    deadline     INTEGER NOT NULL,
    finished_at  INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);
CREATE INDEX update_runs_subscription ON update_runs (lower(subscription), id);
CREATE INDEX update_runs_status ON update_runs (status, id);

CREATE TABLE update_run_machines (
    run_id          TEXT    NOT NULL REFERENCES update_runs (id) ON DELETE CASCADE,
    machine_id      TEXT    NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    wave            INTEGER NOT NULL,
    dispatched      INTEGER NOT NULL,
    status          TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    message         TEXT    NOT NULL,
    current_pkg     TEXT    NOT NULL,
    reboot_required INTEGER NOT NULL,
    reboot          TEXT    NOT NULL,
    recovery        TEXT    NOT NULL,
    scripts         BLOB,
    packages        BLOB,
    started_at      INTEGER NOT NULL,
    finished_at     INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (run_id, machine_id)
);
CREATE INDEX update_run_machines_machine ON update_run_machines (machine_id, status);
CREATE INDEX update_run_machines_wave ON update_run_machines (run_id, wave, status);

CREATE TABLE update_schedules (
    id            TEXT    NOT NULL PRIMARY KEY,
    subscription  TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    scope         TEXT    NOT NULL,
    targets       BLOB    NOT NULL,
    cron          TEXT    NOT NULL,
    time_zone     TEXT    NOT NULL,
    at_time       INTEGER NOT NULL,
    window_ms     INTEGER NOT NULL,
    settings      BLOB    NOT NULL,
    rollout       BLOB,
    origin        BLOB,
    created_at    INTEGER NOT NULL,
    created_by    TEXT    NOT NULL,
    last_fired_at INTEGER NOT NULL,
    last_run_id   TEXT    NOT NULL
);
CREATE UNIQUE INDEX update_schedules_name_ci ON update_schedules (lower(subscription), lower(name));

-- +goose Down
DROP TABLE update_schedules;
DROP TABLE update_run_machines;
DROP TABLE update_runs;
DROP TABLE machine_update_status;
DROP TABLE update_assessments;
