-- +goose Up
-- Security hardening (issue 7).

-- Who onboarded a machine, by principal id: onboarding quotas count by it.
ALTER TABLE machines ADD COLUMN created_by_id TEXT NOT NULL DEFAULT '';
CREATE INDEX machines_created_by_id ON machines (created_by_id, created_at);

-- A password set for someone else can require a change at first sign-in;
-- tokens issued before sessions_valid_after no longer hold.
ALTER TABLE users ADD COLUMN must_change_password INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN sessions_valid_after INTEGER NOT NULL DEFAULT 0;

-- Run-command parameters sealed to the machine; never stored in the clear.
ALTER TABLE run_commands ADD COLUMN protected_parameters BLOB;

-- One-time facts about this control plane, e.g. that the first admin was
-- bootstrapped (so deleting it is not undone at the next start).
CREATE TABLE server_markers (
    name   TEXT    NOT NULL PRIMARY KEY,
    set_at INTEGER NOT NULL
);

-- The readiness write probe's one row.
CREATE TABLE write_probe (
    id        INTEGER NOT NULL PRIMARY KEY,
    probed_at INTEGER NOT NULL,
    filler    BLOB    NOT NULL
);

-- Expired device codes are purged.
CREATE INDEX device_codes_expires_at ON device_codes (expires_at);

-- +goose Down
DROP INDEX device_codes_expires_at;
DROP TABLE write_probe;
DROP TABLE server_markers;
ALTER TABLE run_commands DROP COLUMN protected_parameters;
ALTER TABLE users DROP COLUMN sessions_valid_after;
ALTER TABLE users DROP COLUMN must_change_password;
DROP INDEX machines_created_by_id;
ALTER TABLE machines DROP COLUMN created_by_id;
