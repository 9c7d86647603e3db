-- mailferry state, schema version 3 (PostgreSQL).
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
ALTER TABLE mailferry_migration ADD COLUMN result_at_us BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN acquired_at_us BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN passes_total BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN copied_total BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN bytes_copied_total BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN adopted_total BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN flags_updated_total BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN expunged_total BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN target_only_total BIGINT  NOT NULL DEFAULT 0;
ALTER TABLE mailferry_migration ADD COLUMN duplicates_removed_total BIGINT  NOT NULL DEFAULT 0;

-- One row per recent pass of a move; seq counts the move's passes from 1.
CREATE TABLE mailferry_pass (
    migration_id       BIGINT  NOT NULL REFERENCES mailferry_migration (id) ON DELETE CASCADE,
    seq                BIGINT  NOT NULL CHECK (seq >= 1),
    phase              TEXT    NOT NULL,
    result             TEXT    NOT NULL,
    error              TEXT    NOT NULL DEFAULT '',
    holder             TEXT    NOT NULL DEFAULT '',
    started_at_us      BIGINT  NOT NULL,
    ended_at_us        BIGINT  NOT NULL,
    messages           BIGINT  NOT NULL DEFAULT 0,
    copied             BIGINT  NOT NULL DEFAULT 0,
    bytes_copied       BIGINT  NOT NULL DEFAULT 0,
    adopted            BIGINT  NOT NULL DEFAULT 0,
    flags_updated      BIGINT  NOT NULL DEFAULT 0,
    expunged           BIGINT  NOT NULL DEFAULT 0,
    target_only        BIGINT  NOT NULL DEFAULT 0,
    duplicates_removed BIGINT  NOT NULL DEFAULT 0,
    failed             BIGINT  NOT NULL DEFAULT 0,
    PRIMARY KEY (migration_id, seq)
);
