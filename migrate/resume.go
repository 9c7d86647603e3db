package migrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"

	"mailferry/internal/imapconn"
	"mailferry/state"
)

// This file holds what the durable state adds to a folder copy: loading the
// message map, the delta against the source (new messages, flag changes,
// expunges), adopting copies appended but not recorded before a crash,
// rescans after a UIDVALIDITY change, and recording each verified batch.
//
// The invariant that makes a crash harmless: every target copy this tool
// made is either in the message map or at a target UID at or above the
// folder's recorded mark (the target's UIDNEXT before the batch that made
// it). The mark is committed before a folder's first APPEND and only ever
// moves up together with the records of the batch below it.

// prepare lists the source folder and decides the fate of every message:
// already copied (from the map), pending, or gone from the source.
func (w *worker) prepare(ctx context.Context, fc *folderCopy, ssel, sel *imap.SelectData) error {
	fc.modseq = ssel.HighestModSeq
	if sel.UIDNext > 0 {
		fc.maxDst = sel.UIDNext - 1
	} else {
		var err error
		if fc.maxDst, err = w.maxTargetUID(ctx); err != nil {
			return err
		}
	}
	lease := w.run.opts.State
	if lease == nil {
		if ssel.NumMessages > 0 {
			if err := w.listMessages(ctx, fc, nil, 0); err != nil {
				return err
			}
		}
		fc.listed = true
		return nil
	}

	rec, err := lease.Folder(ctx, fc.m.Source)
	if err != nil {
		return err
	}
	fc.stored = rec
	known, err := lease.Messages(ctx, rec.ID)
	if err != nil {
		return err
	}
	fresh := rec.SrcUIDValidity == 0
	srcChanged := !fresh && rec.SrcUIDValidity != ssel.UIDValidity
	dstChanged := !fresh && rec.DstUIDValidity != sel.UIDValidity
	if srcChanged || dstChanged {
		w.run.warn(fmt.Sprintf("folder %q: UIDVALIDITY changed on the %s since the last pass; matching copies by SHA-256 instead of UID",
			fc.m.Source, changedSides(srcChanged, dstChanged)))
	}

	if ssel.NumMessages > 0 {
		condstore := !fresh && !srcChanged && w.src.Features.CondStore && rec.SrcHighestModSeq > 0 && ssel.HighestModSeq > 0
		if condstore {
			err = w.listMessages(ctx, fc, known, rec.SrcHighestModSeq)
		} else {
			err = w.listMessages(ctx, fc, nil, 0)
		}
		if err != nil {
			return err
		}
	}
	if dstChanged {
		if known, err = w.rescanTarget(ctx, fc, known); err != nil {
			return err
		}
	}
	var gone []state.Message
	if srcChanged {
		if gone, err = w.rematchSource(ctx, fc, known); err != nil {
			return err
		}
	} else {
		gone = fc.applyKnown(known, w.run.opts.Verify)
	}
	if !fresh && !dstChanged && rec.DstUIDNextMark > 0 {
		if err := w.adopt(ctx, fc, imap.UID(rec.DstUIDNextMark)); err != nil {
			return err
		}
	}

	rec.Target = fc.m.Target
	rec.SrcUIDValidity, rec.DstUIDValidity = ssel.UIDValidity, sel.UIDValidity
	fc.rec = rec
	switch {
	case srcChanged || dstChanged:
		// Expunge first: a crash before the map is replaced redoes the
		// match, and deleting a deleted UID again is harmless.
		if err := w.expungeGone(ctx, fc, gone, false); err != nil {
			return err
		}
		fc.rec.DstUIDNextMark = uint32(fc.maxDst + 1)
		fc.rec.SrcHighestModSeq = 0
		var recs []state.Message
		var which []*message
		for _, msg := range fc.msgs {
			if msg.status == statusVerified || msg.status == statusAppended {
				recs = append(recs, msg.record())
				which = append(which, msg)
			}
		}
		if err := lease.ReplaceFolder(ctx, fc.rec, recs); err != nil {
			return err
		}
		fc.stored = fc.rec
		for i, msg := range which {
			msg.recorded(recs[i])
		}
	case fresh:
		// The mark must be committed before the first APPEND.
		fc.rec.DstUIDNextMark = uint32(fc.maxDst + 1)
		if err := lease.PutFolder(ctx, fc.rec); err != nil {
			return err
		}
		fc.stored = fc.rec
	default:
		if err := w.expungeGone(ctx, fc, gone, true); err != nil {
			return err
		}
	}
	fc.listed = true
	if err := w.record(ctx, fc, fc.msgs); err != nil {
		return err
	}
	return w.syncFlags(ctx, fc)
}

func changedSides(src, dst bool) string {
	switch {
	case src && dst:
		return "source and the target"
	case src:
		return "source"
	}
	return "target"
}

// applyKnown marks the listed messages the map knows as copied and returns
// the records whose source message is gone.
func (fc *folderCopy) applyKnown(known []state.Message, mode VerifyMode) []state.Message {
	var gone []state.Message
	for _, k := range known {
		msg := fc.byUID[imap.UID(k.SrcUID)]
		if msg == nil {
			gone = append(gone, k)
			continue
		}
		msg.fromRecord(k, mode)
		msg.rec = true
		msg.done = true
	}
	return gone
}

// fromRecord takes a recorded copy's target UID, size and digest.
func (msg *message) fromRecord(k state.Message, mode VerifyMode) {
	msg.dstUID, msg.size, msg.sha, msg.hashed = imap.UID(k.DstUID), k.Size, k.SHA256, true
	msg.recFlags, msg.copyFlags, msg.recVerified = k.Flags, k.Flags, k.Verified
	if msg.copyFlags == nil {
		msg.copyFlags = []string{}
	}
	msg.status = statusVerified
	if !k.Verified && mode != VerifyNone {
		msg.status = statusAppended // verified by this run
	}
}

// record is the message's map entry.
func (msg *message) record() state.Message {
	flags := msg.copyFlags
	if flags == nil {
		flags = normFlags(msg.flags)
	}
	return state.Message{
		SrcUID: uint32(msg.uid), DstUID: uint32(msg.dstUID), Size: msg.size, SHA256: msg.sha,
		Verified: msg.status == statusVerified, Flags: flags,
	}
}

// recorded notes that the map now holds rec for msg.
func (msg *message) recorded(rec state.Message) {
	msg.rec, msg.recVerified, msg.recFlags, msg.copyFlags = true, rec.Verified, rec.Flags, nil
}

// normFlags is the sorted set of flags worth carrying (no \Recent, valid
// atoms only), the form the map stores.
func normFlags(flags []imap.Flag) []string {
	var out []string
	for _, f := range flags {
		if strings.EqualFold(string(f), `\Recent`) || !validFlag(string(f)) {
			continue
		}
		out = append(out, string(f))
	}
	sort.Strings(out)
	return slices.Compact(out)
}

// record commits the map entries of msgs that are copied (verified, or
// appended when nothing is verified) and not yet recorded, together with
// the mark for the next batch.
func (w *worker) record(ctx context.Context, fc *folderCopy, msgs []*message) error {
	lease := w.run.opts.State
	if lease == nil {
		return nil
	}
	var recs []state.Message
	var which []*message
	for _, msg := range msgs {
		ok := msg.status == statusVerified || msg.status == statusAppended && w.run.opts.Verify == VerifyNone
		if ok && (!msg.rec || msg.status == statusVerified && !msg.recVerified) {
			recs = append(recs, msg.record())
			which = append(which, msg)
		}
	}
	if len(recs) == 0 {
		return nil
	}
	mark := uint32(fc.maxDst + 1)
	if err := lease.PutMessages(ctx, fc.rec.ID, recs, mark); err != nil {
		return err
	}
	fc.rec.DstUIDNextMark = mark
	fc.stored.DstUIDNextMark = mark
	for i, msg := range which {
		msg.recorded(recs[i])
	}
	return nil
}

// finishFolder records the source's HIGHESTMODSEQ as of the start of this
// pass, so the next pass asks only for what changed after it.
func (w *worker) finishFolder(ctx context.Context, fc *folderCopy) error {
	lease := w.run.opts.State
	if lease == nil || fc.rec.ID == 0 {
		return nil
	}
	if fc.rec == fc.stored && fc.rec.SrcHighestModSeq == fc.modseq {
		return nil // a pass that changed nothing writes nothing
	}
	fc.rec.SrcHighestModSeq = fc.modseq
	if err := lease.PutFolder(ctx, fc.rec); err != nil {
		return err
	}
	fc.stored = fc.rec
	return nil
}

// adopt finds copies appended by an earlier run that stopped before
// recording them: target messages at or above mark that the map does not
// know, matched by size and SHA-256 to source messages still pending.
// Only pending source messages of a matching size are read.
func (w *worker) adopt(ctx context.Context, fc *folderCopy, mark imap.UID) error {
	var set imap.UIDSet
	set.AddRange(mark, 0)
	cands, err := w.fetchTarget(ctx, set, false)
	if err != nil {
		return err
	}
	ours := fc.targetUIDs()
	sizes := map[int64]bool{}
	for _, t := range cands {
		if t.uid >= mark && !ours[t.uid] {
			sizes[t.size] = true
		}
	}
	if len(sizes) == 0 {
		return nil
	}
	var toHash []*message
	for _, msg := range fc.msgs {
		if msg.status == statusPending && sizes[msg.size] {
			toHash = append(toHash, msg)
		}
	}
	if err := w.hashSource(ctx, fc, toHash); err != nil {
		return err
	}
	for _, msg := range toHash {
		if msg.hashed {
			msg.status = statusUnknown
		}
	}
	if err := w.reconcile(ctx, fc, toHash, mark-1, ours); err != nil {
		return err
	}
	n := 0
	for _, msg := range toHash {
		if msg.status == statusVerified || msg.status == statusAppended {
			n++
		}
	}
	if n > 0 {
		w.run.count(func(r *Report) { r.Adopted += n })
	}
	return nil
}

// targetUIDs are the target UIDs known to hold this folder's copies.
func (fc *folderCopy) targetUIDs() map[imap.UID]bool {
	out := map[imap.UID]bool{}
	for _, msg := range fc.msgs {
		if (msg.status == statusVerified || msg.status == statusAppended) && msg.dstUID != 0 {
			out[msg.dstUID] = true
		}
	}
	return out
}

// hashSource reads the bodies of msgs from the source (BODY.PEEK) and keeps
// their size and SHA-256. A message the source no longer has stays
// unhashed.
func (w *worker) hashSource(ctx context.Context, fc *folderCopy, msgs []*message) error {
	if len(msgs) == 0 {
		return nil
	}
	var uids imap.UIDSet
	for _, msg := range msgs {
		uids.AddNum(msg.uid)
	}
	got, err := w.fetchDigests(ctx, w.src, w.run.srcLim, uids, true)
	if err != nil {
		return fmt.Errorf("read %q on the source: %w", fc.m.Source, err)
	}
	w.run.count(func(r *Report) { r.BodiesFetched += len(got) })
	for _, t := range got {
		if msg := fc.byUID[t.uid]; msg != nil {
			msg.size, msg.sha, msg.hashed = t.size, t.sha, true
		}
	}
	return ctx.Err()
}

// rescanTarget follows a target UIDVALIDITY change: the map's target UIDs
// mean nothing now, so the folder's messages are matched to the records
// by size and SHA-256 (each target message serves one record). Records
// without a match are dropped, so their messages are copied again.
func (w *worker) rescanTarget(ctx context.Context, fc *folderCopy, known []state.Message) ([]state.Message, error) {
	sizes := map[int64]bool{}
	for _, k := range known {
		sizes[k.Size] = true
	}
	var all imap.UIDSet
	all.AddRange(1, 0)
	meta, err := w.fetchTarget(ctx, all, false)
	if err != nil {
		return nil, err
	}
	var set imap.UIDSet
	for _, t := range meta {
		if sizes[t.size] {
			set.AddNum(t.uid)
		}
	}
	byKey := map[string][]imap.UID{}
	if len(set) > 0 {
		got, err := w.fetchTarget(ctx, set, true)
		if err != nil {
			return nil, err
		}
		for _, t := range got {
			k := key(t.size, t.sha)
			byKey[k] = append(byKey[k], t.uid)
		}
	}
	var out []state.Message
	for _, k := range known {
		l := byKey[key(k.Size, k.SHA256)]
		if len(l) == 0 {
			continue
		}
		k.DstUID, k.Verified = uint32(l[0]), true
		byKey[key(k.Size, k.SHA256)] = l[1:]
		out = append(out, k)
	}
	return out, nil
}

// rematchSource follows a source UIDVALIDITY change: the map's source UIDs
// mean nothing now, but its target copies and digests still do. Source
// messages whose size matches a record are hashed and take over a record
// with the same digest; records left over are copies of messages the
// source no longer has.
func (w *worker) rematchSource(ctx context.Context, fc *folderCopy, known []state.Message) ([]state.Message, error) {
	sizes := map[int64]bool{}
	byKey := map[string][]state.Message{}
	for _, k := range known {
		sizes[k.Size] = true
		byKey[key(k.Size, k.SHA256)] = append(byKey[key(k.Size, k.SHA256)], k)
	}
	var toHash []*message
	for _, msg := range fc.msgs {
		if sizes[msg.size] {
			toHash = append(toHash, msg)
		}
	}
	if err := w.hashSource(ctx, fc, toHash); err != nil {
		return nil, err
	}
	for _, msg := range toHash {
		if !msg.hashed {
			continue
		}
		k := key(msg.size, msg.sha)
		l := byKey[k]
		if len(l) == 0 {
			continue
		}
		byKey[k] = l[1:]
		msg.fromRecord(l[0], w.run.opts.Verify)
		msg.done = true
	}
	var gone []state.Message
	for _, l := range byKey {
		gone = append(gone, l...)
	}
	return gone, nil
}

// expungeGone deletes the target copies of messages the source no longer
// has: only UIDs the map says this tool made, never anything else. With
// forget, their records go too. KeepDeleted leaves target and map alone.
func (w *worker) expungeGone(ctx context.Context, fc *folderCopy, gone []state.Message, forget bool) error {
	if len(gone) == 0 || w.run.opts.KeepDeleted {
		return nil
	}
	uids := dstUIDs(gone)
	var src []uint32
	for _, k := range gone {
		src = append(src, k.SrcUID)
	}
	if len(uids) > 0 {
		if !w.dst.Features.UIDPlus {
			w.run.warn(fmt.Sprintf("folder %q: %d messages deleted on the source are only flagged \\Deleted on the target (it lacks UIDPLUS, so expunging could remove others)",
				fc.m.Target, len(gone)))
		}
		if err := w.deleteTarget(ctx, uids); err != nil {
			return err
		}
	}
	if forget {
		if err := w.run.opts.State.DeleteMessages(ctx, fc.rec.ID, src); err != nil {
			return err
		}
	}
	w.run.count(func(r *Report) { r.Expunged += len(gone) })
	return nil
}

// syncFlags carries flag changes made on the source since a message was
// copied onto its target copy, one STORE per distinct flag set.
func (w *worker) syncFlags(ctx context.Context, fc *folderCopy) error {
	groups := map[string][]*message{}
	for _, msg := range fc.msgs {
		if !msg.rec || msg.dstUID == 0 || (msg.status != statusVerified && msg.status != statusAppended) {
			continue
		}
		now := normFlags(msg.flags)
		if slices.Equal(now, msg.recFlags) {
			continue
		}
		k := strings.Join(now, " ")
		groups[k] = append(groups[k], msg)
	}
	if len(groups) == 0 {
		return nil
	}
	var changed []*message
	for _, msgs := range groups {
		flags, dropped := appendFlags(msgs[0].flags, fc.perm)
		for _, f := range dropped {
			w.flagWarning(fc, string(f))
		}
		var uids imap.UIDSet
		for _, msg := range msgs {
			uids.AddNum(msg.dstUID)
		}
		err := short(ctx, w.run.dstLim, func() error {
			return w.dst.Store(uids, &imap.StoreFlags{Op: imap.StoreFlagsSet, Silent: true, Flags: flags}, nil).Close()
		})
		var ie *imap.Error
		if errors.As(err, &ie) {
			w.run.warn(fmt.Sprintf("folder %q: the target refused flags %s: %v", fc.m.Target, flagList(flags), err))
		} else if err != nil {
			return &imapconn.OpError{Side: imapconn.Target, Op: "store flags", Folder: fc.m.Target, Err: err}
		}
		changed = append(changed, msgs...)
	}
	recs := make([]state.Message, len(changed))
	for i, msg := range changed {
		recs[i] = msg.record()
		recs[i].Flags = normFlags(msg.flags) // now on the target
	}
	if err := w.run.opts.State.PutMessages(ctx, fc.rec.ID, recs, fc.rec.DstUIDNextMark); err != nil {
		return err
	}
	for i, msg := range changed {
		msg.recorded(recs[i])
	}
	w.run.count(func(r *Report) { r.FlagsUpdated += len(changed) })
	return nil
}

// folderChanges reflects folders renamed or deleted on the source since
// the last pass. A folder the state knows whose name is gone is renamed
// if exactly one new source folder has its UIDVALIDITY (servers keep it
// across RENAME): the target folder is renamed and the state follows, so
// nothing is copied again. Otherwise it was deleted: its copies are
// expunged from the target (only those), and the target folder is
// deleted if that leaves it empty. KeepDeleted leaves deleted folders
// alone. It reports whether the target's folders changed.
func (r *run) folderChanges(ctx context.Context, sc, dc *imapconn.Conn, mappings []FolderMapping) (bool, error) {
	lease := r.opts.State
	recs, err := lease.Folders(ctx)
	if err != nil {
		return false, err
	}
	current := map[string]bool{}
	for _, m := range mappings {
		current[m.Source] = true
	}
	known := map[string]bool{}
	var orphans []state.Folder
	for _, f := range recs {
		known[f.Source] = true
		if !current[f.Source] && !f.Deleted && f.SrcUIDValidity != 0 {
			orphans = append(orphans, f)
		}
	}
	if len(orphans) == 0 {
		return false, nil
	}
	newByValidity := map[uint32][]*FolderMapping{}
	for i := range mappings {
		m := &mappings[i]
		if known[m.Source] || m.src.NoSelect {
			continue
		}
		v := m.src.UIDValidity
		if v == 0 {
			d, err := sc.Status(m.src.Name, &imap.StatusOptions{UIDValidity: true}).Wait()
			if err != nil {
				continue
			}
			v = d.UIDValidity
		}
		newByValidity[v] = append(newByValidity[v], m)
	}
	changed := false
	for _, o := range orphans {
		if ms := newByValidity[o.SrcUIDValidity]; len(ms) == 1 && !ms[0].Excluded {
			m := ms[0]
			if err := renameTarget(dc, o.Target, m.Target); err != nil {
				r.warn(fmt.Sprintf("folder %q was renamed to %q on the source, but renaming %q on the target failed (%v); copying it anew",
					o.Source, m.Source, o.Target, err))
			} else {
				if err := lease.RenameFolder(ctx, o.Source, m.Source, m.Target); err != nil {
					return changed, err
				}
				changed = true
				r.warn(fmt.Sprintf("folder %q was renamed to %q on the source; renamed %q to %q on the target", o.Source, m.Source, o.Target, m.Target))
				continue
			}
		}
		if r.opts.KeepDeleted {
			continue
		}
		if err := r.deleteFolder(ctx, dc, o); err != nil {
			return changed, err
		}
		changed = true
	}
	return changed, nil
}

// renameTarget renames a target folder; a parent's RENAME already moved
// its children, so a child whose new name exists and old name is gone is
// renamed too.
func renameTarget(dc *imapconn.Conn, from, to string) error {
	if from == to {
		return nil
	}
	err := dc.Rename(from, to, nil).Wait()
	if err == nil {
		return nil
	}
	if _, serr := dc.Status(to, &imap.StatusOptions{UIDValidity: true}).Wait(); serr == nil {
		if _, ferr := dc.Status(from, &imap.StatusOptions{UIDValidity: true}).Wait(); ferr != nil {
			return nil
		}
	}
	return err
}

// deleteFolder follows a source folder's deletion onto the target.
func (r *run) deleteFolder(ctx context.Context, dc *imapconn.Conn, f state.Folder) error {
	lease := r.opts.State
	msgs, err := lease.Messages(ctx, f.ID)
	if err != nil {
		return err
	}
	sel, err := dc.Select(f.Target, nil).Wait()
	if err == nil && sel.UIDValidity == f.DstUIDValidity && len(msgs) > 0 {
		uids := dstUIDs(msgs)
		w := &worker{run: r, dst: dc}
		if len(uids) > 0 {
			if err := w.deleteTarget(ctx, uids); err != nil {
				return fmt.Errorf("folder %q deleted on the source: %w", f.Source, err)
			}
		}
		r.count(func(rep *Report) { rep.Expunged += len(msgs) })
		sel, err = dc.Select(f.Target, nil).Wait()
	}
	what := "kept on the target: it holds messages mailferry did not copy"
	if err == nil {
		_ = dc.Unselect().Wait()
		if sel.NumMessages == 0 {
			if derr := dc.Delete(f.Target).Wait(); derr == nil {
				what = "deleted on the target"
			} else {
				what = fmt.Sprintf("emptied on the target, not deleted (%v)", derr)
			}
		}
	} else {
		what = "already gone from the target"
	}
	r.warn(fmt.Sprintf("folder %q was deleted on the source; its copies were expunged and %q %s", f.Source, f.Target, what))
	f.Deleted = true
	return lease.PutFolder(ctx, f)
}

// dstUIDs are the target UIDs of records (those the target reported).
func dstUIDs(recs []state.Message) imap.UIDSet {
	var uids imap.UIDSet
	for _, k := range recs {
		if k.DstUID != 0 {
			uids.AddNum(imap.UID(k.DstUID))
		}
	}
	return uids
}
