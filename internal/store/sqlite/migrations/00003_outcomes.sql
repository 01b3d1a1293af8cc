-- +goose Up
-- Who asked for an operation a machine carries out (correlation id, caller,
-- action), so its outcome is logged in their name when the machine reports.
ALTER TABLE machine_extensions ADD COLUMN origin BLOB;
ALTER TABLE run_commands ADD COLUMN origin BLOB;

-- +goose Down
ALTER TABLE run_commands DROP COLUMN origin;
ALTER TABLE machine_extensions DROP COLUMN origin;
