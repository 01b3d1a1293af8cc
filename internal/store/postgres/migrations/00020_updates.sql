-- Update management: assessments and each machine's update status, runs
-- (deployments across machines) with their machines, and schedules.
-- Conventions as in 00001 (times are unix microseconds, names compared on
-- lower(...), text COLLATE "C", opaque documents are bytea).

-- +goose Up
-- id is the caller's time-ordered id: lists are newest first by id.
CREATE TABLE update_assessments (
    id             TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    machine_id     TEXT COLLATE "C" NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    batch_id       TEXT COLLATE "C" NOT NULL,
    trigger_kind   TEXT COLLATE "C" NOT NULL,
    state          TEXT COLLATE "C" NOT NULL,
    reason         TEXT COLLATE "C" NOT NULL,
    message        TEXT COLLATE "C" NOT NULL,
    manager        TEXT COLLATE "C" NOT NULL,
    refreshed      BOOLEAN NOT NULL,
    critical       BIGINT  NOT NULL,
    security       BIGINT  NOT NULL,
    other          BIGINT  NOT NULL,
    reboot_pending BOOLEAN NOT NULL,
    origin         BYTEA,
    requested_at   BIGINT  NOT NULL,
    requested_by   TEXT COLLATE "C" NOT NULL,
    started_at     BIGINT  NOT NULL,
    finished_at    BIGINT  NOT NULL
);
CREATE INDEX update_assessments_machine ON update_assessments (machine_id, id);
CREATE INDEX update_assessments_pending ON update_assessments (machine_id, state);
CREATE INDEX update_assessments_batch ON update_assessments (batch_id, state);
-- The scheduler fails requests nobody answered: pending ones by age.
CREATE INDEX update_assessments_expiry ON update_assessments (state, requested_at);

-- One row per enrolled machine; updates is the JSON list of its last
-- successful assessment.
CREATE TABLE machine_update_status (
    machine_id     TEXT COLLATE "C" NOT NULL PRIMARY KEY REFERENCES machines (id) ON DELETE CASCADE,
    assessment_id  TEXT COLLATE "C" NOT NULL,
    state          TEXT COLLATE "C" NOT NULL,
    reason         TEXT COLLATE "C" NOT NULL,
    message        TEXT COLLATE "C" NOT NULL,
    manager        TEXT COLLATE "C" NOT NULL,
    refreshed      BOOLEAN NOT NULL,
    critical       BIGINT  NOT NULL,
    security       BIGINT  NOT NULL,
    other          BIGINT  NOT NULL,
    reboot_pending BOOLEAN NOT NULL,
    updates        BYTEA,
    assessed_at    BIGINT  NOT NULL,
    enrolled_at    BIGINT  NOT NULL,
    updated_at     BIGINT  NOT NULL
);

CREATE TABLE update_runs (
    id           TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    subscription TEXT COLLATE "C" NOT NULL,
    scope        TEXT COLLATE "C" NOT NULL,
    targets      BYTEA    NOT NULL,
    settings     BYTEA    NOT NULL,
    rollout      BYTEA,
    waves        BIGINT  NOT NULL,
    current_wave BIGINT  NOT NULL,
    status       TEXT COLLATE "C" NOT NULL,
    reason       TEXT COLLATE "C" NOT NULL,
    message      TEXT COLLATE "C" NOT NULL,
    trigger_kind TEXT COLLATE "C" NOT NULL,
    schedule     TEXT COLLATE "C" NOT NULL,
    origin       BYTEA,
    created_at   BIGINT  NOT NULL,
    created_by   TEXT COLLATE "C" NOT NULL,
    started_at   BIGINT  NOT NULL,
    deadline     BIGINT  NOT NULL,
    finished_at  BIGINT  NOT NULL,
    updated_at   BIGINT  NOT NULL
);
CREATE INDEX update_runs_subscription ON update_runs (lower(subscription), id);
CREATE INDEX update_runs_status ON update_runs (status, id);

CREATE TABLE update_run_machines (
    run_id          TEXT COLLATE "C" NOT NULL REFERENCES update_runs (id) ON DELETE CASCADE,
    machine_id      TEXT COLLATE "C" NOT NULL REFERENCES machines (id) ON DELETE CASCADE,
    wave            BIGINT  NOT NULL,
    dispatched      BOOLEAN NOT NULL,
    status          TEXT COLLATE "C" NOT NULL,
    reason          TEXT COLLATE "C" NOT NULL,
    message         TEXT COLLATE "C" NOT NULL,
    current_pkg     TEXT COLLATE "C" NOT NULL,
    reboot_required BOOLEAN NOT NULL,
    reboot          TEXT COLLATE "C" NOT NULL,
    recovery        TEXT COLLATE "C" NOT NULL,
    scripts         BYTEA,
    packages        BYTEA,
    started_at      BIGINT  NOT NULL,
    finished_at     BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (run_id, machine_id)
);
CREATE INDEX update_run_machines_machine ON update_run_machines (machine_id, status);
CREATE INDEX update_run_machines_wave ON update_run_machines (run_id, wave, status);

CREATE TABLE update_schedules (
    id            TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    subscription  TEXT COLLATE "C" NOT NULL,
    name          TEXT COLLATE "C" NOT NULL,
    kind          TEXT COLLATE "C" NOT NULL,
    scope         TEXT COLLATE "C" NOT NULL,
    targets       BYTEA    NOT NULL,
    cron          TEXT COLLATE "C" NOT NULL,
    time_zone     TEXT COLLATE "C" NOT NULL,
    at_time       BIGINT  NOT NULL,
    window_ms     BIGINT  NOT NULL,
    settings      BYTEA    NOT NULL,
    rollout       BYTEA,
    origin        BYTEA,
    created_at    BIGINT  NOT NULL,
    created_by    TEXT COLLATE "C" NOT NULL,
    last_fired_at BIGINT  NOT NULL,
    last_run_id   TEXT COLLATE "C" NOT NULL
);
CREATE UNIQUE INDEX update_schedules_name_ci ON update_schedules (lower(subscription), lower(name));

-- +goose Down
DROP TABLE update_schedules;
DROP TABLE update_run_machines;
DROP TABLE update_runs;
DROP TABLE machine_update_status;
DROP TABLE update_assessments;
