-- mailferry state, schema version 1 (SQLite).
--
-- No column here can hold a secret: a migration is named by the
-- secret-free source and target strings the caller builds.
-- Times are microseconds since the Unix epoch (UTC), taken from the
-- store's clock, so both dialects compare them the same way.

-- One row per mailbox copy, with its lease and progress.
CREATE TABLE mailferry_migration (
    id                  INTEGER PRIMARY KEY,
    source              TEXT    NOT NULL CHECK (source <> ''),
    target              TEXT    NOT NULL CHECK (target <> ''),
    phase               TEXT    NOT NULL DEFAULT '',
    messages_done       INTEGER NOT NULL DEFAULT 0,
    messages_total      INTEGER NOT NULL DEFAULT 0,
    bytes_done          INTEGER NOT NULL DEFAULT 0,
    bytes_total         INTEGER NOT NULL DEFAULT 0,
    verified            INTEGER NOT NULL DEFAULT 0,
    failed              INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT    NOT NULL DEFAULT '',
    -- lease: holder '' = free; epoch is the fencing token, bumped by every acquisition
    holder              TEXT    NOT NULL DEFAULT '',
    lease_expires_at_us INTEGER NOT NULL DEFAULT 0,
    epoch               INTEGER NOT NULL DEFAULT 0,
    created_at_us       INTEGER NOT NULL,
    updated_at_us       INTEGER NOT NULL,
    UNIQUE (source, target)
);

-- One row per source folder of a migration.
CREATE TABLE mailferry_folder (
    id                 INTEGER PRIMARY KEY,
    migration_id       INTEGER NOT NULL REFERENCES mailferry_migration (id) ON DELETE CASCADE,
    source             TEXT    NOT NULL,
    target             TEXT    NOT NULL DEFAULT '',
    src_uidvalidity    INTEGER NOT NULL DEFAULT 0 CHECK (src_uidvalidity BETWEEN 0 AND 4294967295),
    dst_uidvalidity    INTEGER NOT NULL DEFAULT 0 CHECK (dst_uidvalidity BETWEEN 0 AND 4294967295),
    dst_uidnext_mark   INTEGER NOT NULL DEFAULT 0 CHECK (dst_uidnext_mark BETWEEN 0 AND 4294967295),
    src_highest_modseq INTEGER NOT NULL DEFAULT 0 CHECK (src_highest_modseq >= 0),
    deleted            INTEGER NOT NULL DEFAULT 0 CHECK (deleted IN (0, 1)),
    UNIQUE (migration_id, source)
);

-- The message map: source UID -> target UID, one row per copied message.
-- WITHOUT ROWID clusters the rows by (folder_id, src_uid), so loading a
-- folder's map in UID order is one sequential range scan.
CREATE TABLE mailferry_message (
    folder_id INTEGER NOT NULL REFERENCES mailferry_folder (id) ON DELETE CASCADE,
    src_uid   INTEGER NOT NULL CHECK (src_uid BETWEEN 1 AND 4294967295),
    dst_uid   INTEGER NOT NULL CHECK (dst_uid BETWEEN 0 AND 4294967295),
    size      INTEGER NOT NULL CHECK (size >= 0),
    sha256    BLOB    NOT NULL CHECK (length(sha256) = 32),
    verified  INTEGER NOT NULL DEFAULT 0 CHECK (verified IN (0, 1)),
    flags     TEXT    NOT NULL DEFAULT '',
    PRIMARY KEY (folder_id, src_uid)
) WITHOUT ROWID;
