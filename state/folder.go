package state

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
)

// Folder is one source folder of a migration and what is known about it.
type Folder struct {
	ID             int64
	Source         string // source folder name; unique within the migration
	Target         string // target folder name
	SrcUIDValidity uint32
	DstUIDValidity uint32
	// DstUIDNextMark is the target's UIDNEXT recorded before a batch of
	// APPENDs (0: no batch pending). Target messages at or above it that
	// the message map does not know may be unrecorded copies to adopt.
	DstUIDNextMark uint32
	// SrcHighestModSeq is the source's HIGHESTMODSEQ after the last pass,
	// for CONDSTORE delta passes (0: none). At most 2^63-1 (RFC 7162).
	SrcHighestModSeq uint64
	// Deleted says the source folder is gone; the row is kept for
	// reporting.
	Deleted bool
	// Suspects are the source UIDs, as an IMAP UID set ("1:40,77"), whose
	// APPEND may have reached the target without its answer being
	// recorded: a copy of one of them may appear at or above the mark at
	// any later moment. "*" means every source message; "" none.
	Suspects string
}

const folderColumns = `id, source, target, src_uidvalidity, dst_uidvalidity, dst_uidnext_mark, src_highest_modseq, deleted, suspects`

func scanFolder(sc scanner) (Folder, error) {
	var f Folder
	var srcV, dstV, mark, modseq int64
	err := sc.Scan(&f.ID, &f.Source, &f.Target, &srcV, &dstV, &mark, &modseq, &f.Deleted, &f.Suspects)
	f.SrcUIDValidity, f.DstUIDValidity, f.DstUIDNextMark = uint32(srcV), uint32(dstV), uint32(mark)
	f.SrcHighestModSeq = uint64(modseq)
	return f, err
}

// Folders returns the migration's folders, ordered by source name. It
// reads committed state (after committing the lease's deferred writes to
// folders) and does not check the lease.
func (l *Lease) Folders(ctx context.Context) ([]Folder, error) {
	if l.deferredFor(-1) {
		if err := l.Flush(ctx); err != nil {
			return nil, err
		}
	}
	rows, err := l.s.db.QueryContext(ctx, l.s.q(`SELECT `+folderColumns+` FROM mailferry_folder WHERE migration_id = ? ORDER BY source`), l.Migration.ID)
	if err != nil {
		return nil, fmt.Errorf("list folders of migration %s: %w", l.Migration.Key, err)
	}
	defer rows.Close()
	var out []Folder
	for rows.Next() {
		f, err := scanFolder(rows)
		if err != nil {
			return nil, fmt.Errorf("list folders of migration %s: %w", l.Migration.Key, err)
		}
		out = append(out, f)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list folders of migration %s: %w", l.Migration.Key, err)
	}
	return out, nil
}

// Folder returns the folder with this source name, creating it (Source
// set, everything else zero) if it is new. Creating is a fenced write; a
// folder that exists is only read (no write transaction, no fsync: a pass
// reads every folder's record).
func (l *Lease) Folder(ctx context.Context, source string) (Folder, error) {
	f, ok, err := l.LookupFolder(ctx, source)
	if ok || err != nil {
		return f, err
	}
	err = l.write(ctx, fmt.Sprintf("get folder %q", source), func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, l.s.q(`INSERT INTO mailferry_folder (migration_id, source) VALUES (?, ?)
ON CONFLICT (migration_id, source) DO NOTHING`), l.Migration.ID, source); err != nil {
			return err
		}
		var err error
		f, err = scanFolder(tx.QueryRowContext(ctx, l.s.q(`SELECT `+folderColumns+` FROM mailferry_folder
WHERE migration_id = ? AND source = ?`), l.Migration.ID, source))
		return err
	})
	return f, err
}

// LookupFolder returns the folder with this source name, or false if the
// state has none. Unlike Folder it never writes: a first pass learns the
// folder's ID from its first PutFolder, which creates the record, instead
// of a commit (and on SQLite an fsync) of an empty one before it.
func (l *Lease) LookupFolder(ctx context.Context, source string) (Folder, bool, error) {
	read := func() (Folder, error) {
		return scanFolder(l.s.queryRowDB(ctx, `SELECT `+folderColumns+` FROM mailferry_folder
WHERE migration_id = ? AND source = ?`, l.Migration.ID, source))
	}
	f, err := read()
	if err == nil && l.deferredFor(f.ID) {
		// A deferred write changes it: committed first, then read again.
		if err := l.Flush(ctx); err != nil {
			return Folder{}, false, err
		}
		f, err = read()
	}
	switch {
	case err == nil:
		return f, true, nil
	case errors.Is(err, sql.ErrNoRows):
		return Folder{Source: source}, false, nil
	}
	return Folder{}, false, fmt.Errorf("get folder %q of migration %s: %w", source, l.Migration.Key, err)
}

// PutFolder stores every field of f under its Source name, creating the
// folder if it is new, and returns the folder's ID. If f.ID is set it must
// be the folder's ID.
func (l *Lease) PutFolder(ctx context.Context, f Folder) (int64, error) {
	if f.SrcHighestModSeq > math.MaxInt64 {
		return 0, fmt.Errorf("put folder %q in migration %s: modseq %d exceeds 2^63-1", f.Source, l.Migration.Key, f.SrcHighestModSeq)
	}
	var id int64
	err := l.write(ctx, fmt.Sprintf("put folder %q", f.Source), func(ctx context.Context, tx *sql.Tx) error {
		err := l.s.queryRowTx(ctx, tx, `INSERT INTO mailferry_folder
(migration_id, source, target, src_uidvalidity, dst_uidvalidity, dst_uidnext_mark, src_highest_modseq, deleted, suspects)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (migration_id, source) DO UPDATE SET target = excluded.target,
src_uidvalidity = excluded.src_uidvalidity, dst_uidvalidity = excluded.dst_uidvalidity,
dst_uidnext_mark = excluded.dst_uidnext_mark, src_highest_modseq = excluded.src_highest_modseq,
deleted = excluded.deleted, suspects = excluded.suspects
RETURNING id`, l.Migration.ID, f.Source, f.Target, int64(f.SrcUIDValidity), int64(f.DstUIDValidity),
			int64(f.DstUIDNextMark), int64(f.SrcHighestModSeq), f.Deleted, f.Suspects).Scan(&id)
		if err != nil {
			return err
		}
		if f.ID != 0 && f.ID != id {
			return fmt.Errorf("folder id %d does not match the stored folder's id %d", f.ID, id)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	l.s.folderPuts.Add(1)
	return id, nil
}

// RenameFolder renames the folder oldSource to newSource, with target
// name newTarget, keeping its message map. It fails with ErrNoFolder if
// oldSource is unknown, and if newSource already names another folder.
func (l *Lease) RenameFolder(ctx context.Context, oldSource, newSource, newTarget string) error {
	return l.write(ctx, fmt.Sprintf("rename folder %q to %q", oldSource, newSource), func(ctx context.Context, tx *sql.Tx) error {
		if newSource != oldSource {
			var one int
			err := tx.QueryRowContext(ctx, l.s.q(`SELECT 1 FROM mailferry_folder WHERE migration_id = ? AND source = ?`),
				l.Migration.ID, newSource).Scan(&one)
			if err == nil {
				return fmt.Errorf("folder %q already exists", newSource)
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		res, err := tx.ExecContext(ctx, l.s.q(`UPDATE mailferry_folder SET source = ?, target = ? WHERE migration_id = ? AND source = ?`),
			newSource, newTarget, l.Migration.ID, oldSource)
		if err != nil {
			return err
		}
		return oneFolder(res, fmt.Sprintf("%q", oldSource))
	})
}

// ResetFolder forgets the folder's message map, its pending UIDNEXT mark
// and its HIGHESTMODSEQ (after a UIDVALIDITY change, none of them means
// anything). Names, UIDVALIDITYs and Deleted are kept; store the new
// UIDVALIDITY with PutFolder.
func (l *Lease) ResetFolder(ctx context.Context, folderID int64) error {
	return l.write(ctx, fmt.Sprintf("reset folder %d", folderID), func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, l.s.q(`UPDATE mailferry_folder SET dst_uidnext_mark = 0, src_highest_modseq = 0
WHERE id = ? AND migration_id = ?`), folderID, l.Migration.ID)
		if err != nil {
			return err
		}
		if err := oneFolder(res, fmt.Sprint(folderID)); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, l.s.q(`DELETE FROM mailferry_message WHERE folder_id = ?`), folderID)
		return err
	})
}

// SetMark records the target's UIDNEXT before a batch of APPENDs (0
// clears it).
func (l *Lease) SetMark(ctx context.Context, folderID int64, mark uint32) error {
	return l.write(ctx, fmt.Sprintf("set mark of folder %d", folderID), func(ctx context.Context, tx *sql.Tx) error {
		return l.setMark(ctx, tx, folderID, mark, nil)
	})
}

// SetSuspects records the folder's suspects (see Folder.Suspects); it is
// committed before the APPENDs it announces are sent.
func (l *Lease) SetSuspects(ctx context.Context, folderID int64, suspects string) error {
	return l.write(ctx, fmt.Sprintf("set suspects of folder %d", folderID), func(ctx context.Context, tx *sql.Tx) error {
		res, err := l.s.execTx(ctx, tx, `UPDATE mailferry_folder SET suspects = ? WHERE id = ? AND migration_id = ?`,
			suspects, folderID, l.Migration.ID)
		if err != nil {
			return err
		}
		return oneFolder(res, fmt.Sprint(folderID))
	})
}

// setMark also checks that the folder belongs to the migration. A
// non-nil suspects is stored in the same statement.
func (l *Lease) setMark(ctx context.Context, tx *sql.Tx, folderID int64, mark uint32, suspects *string) error {
	var res sql.Result
	var err error
	if suspects != nil {
		res, err = l.s.execTx(ctx, tx, `UPDATE mailferry_folder SET dst_uidnext_mark = ?, suspects = ? WHERE id = ? AND migration_id = ?`,
			int64(mark), *suspects, folderID, l.Migration.ID)
	} else {
		res, err = l.s.execTx(ctx, tx, `UPDATE mailferry_folder SET dst_uidnext_mark = ? WHERE id = ? AND migration_id = ?`,
			int64(mark), folderID, l.Migration.ID)
	}
	if err != nil {
		return err
	}
	return oneFolder(res, fmt.Sprint(folderID))
}

func oneFolder(res sql.Result, name string) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return fmt.Errorf("folder %s: %w", name, ErrNoFolder)
	}
	return nil
}
