package migrate

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"

	"mailferry/internal/imapconn"
	"mailferry/state"
)

// This file holds what the durable state adds to a folder copy: loading the
// message map, the delta against the source (new messages, flag changes,
// expunges), the check that accounts for every target UID at or above the
// mark (settle), rescans after a UIDVALIDITY change, and recording each
// verified batch. The decisions themselves are in ledger.go.
//
// What makes a crash, or a server that commits an APPEND after its client
// is gone, harmless: every target copy this tool made is either in the
// message map (below the folder's mark) or at a target UID at or above the
// mark; the mark only moves over UIDs a check has accounted for (see
// ledger.go); and every source message an APPEND was sent for without its
// answer being recorded is a suspect, recorded before the APPEND is sent.
// A check reads the bytes of unknown target messages only when there are
// suspects, and matches them to suspects alone: mail that reaches the
// target by other ways (after the cutover, say) is never touched.

// prepare lists the source folder and decides the fate of every message:
// already copied (from the map), pending, or gone from the source.
func (w *worker) prepare(ctx context.Context, fc *folderCopy, ssel, sel *imap.SelectData) error {
	fc.modseq = ssel.HighestModSeq
	fc.mark = imap.UID(sel.UIDNext)
	if fc.mark == 0 {
		top, err := w.maxTargetUID(ctx)
		if err != nil {
			return err
		}
		fc.mark = top + 1
	}
	lease := w.run.opts.State
	if lease == nil {
		if ssel.NumMessages > 0 {
			if err := w.listMessages(ctx, fc, nil, 0); err != nil {
				return err
			}
		}
		// Without a state nothing on the target is known: what is
		// there already is adopted or left alone, never copied twice.
		if err := w.adoptExisting(ctx, fc, sel); err != nil {
			return err
		}
		fc.listed = true
		return nil
	}

	var rec state.Folder
	var err error
	if fc.loaded != nil {
		rec, fc.loaded = *fc.loaded, nil
	} else if rec, _, err = lease.LookupFolder(ctx, fc.m.Source); err != nil {
		return stateErr(err)
	}
	fc.stored = rec
	var known []state.Message
	if rec.ID != 0 {
		// A folder new to the state has no record yet (ID 0): the
		// first PutFolder below creates it.
		if known, err = lease.Messages(ctx, rec.ID); err != nil {
			return stateErr(err)
		}
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
	suspects, all := parseSuspects(rec.Suspects)
	var gone []state.Message
	if srcChanged {
		// The recorded suspects' UIDs mean nothing now.
		fc.suspectAll = rec.Suspects != ""
		if gone, err = w.rematchSource(ctx, fc, known); err != nil {
			return err
		}
	} else {
		fc.suspectAll = all && !fresh
		gone = fc.applyKnown(known, w.run.opts.Verify)
		for _, msg := range fc.msgs {
			if suspects.Contains(msg.uid) {
				// Sent by an earlier run whose answer was never recorded.
				msg.suspect, msg.lost = true, true
			}
		}
	}
	if !fresh && !dstChanged {
		fc.mark = max(imap.UID(rec.DstUIDNextMark), 1)
	}
	// A crashed run's APPENDs of these suspects may still be stored.
	fc.inherited = !fresh && (fc.suspectAll || len(suspects) > 0)
	if dstChanged {
		fc.inherited = false
		fc.suspectAll = false // the folder was rebuilt: no APPEND of ours is pending there
		for _, msg := range fc.msgs {
			msg.suspect, msg.lost = false, false
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
		fc.rec.DstUIDNextMark = uint32(fc.mark)
		fc.rec.SrcHighestModSeq = 0
		fc.rec.Suspects = suspectSet(fc.msgs, nil, fc.suspectAll)
		var recs []state.Message
		var which []*message
		for _, msg := range fc.msgs {
			if !msg.needsCopy() {
				recs = append(recs, msg.record())
				which = append(which, msg)
			}
		}
		if err := lease.ReplaceFolder(ctx, fc.rec, recs); err != nil {
			return stateErr(err)
		}
		fc.stored = fc.rec
		for i, msg := range which {
			msg.recorded(recs[i])
		}
	case fresh:
		// What the target holds already is matched first (it only reads).
		if err := w.adoptExisting(ctx, fc, sel); err != nil {
			return err
		}
		// The mark must be committed before the first APPEND, and the
		// first batch announced (see announce): one write for both.
		first := w.firstBatch(fc)
		fc.rec.DstUIDNextMark = uint32(fc.mark)
		fc.rec.Suspects = suspectSet(fc.msgs, first, false)
		id, err := lease.PutFolder(ctx, fc.rec)
		if err != nil {
			return stateErr(err)
		}
		fc.rec.ID = id
		fc.stored = fc.rec
		for _, msg := range first {
			msg.suspect = true
		}
	default:
		if err := w.run.massExpunge(fc.m.Source, len(gone), len(known)); err != nil {
			return err
		}
		if err := w.expungeGone(ctx, fc, gone, true); err != nil {
			return err
		}
	}
	fc.listed = true
	if err := w.record(ctx, fc, fc.msgs, w.firstBatch(fc)); err != nil {
		return err
	}
	return w.syncFlags(ctx, fc)
}

// firstBatch is the batch copyPending will send first, announced with
// the write that precedes it (so that announce has nothing to write).
func (w *worker) firstBatch(fc *folderCopy) []*message {
	pending := fc.with(statusPending)
	return pending[:w.batchLen(fc, pending)]
}

// adoptExisting looks, before anything is appended, at what a target
// folder the state does not know already holds (below the mark: it was
// there before this pass): a message with the bytes and INTERNALDATE of a
// source message is that message's copy, adopted instead of appended again
// (its flags recorded as they are, so the flag sync corrects them); every
// other is the target's own, left alone and counted as target_only. Only
// target messages whose date a source message has, and those source
// messages, are read: nothing when the target folder is empty.
func (w *worker) adoptExisting(ctx context.Context, fc *folderCopy, sel *imap.SelectData) error {
	if sel.NumMessages == 0 || fc.mark <= 1 {
		return nil
	}
	var below imap.UIDSet
	below.AddRange(1, fc.mark-1)
	meta, err := w.fetchTarget(ctx, below, false)
	if err != nil {
		return err
	}
	srcDates := map[int64]bool{}
	for _, msg := range fc.msgs {
		if msg.needsCopy() {
			srcDates[msg.date.Unix()] = true
		}
	}
	dstDates := map[int64]bool{}
	var read imap.UIDSet
	for _, t := range meta {
		dstDates[t.date.Unix()] = true
		if srcDates[t.date.Unix()] {
			read.AddNum(t.uid)
		}
	}
	var cands []*message
	for _, msg := range fc.msgs {
		if msg.needsCopy() && dstDates[msg.date.Unix()] {
			cands = append(cands, msg)
		}
	}
	adopted := 0
	if len(cands) > 0 {
		got, err := w.fetchTarget(ctx, read, true)
		if err != nil {
			return err
		}
		if err := w.hashSource(ctx, fc, cands); err != nil {
			return err
		}
		for _, p := range existingCopies(cands, got) {
			msg, t := cands[p[0]], got[p[1]]
			fc.ours(msg, t.uid)
			msg.copyFlags = normFlags(t.flags)
			if w.run.opts.Verify != VerifyNone {
				w.accept(fc, msg, t) // its exact bytes were just read: that is the check
			}
			adopted++
		}
	}
	if adopted > 0 {
		w.run.warn(fmt.Sprintf("folder %q: %d messages were on the target already (same bytes and date), unknown to the state: adopted, not copied again",
			fc.m.Target, adopted))
	}
	w.run.count(func(r *Report) {
		r.Adopted += adopted
		r.TargetOnly += len(meta) - adopted
	})
	return nil
}

// stateErr marks an error of the state store: no mailbox can go on
// without it (and a lease lost to another process must not write on), so
// the folder is not retried.
func stateErr(err error) error {
	return fmt.Errorf("%w: state: %w", imapconn.ErrStopRun, err)
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

// record commits, in one transaction, the map entries of msgs that are
// copied (verified, or appended when nothing is verified) and not yet
// recorded, the mark (every target UID below it accounted for), and the
// suspects: those whose APPEND may still land, and next, the batch about
// to be sent (so that it needs no write of its own).
func (w *worker) record(ctx context.Context, fc *folderCopy, msgs, next []*message) error {
	return w.recordAs(ctx, fc, msgs, next, false)
}

// recordLast is record for the last batch of a complete folder pass
// (folderCopy.passComplete): the same transaction also stores the
// source's HIGHESTMODSEQ as of the pass's start, which finishFolder would
// otherwise commit on its own right after.
func (w *worker) recordLast(ctx context.Context, fc *folderCopy, msgs []*message) error {
	return w.recordAs(ctx, fc, msgs, nil, true)
}

func (w *worker) recordAs(ctx context.Context, fc *folderCopy, msgs, next []*message, last bool) error {
	lease := w.run.opts.State
	if lease == nil {
		for _, msg := range next {
			msg.suspect = true
		}
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
	mark := uint32(fc.mark)
	suspects := suspectSet(fc.msgs, next, fc.suspectAll)
	if len(recs) == 0 && mark == fc.rec.DstUIDNextMark && suspects == fc.rec.Suspects {
		return nil
	}
	var err error
	if last {
		// Nothing waits on this record before the next step (the next
		// folder's first write, which commits it too): until it lands,
		// the batch's messages are still the folder's stored suspects.
		err = lease.DeferLastBatch(ctx, fc.rec.ID, recs, mark, suspects, fc.modseq)
	} else {
		err = lease.PutBatch(ctx, fc.rec.ID, recs, mark, suspects)
	}
	if err != nil {
		return stateErr(err)
	}
	fc.rec.DstUIDNextMark, fc.rec.Suspects = mark, suspects
	fc.stored.DstUIDNextMark, fc.stored.Suspects = mark, suspects
	if last {
		fc.rec.SrcHighestModSeq, fc.stored.SrcHighestModSeq = fc.modseq, fc.modseq
	}
	for i, msg := range which {
		msg.recorded(recs[i])
	}
	fc.dropAnswered()
	for _, msg := range next {
		msg.suspect = true
	}
	return nil
}

// dropAnswered notes that the suspects just written (suspectSet) no
// longer hold the messages every APPEND of which was answered.
func (fc *folderCopy) dropAnswered() {
	for _, msg := range fc.msgs {
		if msg.suspect && !msg.lost {
			msg.suspect = false
		}
	}
}

// announce makes the batch's messages suspects before their APPENDs are
// sent: committed first, so that a crash at any later instant leaves a
// state that knows which target messages may be ours.
func (w *worker) announce(ctx context.Context, fc *folderCopy, batch []*message) error {
	if fc.suspectAll || !slices.ContainsFunc(batch, func(m *message) bool { return !m.suspect }) {
		return nil
	}
	if lease := w.run.opts.State; lease != nil {
		suspects := suspectSet(fc.msgs, batch, false)
		if err := lease.SetSuspects(ctx, fc.rec.ID, suspects); err != nil {
			return stateErr(err)
		}
		fc.rec.Suspects, fc.stored.Suspects = suspects, suspects
		fc.dropAnswered()
	}
	for _, msg := range batch {
		msg.suspect = true
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
	if _, err := lease.PutFolder(ctx, fc.rec); err != nil {
		return stateErr(err)
	}
	fc.stored = fc.rec
	return nil
}

// settle accounts for every target message in [fc.mark, hi] (hi 0: up to
// the newest one) and moves the mark above them. Copies of this pass
// waiting for their check are verified (VerifyFull: size and SHA-256 of
// the bytes read back; VerifySize: size); every other message there is a
// stranger, resolved by resolveStrangers. Messages whose APPEND outcome
// was unknown and that no stranger turned out to be are pending again.
func (w *worker) settle(ctx context.Context, fc *folderCopy, hi imap.UID) error {
	mode := w.run.opts.Verify
	mine := map[imap.UID]*message{}
	for _, msg := range fc.msgs {
		if !msg.needsCopy() && msg.dstUID >= fc.mark {
			mine[msg.dstUID] = msg
		}
	}
	if hi == 0 {
		fc.lookedAt = time.Now()
	}
	var set imap.UIDSet
	set.AddRange(fc.mark, hi)
	withBody := mode == VerifyFull && hi != 0
	got, err := w.fetchTarget(ctx, set, withBody)
	if err != nil {
		return err
	}
	var listed []imap.UID
	var strangers []targetMsg
	seen := map[imap.UID]targetMsg{}
	for _, t := range got {
		if t.uid < fc.mark {
			continue // "n:*" always includes the newest message, even below n
		}
		listed = append(listed, t.uid)
		if mine[t.uid] != nil {
			seen[t.uid] = t
			continue
		}
		strangers = append(strangers, t)
	}
	if err := w.verifyCopies(ctx, fc, mine, seen, withBody); err != nil {
		return err
	}
	if len(strangers) > 0 {
		if err := w.resolveStrangers(ctx, fc, strangers); err != nil {
			return err
		}
	}
	for _, msg := range fc.msgs {
		if msg.status == statusUnknown {
			msg.status = statusPending // not on the target: it is sent again
		}
	}
	fc.mark = nextMark(fc.mark, hi, listed)
	return nil
}

// verifyCopies checks the copies of mine that wait for their check
// against what the target holds at their UIDs (seen; read again with
// bodies when VerifyFull and seen has none). A mismatching copy is
// deleted (only that UID) and the message marked for one retry.
func (w *worker) verifyCopies(ctx context.Context, fc *folderCopy, mine map[imap.UID]*message, seen map[imap.UID]targetMsg, haveBodies bool) error {
	mode := w.run.opts.Verify
	if mode == VerifyNone {
		return nil
	}
	var uids imap.UIDSet
	for uid, msg := range mine {
		if msg.status == statusAppended {
			uids.AddNum(uid)
		}
	}
	if len(uids) == 0 {
		return nil
	}
	if mode == VerifyFull && !haveBodies {
		got, err := w.fetchTarget(ctx, uids, true)
		if err != nil {
			return err
		}
		seen = make(map[imap.UID]targetMsg, len(got))
		for _, t := range got {
			seen[t.uid] = t
		}
	}
	var bad imap.UIDSet
	for uid, msg := range mine {
		if msg.status != statusAppended {
			continue
		}
		t, ok := seen[uid]
		switch {
		case !ok:
			msg.reason = fmt.Sprintf("verification failed: target uid %d not found after APPEND", msg.dstUID)
		case t.size != msg.size:
			msg.reason = fmt.Sprintf("verification failed: target has %d bytes, source %d", t.size, msg.size)
			bad.AddNum(msg.dstUID)
		case mode == VerifyFull && t.sha != msg.sha:
			msg.reason = fmt.Sprintf("verification failed: SHA-256 on the target %s, source %s",
				hex.EncodeToString(t.sha[:8]), hex.EncodeToString(msg.sha[:8]))
			bad.AddNum(msg.dstUID)
		default:
			w.accept(fc, msg, t)
			continue
		}
		msg.status = statusFailed
	}
	if len(bad) > 0 {
		return w.deleteTarget(ctx, bad)
	}
	return nil
}

// resolveStrangers reads what it needs to decide each stranger's fate
// (settleStrangers) and carries it out: adopted copies become the
// messages' copies, verified by the bytes just read; duplicates are
// removed (only those UIDs); foreign messages are left alone and counted.
// Without suspects every stranger is foreign and nothing is read.
func (w *worker) resolveStrangers(ctx context.Context, fc *folderCopy, strangers []targetMsg) error {
	var suspects []*message
	for _, msg := range fc.msgs {
		if fc.suspectAll || msg.suspect || msg.status == statusUnknown {
			suspects = append(suspects, msg)
		}
	}
	if len(suspects) == 0 {
		w.run.count(func(r *Report) { r.TargetOnly += len(strangers) })
		return nil
	}
	var unread imap.UIDSet
	for _, t := range strangers {
		if !t.hashed {
			unread.AddNum(t.uid)
		}
	}
	if len(unread) > 0 {
		got, err := w.fetchTarget(ctx, unread, true)
		if err != nil {
			return err
		}
		byUID := make(map[imap.UID]targetMsg, len(got))
		for _, t := range got {
			byUID[t.uid] = t
		}
		for i, t := range strangers {
			if r, ok := byUID[t.uid]; ok {
				strangers[i] = r
			}
		}
	}
	var toHash []*message
	for _, msg := range suspects {
		if !msg.hashed {
			toHash = append(toHash, msg)
		}
	}
	if err := w.hashSource(ctx, fc, toHash); err != nil {
		return err
	}
	s := settleStrangers(strangers, suspects)
	adopted := 0
	for _, p := range s.adopt {
		msg, t := suspects[p[0]], strangers[p[1]]
		if !msg.done {
			adopted++
		}
		fc.found(t.sha)
		fc.ours(msg, t.uid)
		msg.copyFlags = normFlags(t.flags)
		if w.run.opts.Verify != VerifyNone {
			w.accept(fc, msg, t) // its exact bytes were just read back: that is the check
		}
	}
	if len(s.duplicates) > 0 {
		dup := make(map[imap.UID]bool, len(s.duplicates))
		for _, uid := range s.duplicates {
			dup[uid] = true
		}
		for _, t := range strangers {
			if dup[t.uid] {
				fc.found(t.sha)
			}
		}
		var uids imap.UIDSet
		uids.AddNum(s.duplicates...)
		if err := w.deleteTarget(ctx, uids); err != nil {
			return err
		}
		w.run.warn(fmt.Sprintf("folder %q: removed %d duplicate copies on the target (an APPEND committed after its connection was lost)",
			fc.m.Target, len(s.duplicates)))
	}
	w.run.count(func(r *Report) {
		r.Adopted += adopted
		r.DuplicatesRemoved += len(s.duplicates)
		r.TargetOnly += len(s.foreign)
	})
	return nil
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
	got, err := w.fetchDigests(ctx, w.src, uids, true)
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
// mean nothing now, so every message of the target folder is read and the
// records are matched to them by content (each target message serves one
// record; twins by multiplicity). Records without a match are dropped, so
// their messages are copied again. Every target UID is accounted for
// after it: the mark moves above the newest.
func (w *worker) rescanTarget(ctx context.Context, fc *folderCopy, known []state.Message) ([]state.Message, error) {
	var all imap.UIDSet
	all.AddRange(1, 0)
	got, err := w.fetchTarget(ctx, all, true)
	if err != nil {
		return nil, err
	}
	pairs, _, _ := contentMatch(known,
		func(k state.Message) ([32]byte, bool) { return k.SHA256, true },
		got,
		func(t targetMsg) ([32]byte, bool) { return t.sha, t.hashed })
	out := make([]state.Message, 0, len(pairs))
	var listed []imap.UID
	for _, t := range got {
		listed = append(listed, t.uid)
	}
	for _, p := range pairs {
		k := known[p[0]]
		k.DstUID, k.Verified = uint32(got[p[1]].uid), true
		out = append(out, k)
	}
	fc.mark = nextMark(1, 0, listed)
	return out, nil
}

// rematchSource follows a source UIDVALIDITY change: the map's source UIDs
// mean nothing now, but its target copies and digests still do. Source
// messages are hashed and take over a record with the same digest (twins
// by multiplicity); the size is only a hint of which to read first.
// Records left over are copies of messages the source no longer has.
func (w *worker) rematchSource(ctx context.Context, fc *folderCopy, known []state.Message) ([]state.Message, error) {
	sizes := map[int64]bool{}
	for _, k := range known {
		sizes[k.Size] = true
	}
	var likely, others []*message
	for _, msg := range fc.msgs {
		if sizes[msg.size] {
			likely = append(likely, msg)
		} else {
			others = append(others, msg)
		}
	}
	left := known
	for _, group := range [][]*message{likely, others} {
		if len(left) == 0 || len(group) == 0 {
			continue
		}
		if err := w.hashSource(ctx, fc, group); err != nil {
			return nil, err
		}
		pairs, _, rest := contentMatch(group,
			func(m *message) ([32]byte, bool) { return m.sha, m.hashed && !m.done },
			left,
			func(k state.Message) ([32]byte, bool) { return k.SHA256, true })
		for _, p := range pairs {
			group[p[0]].fromRecord(left[p[1]], w.run.opts.Verify)
			group[p[0]].done = true
		}
		var still []state.Message
		for _, j := range rest {
			still = append(still, left[j])
		}
		left = still
	}
	return left, nil
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
			return stateErr(err)
		}
	}
	w.run.count(func(r *Report) { r.Expunged += len(gone) })
	return nil
}

// syncFlags carries flag changes made on the source since a message was
// last recorded onto its target copy, merged flag by flag with changes
// made on the target since (see mergeFlags): a flag the user set or
// cleared on the target (after the cutover the target is theirs) is never
// undone by the source. One FETCH of the target's flags, then one STORE
// per distinct result.
func (w *worker) syncFlags(ctx context.Context, fc *folderCopy) error {
	var cands []*message
	var uids imap.UIDSet
	for _, msg := range fc.msgs {
		if !msg.rec || msg.dstUID == 0 || (msg.status != statusVerified && msg.status != statusAppended) {
			continue
		}
		if slices.Equal(normFlags(msg.flags), msg.recFlags) {
			continue
		}
		cands = append(cands, msg)
		uids.AddNum(msg.dstUID)
	}
	if len(cands) == 0 {
		return nil
	}
	got, err := w.fetchTarget(ctx, uids, false)
	if err != nil {
		return err
	}
	onTarget := make(map[imap.UID][]string, len(got))
	for _, t := range got {
		onTarget[t.uid] = normFlags(t.flags)
	}
	groups := map[string][]*message{}
	results := map[*message][]string{}
	kept := 0
	for _, msg := range cands {
		tgt, ok := onTarget[msg.dstUID]
		if !ok {
			continue // gone from the target: the settle's business
		}
		res := mergeFlags(msg.recFlags, normFlags(msg.flags), tgt)
		results[msg] = res
		if !slices.Equal(res, normFlags(msg.flags)) {
			kept++
		}
		if slices.Equal(res, tgt) {
			continue // nothing to store: only the record follows
		}
		k := strings.Join(res, " ")
		groups[k] = append(groups[k], msg)
	}
	stored := 0
	for k, msgs := range groups {
		var want []imap.Flag
		if k != "" {
			for _, f := range strings.Split(k, " ") {
				want = append(want, imap.Flag(f))
			}
		}
		flags, dropped := appendFlags(want, fc.perm)
		for _, f := range dropped {
			w.flagWarning(fc, string(f))
		}
		var set imap.UIDSet
		for _, msg := range msgs {
			set.AddNum(msg.dstUID)
		}
		err := w.dst.Store(ctx, fc.m.Target, set, &imap.StoreFlags{Op: imap.StoreFlagsSet, Silent: true, Flags: flags})
		var ie *imap.Error
		if errors.As(err, &ie) {
			w.run.warn(fmt.Sprintf("folder %q: the target refused flags %s: %v", fc.m.Target, flagList(flags), ie))
		} else if err != nil {
			return err
		}
		stored += len(msgs)
	}
	if kept > 0 {
		w.run.warn(fmt.Sprintf("folder %q: %d messages had flags changed on the target too; the target's changes are kept", fc.m.Target, kept))
	}
	var changed []*message
	var recs []state.Message
	for _, msg := range cands {
		if _, ok := results[msg]; !ok {
			continue
		}
		// The base of the next merge is the source's flags as synced
		// now: a flag where the target differs from it is one the target
		// changed (it stays the target's to decide), any other follows
		// the source.
		r := msg.record()
		r.Flags = normFlags(msg.flags)
		recs = append(recs, r)
		changed = append(changed, msg)
	}
	if lease := w.run.opts.State; lease != nil && len(recs) > 0 {
		if err := lease.PutMessages(ctx, fc.rec.ID, recs, fc.rec.DstUIDNextMark); err != nil {
			return stateErr(err)
		}
	}
	for i, msg := range changed {
		msg.recorded(recs[i])
	}
	w.run.count(func(r *Report) { r.FlagsUpdated += stored })
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
func (r *run) folderChanges(ctx context.Context, sc, dc *imapconn.Session, mappings []FolderMapping) (bool, error) {
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
			d, err := sc.Status(ctx, m.src.Name, &imap.StatusOptions{UIDValidity: true})
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
			if err := renameTarget(ctx, dc, o.Target, m.Target); err != nil {
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
func renameTarget(ctx context.Context, dc *imapconn.Session, from, to string) error {
	if from == to {
		return nil
	}
	err := dc.Rename(ctx, from, to)
	if err == nil {
		return nil
	}
	if _, serr := dc.Status(ctx, to, &imap.StatusOptions{UIDValidity: true}); serr == nil {
		if _, ferr := dc.Status(ctx, from, &imap.StatusOptions{UIDValidity: true}); ferr != nil {
			return nil
		}
	}
	return err
}

// deleteFolder follows a source folder's deletion onto the target.
func (r *run) deleteFolder(ctx context.Context, dc *imapconn.Session, f state.Folder) error {
	lease := r.opts.State
	msgs, err := lease.Messages(ctx, f.ID)
	if err != nil {
		return err
	}
	if err := r.massExpunge(f.Source, len(msgs), len(msgs)); err != nil {
		r.warn(fmt.Sprintf("folder %q is gone from the source; its %d copies on the target are kept: %v", f.Source, len(msgs), err))
		r.mu.Lock()
		r.report.Failures = append(r.report.Failures, Failure{Folder: f.Source, Reason: err.Error()})
		r.report.Failed++
		r.mu.Unlock()
		return nil
	}
	sel, err := dc.Select(ctx, f.Target, nil)
	if err == nil && sel.UIDValidity == f.DstUIDValidity && len(msgs) > 0 {
		uids := dstUIDs(msgs)
		w := &worker{run: r, pair: pair{dst: dc}}
		if len(uids) > 0 {
			if err := w.deleteTarget(ctx, uids); err != nil {
				return fmt.Errorf("folder %q deleted on the source: %w", f.Source, err)
			}
		}
		r.count(func(rep *Report) { rep.Expunged += len(msgs) })
		sel, err = dc.Select(ctx, f.Target, nil)
	}
	what := "kept on the target: it holds messages mailferry did not copy"
	if err == nil {
		_ = dc.Unselect(ctx)
		if sel.NumMessages == 0 {
			if derr := dc.Delete(ctx, f.Target); derr == nil {
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
	_, err = lease.PutFolder(ctx, f)
	return err
}

// Mass expunges: a folder pass (or a folder deleted on the source) that
// would expunge more than massExpungeShare of a folder's copies, and more
// than massExpungeMin of them, stops instead (unless
// Options.AllowMassExpunge): a source folder that suddenly looks empty is
// more often a fault (a broken index, a restore, the wrong account) than
// a user's wish, and after the cutover the target is the user's mailbox.
const (
	massExpungeShare = 0.10
	massExpungeMin   = 5
)

// errFolderStopped ends a folder without a retry: going on needs the
// operator.
var errFolderStopped = errors.New("folder stopped")

// massExpunge returns an error when expunging gone of a folder's copies
// copies is a mass expunge.
func (r *run) massExpunge(folder string, gone, copies int) error {
	if r.opts.AllowMassExpunge || r.opts.KeepDeleted || gone <= massExpungeMin || float64(gone) <= massExpungeShare*float64(copies) {
		return nil
	}
	return fmt.Errorf("%w: %d of the %d messages copied from %q are gone from the source; their copies are not expunged from the target (more than %.0f%%: the source may be broken, or the wrong account). If it is meant, run again with --allow-mass-expunge",
		errFolderStopped, gone, copies, folder, 100*massExpungeShare)
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
