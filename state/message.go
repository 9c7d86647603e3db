package state

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"slices"
	"strings"

	"mailferry/internal/failpoint"
)

// Message is one copied message: where it came from, where it went, and
// what it was.
type Message struct {
	SrcUID   uint32 // 1..2^32-1
	DstUID   uint32 // 0 if the target did not report it (no UIDPLUS)
	Size     int64
	SHA256   [32]byte
	Verified bool
	// Flags as last copied, sorted; nil when none. Flags are IMAP atoms
	// and cannot contain spaces.
	Flags []string
}

// maxRowsPerInsert keeps a multi-row statement's parameters (7 a row)
// well under SQLite's 32766 and PostgreSQL's 65535.
const maxRowsPerInsert = 1000

// Messages returns the folder's message map ordered by SrcUID. It reads
// committed state in one query (after committing the lease's deferred
// writes to the folder) and does not check the lease; it fails
// with ErrNoFolder if the folder is not part of the migration.
func (l *Lease) Messages(ctx context.Context, folderID int64) ([]Message, error) {
	if l.deferredFor(folderID) {
		if err := l.Flush(ctx); err != nil {
			return nil, err
		}
	}
	msgs, err := l.messages(ctx, folderID)
	if err != nil {
		return nil, fmt.Errorf("load messages of folder %d in migration %s: %w", folderID, l.Migration.Key, err)
	}
	return msgs, nil
}

func (l *Lease) messages(ctx context.Context, folderID int64) ([]Message, error) {
	var owned, count int64
	if err := l.s.queryRowDB(ctx, `SELECT
(SELECT count(*) FROM mailferry_folder WHERE id = ? AND migration_id = ?),
(SELECT count(*) FROM mailferry_message WHERE folder_id = ?)`,
		folderID, l.Migration.ID, folderID).Scan(&owned, &count); err != nil {
		return nil, err
	}
	if owned == 0 {
		return nil, ErrNoFolder
	}
	rows, err := l.s.queryDB(ctx, `SELECT src_uid, dst_uid, size, sha256, verified, flags
FROM mailferry_message WHERE folder_id = ? ORDER BY src_uid`, folderID)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]Message, 0, count)
	var src, dst int64
	var sum sql.RawBytes
	var flags string
	for rows.Next() {
		var m Message
		if err := rows.Scan(&src, &dst, &m.Size, &sum, &m.Verified, &flags); err != nil {
			return nil, err
		}
		if len(sum) != len(m.SHA256) {
			return nil, fmt.Errorf("uid %d: stored SHA-256 has %d bytes", src, len(sum))
		}
		m.SrcUID, m.DstUID = uint32(src), uint32(dst)
		copy(m.SHA256[:], sum)
		if flags != "" {
			m.Flags = strings.Split(flags, " ")
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

// PutMessages stores msgs in the folder's map (replacing records with the
// same SrcUID; the last of duplicates in msgs wins) and sets the folder's
// DstUIDNextMark to mark, in one transaction: when it returns nil, the
// batch's results and the mark for the next batch are committed together;
// when it fails, neither is. Rows go in upserts of up to 1000 (a
// multi-row INSERT on SQLite, arrays on PostgreSQL), so a batch of 256 is
// a handful of statements in one transaction.
func (l *Lease) PutMessages(ctx context.Context, folderID int64, msgs []Message, mark uint32) error {
	return l.putMessages(ctx, folderID, msgs, mark, nil, nil)
}

// PutBatch is PutMessages that also replaces the folder's suspects (see
// Folder.Suspects) in the same transaction.
func (l *Lease) PutBatch(ctx context.Context, folderID int64, msgs []Message, mark uint32, suspects string) error {
	return l.putMessages(ctx, folderID, msgs, mark, &suspects, nil)
}

// PutLastBatch is PutBatch that also stores the folder's
// SrcHighestModSeq, in the same transaction: for the last write of a
// folder's pass, which would otherwise be followed by a PutFolder of its
// own (one commit, and on SQLite one fsync, less per folder).
func (l *Lease) PutLastBatch(ctx context.Context, folderID int64, msgs []Message, mark uint32, suspects string, modseq uint64) error {
	return l.putMessages(ctx, folderID, msgs, mark, &suspects, &modseq)
}

// DeferLastBatch is PutLastBatch deferred (see group.go): committed with
// the lease's next write (in the same transaction), by a read of the
// folder's records, by Flush or Release, or within a second; its failure
// is returned by the write that commits it, and it returns only an error
// in its arguments. It is for the last batch of a folder's pass: until it
// is committed the batch's messages are among the folder's stored
// suspects, so a crash before then leaves their copies to be found by
// content and adopted.
func (l *Lease) DeferLastBatch(ctx context.Context, folderID int64, msgs []Message, mark uint32, suspects string, modseq uint64) error {
	op, fn, err := l.putMessagesWrite(folderID, msgs, mark, &suspects, &modseq)
	if err != nil {
		return err
	}
	l.writeLater(ctx, op, folderID, false, fn)
	return nil
}

func (l *Lease) putMessages(ctx context.Context, folderID int64, msgs []Message, mark uint32, suspects *string, modseq *uint64) error {
	op, fn, err := l.putMessagesWrite(folderID, msgs, mark, suspects, modseq)
	if err != nil {
		return err
	}
	return l.write(ctx, op, fn)
}

// putMessagesWrite is the write of putMessages, and its name.
func (l *Lease) putMessagesWrite(folderID int64, msgs []Message, mark uint32, suspects *string, modseq *uint64) (string, func(ctx context.Context, tx *sql.Tx) error, error) {
	if modseq != nil && *modseq > math.MaxInt64 {
		return "", nil, fmt.Errorf("put messages in folder %d in migration %s: modseq %d exceeds 2^63-1", folderID, l.Migration.Key, *modseq)
	}
	rows, err := messageRows(msgs)
	if err != nil {
		return "", nil, fmt.Errorf("put messages in folder %d in migration %s: %w", folderID, l.Migration.Key, err)
	}
	return fmt.Sprintf("put %d messages in folder %d", len(msgs), folderID), func(ctx context.Context, tx *sql.Tx) error {
		if err := l.setMark(ctx, tx, folderID, mark, suspects); err != nil {
			return err
		}
		if modseq != nil {
			if _, err := l.s.execTx(ctx, tx, `UPDATE mailferry_folder SET src_highest_modseq = ? WHERE id = ? AND migration_id = ?`,
				int64(*modseq), folderID, l.Migration.ID); err != nil {
				return err
			}
		}
		for len(rows) > 0 {
			n := min(len(rows), maxRowsPerInsert)
			if err := l.s.drv.upsertMessages(ctx, tx, l.s.execTx, folderID, rows[:n]); err != nil {
				return err
			}
			rows = rows[n:]
		}
		failpoint.Hit("state-commit")
		return nil
	}, nil
}

// ReplaceFolder stores f (as PutFolder) and replaces its whole message map
// with msgs, in one transaction: after a UIDVALIDITY change the rematched
// map and the new UIDVALIDITYs are committed together or not at all. f.ID
// must be the folder's ID.
func (l *Lease) ReplaceFolder(ctx context.Context, f Folder, msgs []Message) error {
	rows, err := messageRows(msgs)
	if err != nil {
		return fmt.Errorf("replace folder %q in migration %s: %w", f.Source, l.Migration.Key, err)
	}
	if f.SrcHighestModSeq > math.MaxInt64 {
		return fmt.Errorf("replace folder %q in migration %s: modseq %d exceeds 2^63-1", f.Source, l.Migration.Key, f.SrcHighestModSeq)
	}
	return l.write(ctx, fmt.Sprintf("replace folder %q", f.Source), func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, l.s.q(`UPDATE mailferry_folder SET target = ?, src_uidvalidity = ?, dst_uidvalidity = ?,
dst_uidnext_mark = ?, src_highest_modseq = ?, deleted = ?, suspects = ? WHERE id = ? AND migration_id = ? AND source = ?`),
			f.Target, int64(f.SrcUIDValidity), int64(f.DstUIDValidity), int64(f.DstUIDNextMark), int64(f.SrcHighestModSeq),
			f.Deleted, f.Suspects, f.ID, l.Migration.ID, f.Source)
		if err != nil {
			return err
		}
		if err := oneFolder(res, fmt.Sprintf("%q", f.Source)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, l.s.q(`DELETE FROM mailferry_message WHERE folder_id = ?`), f.ID); err != nil {
			return err
		}
		for len(rows) > 0 {
			n := min(len(rows), maxRowsPerInsert)
			if err := l.s.drv.upsertMessages(ctx, tx, l.s.execTx, f.ID, rows[:n]); err != nil {
				return err
			}
			rows = rows[n:]
		}
		return nil
	})
}

type messageRow struct {
	Message
	flags string
}

// messageRows validates msgs, joins their sorted flags, and drops all but
// the last record of each SrcUID (one statement may not upsert a row
// twice).
func messageRows(msgs []Message) ([]messageRow, error) {
	rows := make([]messageRow, 0, len(msgs))
	seen := make(map[uint32]int, len(msgs))
	for _, m := range msgs {
		if m.SrcUID == 0 {
			return nil, fmt.Errorf("source uid 0 is not a UID")
		}
		if m.Size < 0 {
			return nil, fmt.Errorf("uid %d: negative size %d", m.SrcUID, m.Size)
		}
		flags := m.Flags
		if !slices.IsSorted(flags) {
			flags = slices.Sorted(slices.Values(flags))
		}
		for _, f := range flags {
			if f == "" || strings.ContainsAny(f, " \t\r\n") {
				return nil, fmt.Errorf("uid %d: flag %q is not an IMAP flag", m.SrcUID, f)
			}
		}
		r := messageRow{Message: m, flags: strings.Join(flags, " ")}
		if i, ok := seen[m.SrcUID]; ok {
			rows[i] = r
			continue
		}
		seen[m.SrcUID] = len(rows)
		rows = append(rows, r)
	}
	return rows, nil
}

// upsertMessagesValues is the shared upsert: multi-row INSERT ... ON
// CONFLICT DO UPDATE statements with 7 placeholders a row. The rows go in
// chunks whose sizes are powers of two (60 rows: 32, 16, 8, 4), so a
// handful of statement texts serve every batch size and each is parsed
// once per connection (see prepared.go) instead of once per batch.
func upsertMessagesValues(ctx context.Context, tx *sql.Tx, exec execFunc, folderID int64, rows []messageRow) error {
	for len(rows) > 0 {
		n := upsertChunk(len(rows))
		if err := upsertValues(ctx, tx, exec, folderID, rows[:n]); err != nil {
			return err
		}
		rows = rows[n:]
	}
	return nil
}

// upsertChunk is the largest power of two not above n, at most 512.
func upsertChunk(n int) int {
	c := 1
	for c*2 <= n && c*2 <= 512 {
		c *= 2
	}
	return c
}

func upsertValues(ctx context.Context, tx *sql.Tx, exec execFunc, folderID int64, rows []messageRow) error {
	var b strings.Builder
	b.Grow(300 + len(rows)*16)
	b.WriteString(`INSERT INTO mailferry_message (folder_id, src_uid, dst_uid, size, sha256, verified, flags) VALUES `)
	args := make([]any, 0, len(rows)*7)
	for i := range rows {
		r := &rows[i]
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("(?,?,?,?,?,?,?)")
		args = append(args, folderID, int64(r.SrcUID), int64(r.DstUID), r.Size, r.SHA256[:], r.Verified, r.flags)
	}
	b.WriteString(` ON CONFLICT (folder_id, src_uid) DO UPDATE SET dst_uid = excluded.dst_uid, size = excluded.size,
sha256 = excluded.sha256, verified = excluded.verified, flags = excluded.flags`)
	_, err := exec(ctx, tx, b.String(), args...)
	return err
}

// upsertMessagesUnnest is PostgreSQL's upsert: the rows travel as seven
// arrays, so the statement text is the same for every batch size (pgx
// prepares it once per connection instead of once per distinct row count)
// and it has 7 parameters instead of 7 a row.
func upsertMessagesUnnest(ctx context.Context, tx *sql.Tx, folderID int64, rows []messageRow) error {
	src := make([]int64, len(rows))
	dst := make([]int64, len(rows))
	size := make([]int64, len(rows))
	sum := make([][]byte, len(rows))
	verified := make([]bool, len(rows))
	flags := make([]string, len(rows))
	for i := range rows {
		r := &rows[i]
		src[i], dst[i], size[i], sum[i], verified[i], flags[i] = int64(r.SrcUID), int64(r.DstUID), r.Size, r.SHA256[:], r.Verified, r.flags
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO mailferry_message (folder_id, src_uid, dst_uid, size, sha256, verified, flags)
SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bytea[], $6::boolean[], $7::text[])
ON CONFLICT (folder_id, src_uid) DO UPDATE SET dst_uid = excluded.dst_uid, size = excluded.size,
sha256 = excluded.sha256, verified = excluded.verified, flags = excluded.flags`,
		folderID, src, dst, size, sum, verified, flags)
	return err
}

// DeleteMessages removes the records of srcUIDs from the folder's map
// (unknown UIDs are ignored), in one transaction.
func (l *Lease) DeleteMessages(ctx context.Context, folderID int64, srcUIDs []uint32) error {
	return l.write(ctx, fmt.Sprintf("delete %d messages from folder %d", len(srcUIDs), folderID), func(ctx context.Context, tx *sql.Tx) error {
		var owned int64
		if err := tx.QueryRowContext(ctx, l.s.q(`SELECT count(*) FROM mailferry_folder WHERE id = ? AND migration_id = ?`),
			folderID, l.Migration.ID).Scan(&owned); err != nil {
			return err
		}
		if owned == 0 {
			return fmt.Errorf("folder %d: %w", folderID, ErrNoFolder)
		}
		for uids := srcUIDs; len(uids) > 0; {
			n := min(len(uids), maxRowsPerInsert)
			var b strings.Builder
			b.WriteString(`DELETE FROM mailferry_message WHERE folder_id = ? AND src_uid IN (`)
			args := make([]any, 0, n+1)
			args = append(args, folderID)
			for i, u := range uids[:n] {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteByte('?')
				args = append(args, int64(u))
			}
			b.WriteByte(')')
			if _, err := tx.ExecContext(ctx, l.s.q(b.String()), args...); err != nil {
				return err
			}
			uids = uids[n:]
		}
		return nil
	})
}
