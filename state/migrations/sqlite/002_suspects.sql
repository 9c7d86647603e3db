-- mailferry state, schema version 2 (SQLite).
--
-- suspects: the source UIDs (an IMAP UID set, e.g. "1:40,77") whose APPEND
-- may have reached the target without its answer being recorded (sent
-- before a crash, or on a connection that dropped). A target message at
-- or above the mark whose bytes equal a suspect's is a copy of ours;
-- any other is the target's own. '*' means every source message of the
-- folder is a suspect: the conservative value for folders written by
-- schema version 1, which did not record them.
ALTER TABLE mailferry_folder ADD COLUMN suspects TEXT NOT NULL DEFAULT '*';
