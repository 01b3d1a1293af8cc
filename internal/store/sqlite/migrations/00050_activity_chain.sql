-- +goose Up
-- The tamper-evident activity chain (internal/auditchain): an entry's place
-- (seq, counted from 1, NULL until sealed), the hash of the entry before it
-- and its own. activity_chain holds the chain's base (what the oldest kept
-- entry follows) and head (the last sealed entry); its one row is locked by
-- every sealer, so replicas seal one at a time.
ALTER TABLE activity ADD COLUMN seq INTEGER;
ALTER TABLE activity ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE activity ADD COLUMN hash TEXT NOT NULL DEFAULT '';
CREATE UNIQUE INDEX activity_seq ON activity (seq);
CREATE INDEX activity_unsealed ON activity (id) WHERE seq IS NULL;
CREATE TABLE activity_chain (
    id        INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    base_seq  INTEGER NOT NULL,
    base_hash TEXT NOT NULL,
    head_seq  INTEGER NOT NULL,
    head_hash TEXT NOT NULL
);
INSERT INTO activity_chain (id, base_seq, base_hash, head_seq, head_hash) VALUES (1, 0, '', 0, '');

-- +goose Down
DROP TABLE activity_chain;
DROP INDEX activity_unsealed;
DROP INDEX activity_seq;
ALTER TABLE activity DROP COLUMN hash;
ALTER TABLE activity DROP COLUMN prev_hash;
ALTER TABLE activity DROP COLUMN seq;
