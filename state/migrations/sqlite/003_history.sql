-- mailferry state, schema version 3 (SQLite).
--
-- What `mailferry status` says about a move beyond its progress:
--   result: the outcome of the last run or pass ('' while none ended:
--     done, failed, held, synced, interrupted, waiting), with its time;
--     last_error (schema 1) says why in words.
--   acquired_at_us: when the current holder took the lease.
--   *_total: what every pass of the move changed, summed over all runs.
-- mailferry_pass keeps the latest passes of each move (a short history:
-- older ones are removed as new ones are added; the totals keep them).
ALTER TABLE mailferry_migration ADD COLUMN result TEXT NOT NULL DEFAULT '';
ALTER TABLE mailferry_migration ADD COLUMN result_at_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN acquired_at_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN passes_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN copied_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN bytes_copied_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN adopted_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN flags_updated_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN expunged_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN target_only_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN duplicates_removed_total INTEGER NOT NULL DEFAULT 0;

-- One row per recent pass of a move; seq counts the move's passes from 1.
CREATE TABLE mailferry_pass (
    migration_id       INTEGER NOT NULL REFERENCES mailferry_migration (id) ON DELETE CASCADE,
    seq                INTEGER NOT NULL CHECK (seq >= 1),
    phase              TEXT    NOT NULL,
    result             TEXT    NOT NULL,
    error              TEXT    NOT NULL DEFAULT '',
    holder             TEXT    NOT NULL DEFAULT '',
    started_at_us      INTEGER NOT NULL,
    ended_at_us        INTEGER NOT NULL,
    messages           INTEGER NOT NULL DEFAULT 0,
    copied             INTEGER NOT NULL DEFAULT 0,
    bytes_copied       INTEGER NOT NULL DEFAULT 0,
    adopted            INTEGER NOT NULL DEFAULT 0,
    flags_updated      INTEGER NOT NULL DEFAULT 0,
    expunged           INTEGER NOT NULL DEFAULT 0,
    target_only        INTEGER NOT NULL DEFAULT 0,
    duplicates_removed INTEGER NOT NULL DEFAULT 0,
    failed             INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (migration_id, seq)
);
