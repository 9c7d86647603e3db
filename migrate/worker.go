package migrate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"

	"mailferry/internal/failpoint"
	"mailferry/internal/imapconn"
	"mailferry/state"
)

// maxInFlight bounds the APPENDs pipelined on one target connection.
const maxInFlight = 32

// maxAttempts bounds reconnects per folder before it is given up.
const maxAttempts = 6

// msgStatus is where one source message stands.
type msgStatus int

const (
	statusPending  msgStatus = iota
	statusUnknown            // APPEND sent, outcome not known (connection lost, or no APPENDUID)
	statusAppended           // on the target at dstUID
	statusVerified           // and verified
	statusFailed             // given up, reason set
)

// message is one source message and its fate.
type message struct {
	uid    imap.UID
	flags  []imap.Flag
	date   time.Time
	size   int64 // RFC822.SIZE, then the literal's size once fetched
	sha    [32]byte
	hashed bool // sha holds the exact bytes' digest

	status  msgStatus
	dstUID  imap.UID
	retried bool // a bad copy was already deleted and retried once
	// flagLevel steps down after the target refuses an APPEND for its
	// flags: 0 all flags, 1 system flags only, 2 none.
	flagLevel int
	fetched   bool        // the current batch's FETCH returned this message's body
	sent      []imap.Flag // the flags the last APPEND carried
	reason    string

	rec         bool     // the state's map holds this message as it is now
	recVerified bool     // and holds it as verified
	recFlags    []string // the flags the map last recorded (normFlags)
	// copyFlags, when set, are the flags the target copy is known to
	// carry (a copy found on the target, not appended now); record stores
	// them instead of the source's, so the next flag sync corrects them.
	copyFlags []string
	done      bool // copied by an earlier run (found in the map or rematched)

	// suspect: the state's suspects hold this message (an APPEND of it was
	// or is about to be sent); lost: one of its APPENDs may land without
	// its answer ever being seen (sent before a crash, or on a connection
	// that dropped), so it stays a suspect for good.
	suspect, lost bool
}

// folderCopy is the progress of one folder; it survives reconnects.
type folderCopy struct {
	m      *FolderMapping
	msgs   []*message // by source UID, ascending
	byUID  map[imap.UID]*message
	listed bool
	// mark: every target UID below it is accounted for (see ledger.go);
	// at and above it, copies of this pass wait for their check, and any
	// other message is a stranger to resolve.
	mark imap.UID
	// suspectAll: every source message counts as a suspect (a state
	// written before suspects were recorded).
	suspectAll bool
	// late counts, by the digest of their bytes, the APPENDs of this run
	// whose answer was lost and whose copy has not been found on the
	// target yet (a digest leaves the map at 0); lastLost is when the last
	// was lost (both guarded by mu: the APPEND collector loses sends too).
	late     map[[32]byte]int
	lastLost time.Time
	// lookedAt is when the last check of the whole of [mark, ...) began:
	// every copy committed before then is accounted for.
	lookedAt time.Time
	// inherited: the state holds suspects of a run that never released its
	// lease (it crashed); their APPENDs may land until run.lateUntil.
	inherited bool
	// loaded is the folder's state record as read before the pass began
	// (see unchanged); nil: prepare reads it.
	loaded *state.Folder
	// split, when set, bounds the messages of a MULTIAPPEND batch after
	// the target refused a larger one (see appendMulti).
	split    int
	perm     permSet
	mu       sync.Mutex // guards warned and late (the APPEND collector warns and loses sends too)
	warned   map[string]bool
	flagWarn int

	rec    state.Folder // the folder's state record (State only)
	stored state.Folder // rec as last written
	modseq uint64       // the source's HIGHESTMODSEQ when the pass began
}

// worker copies folders over its own pair of connections.
type worker struct {
	run *run
	pair
	dstSt *imapconn.Stream // the target's side of the batch streaming now
	buf   []byte
	meter streamMeter // counts the body bytes sent, for EventBytes
}

func (w *worker) close() {
	// Only the copy's last worker keeps its pair for the next pass: a kept
	// pair must never sit idle, holding places under the caps, while this
	// copy still waits for another worker.
	last := w.run.workersLeft.Add(-1) == 0
	if w.src != nil && w.dst != nil && last {
		w.run.release(w.pair)
	} else {
		w.pair.close()
	}
	w.pair = pair{}
}

// connect reopens the connections when either is missing or dead. Both
// are taken together, in the clusters' global order (see
// run.dialPair), so that copies in opposite directions never each hold
// one cluster's last place while waiting for the other's.
func (w *worker) connect(ctx context.Context) error {
	if w.pair.alive() {
		return nil
	}
	w.pair.close()
	w.pair = pair{}
	p, err := w.run.takePair(ctx)
	if err != nil {
		return err
	}
	w.pair = p
	return nil
}

// copyFolder copies one folder, reconnecting after lost connections, and
// records the outcome of every message in the report.
func (w *worker) copyFolder(ctx context.Context, m *FolderMapping) {
	r := w.run
	r.emit(Event{Kind: EventFolderStarted, Folder: m.Source})
	fc := &folderCopy{m: m, byUID: map[imap.UID]*message{}, warned: map[string]bool{}}
	if w.unchanged(ctx, fc) {
		r.emit(Event{Kind: EventFolderDone, Folder: m.Source})
		return
	}
	var lastErr error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if errors.Is(lastErr, errReconnect) {
			// A message was refused and the connection dropped with it:
			// that is progress, not trouble; reconnect at once.
			attempt--
		} else if attempt > 0 {
			if !r.budget.Take() {
				lastErr = fmt.Errorf("%w (no retry left: the mailbox's %d retries are spent)", lastErr, r.opts.MailboxRetries)
				break
			}
			// Honours a wait the server asked for ("try again in 30 s").
			if d := imapconn.Decide(lastErr); r.limOf(d.Side).Pause(ctx, attempt-1, d.Verdict()) != nil {
				break
			}
		}
		if err := w.connect(ctx); err != nil {
			lastErr = err
			if !imapconn.Decide(err).Retryable() {
				break
			}
			continue
		}
		err := w.copyOnce(ctx, fc)
		if err == nil {
			lastErr = nil
			break
		}
		lastErr = err
		if ctx.Err() != nil || errors.Is(err, ErrInterrupted) || errors.Is(err, ErrOutsideWindow) || errors.Is(err, errFolderStopped) {
			break
		}
		switch imapconn.Decide(err).Action {
		case imapconn.Retry, imapconn.Reconnect:
			// A dead connection is reopened by connect; a live one that
			// answered "try later" is reused.
			continue
		case imapconn.CreateRetry:
			if cerr := w.dst.Create(ctx, m.Target); cerr != nil && imapconn.Decide(cerr).Action != imapconn.Exists {
				lastErr = cerr
				attempt = maxAttempts
			}
			continue
		}
		break
	}
	if n, last := fc.unfound(); n > 0 && r.opts.State != nil {
		// Stopped (or gave up) while APPENDs may still land: the next run
		// of this migration must look for them once they can no longer.
		r.opts.State.MayLand(last.Add(r.opts.LateCommitWindow))
	}
	w.finish(fc, lastErr)
	r.emit(Event{Kind: EventFolderDone, Folder: m.Source})
}

// unchanged reports whether a folder cannot have changed since the last
// pass, by what both servers listed (LIST-STATUS) and the state holds: the
// source's UIDVALIDITY and HIGHESTMODSEQ (which moves with every new
// message, flag change and expunge) are the ones recorded when the last
// pass began, the target's UIDVALIDITY and UIDNEXT are the recorded ones
// and its mark (nothing reached it since), no suspect is recorded, and
// every source message has a verified copy in the map. Such a folder is
// not opened on either side: its messages count as already copied. A
// converging pass, a cron rerun or a final delta of a quiet mailbox then
// costs a LIST on each side. The record it read is kept for the pass
// (fc.loaded) when the folder is opened after all.
func (w *worker) unchanged(ctx context.Context, fc *folderCopy) bool {
	r := w.run
	lease := r.opts.State
	m := fc.m
	s, d := m.src, m.dst
	if lease == nil || d == nil || s.HighestModSeq == 0 || s.UIDValidity == 0 || d.UIDValidity == 0 || d.UIDNext == 0 {
		return false
	}
	rec, ok, err := lease.LookupFolder(ctx, m.Source)
	if err != nil {
		return false
	}
	fc.loaded = &rec
	if !ok {
		return false // a folder new to the state
	}
	if rec.SrcUIDValidity != s.UIDValidity || rec.SrcHighestModSeq != s.HighestModSeq ||
		rec.DstUIDValidity != d.UIDValidity || rec.DstUIDNextMark != d.UIDNext || rec.Suspects != "" || rec.Target != m.Target {
		return false
	}
	known, err := lease.Messages(ctx, rec.ID)
	if err != nil || len(known) != int(s.Messages) {
		return false
	}
	var bytes int64
	for _, k := range known {
		if (r.opts.Verify != VerifyNone && !k.Verified) || k.DstUID == 0 {
			return false
		}
		bytes += k.Size
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := r.report
	rep.Messages += len(known)
	rep.Bytes += bytes
	rep.Done += len(known)
	if r.opts.Verify != VerifyNone {
		rep.Verified += len(known)
	}
	r.bytesDone += bytes
	return true
}

// finish moves the folder's outcome into the report.
func (w *worker) finish(fc *folderCopy, err error) {
	r := w.run
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := r.report
	if !fc.listed {
		reason := "not copied"
		if err != nil {
			reason = err.Error()
		}
		rep.Failures = append(rep.Failures, Failure{Folder: fc.m.Source, Reason: reason})
		rep.Messages += int(fc.m.src.Messages)
		rep.Failed += max(int(fc.m.src.Messages), 1)
		return
	}
	for _, msg := range fc.msgs {
		rep.Messages++
		rep.Bytes += msg.size
		copied := func() {
			r.bytesDone += msg.size
			if msg.done {
				rep.Done++
			} else {
				rep.Copied++
			}
		}
		switch msg.status {
		case statusVerified:
			copied()
			rep.Verified++
			continue
		case statusAppended:
			copied()
			if r.opts.Verify == VerifyNone {
				continue
			}
			msg.reason = "appended but not verified"
		case statusUnknown:
			msg.reason = "append outcome unknown: the connection was lost"
		case statusPending:
			if errors.Is(err, ErrInterrupted) || errors.Is(err, ErrOutsideWindow) || errors.Is(err, context.Canceled) {
				rep.Remaining++ // left for the next run, not failed
				continue
			}
			msg.reason = "not copied"
		}
		if msg.reason == "" {
			msg.reason = "failed"
		}
		if err != nil && msg.status != statusFailed {
			msg.reason += ": " + err.Error()
		}
		rep.Failed++
		rep.Failures = append(rep.Failures, Failure{Folder: fc.m.Source, UID: uint32(msg.uid), Reason: msg.reason})
	}
}

// copyOnce runs the folder copy on the current connections until it is done
// or a connection fails. It is safe to call again after a failure: messages
// whose APPEND outcome is unknown are looked for on the target before
// anything is appended again.
func (w *worker) copyOnce(ctx context.Context, fc *folderCopy) error {
	m := fc.m
	ssel, err := w.src.Select(ctx, m.src.Name, &imap.SelectOptions{ReadOnly: true, CondStore: w.src.Features.CondStore})
	if err != nil {
		return err
	}
	selectedAt := time.Now()
	sel, err := w.dst.Select(ctx, m.Target, nil)
	if err != nil {
		return err
	}
	fc.perm = newPermSet(sel.PermanentFlags)
	if !fc.listed {
		if err := w.prepare(ctx, fc, ssel, sel); err != nil {
			return err
		}
	}
	// Every pass, and every reconnect, first accounts for what reached
	// the target at or above the mark since the last look: copies that
	// wait for their check, and late commits of APPENDs whose answer was
	// lost. When the target's UIDNEXT says nothing is there, nothing is.
	if sel.UIDNext == 0 || imap.UID(sel.UIDNext) > fc.mark || len(fc.with(statusUnknown)) > 0 {
		if err := w.settle(ctx, fc, 0); err != nil {
			return err
		}
	} else {
		fc.lookedAt = selectedAt // nothing at or above the mark then
	}
	if err := w.record(ctx, fc, fc.msgs, w.firstBatch(fc)); err != nil {
		return err
	}
	// Adopted copies carry the flags they were appended with; the source
	// may have changed them since.
	if err := w.syncFlags(ctx, fc); err != nil {
		return err
	}

	// Messages refused for their flags come back as pending with fewer
	// flags; the flag level bounds the rounds.
	for round := 0; round < 3; round++ {
		if err := w.copyPending(ctx, fc); err != nil {
			return err
		}
	}
	// One retry for messages whose target copy did not match.
	for _, msg := range fc.msgs {
		if !msg.awaitsRetry() {
			continue
		}
		msg.retried = true
		msg.status = statusPending
		if err := w.copyPending(ctx, fc); err != nil {
			return err
		}
	}
	if err := w.awaitLate(ctx, fc); err != nil {
		return err
	}
	return w.finishFolder(ctx, fc)
}

// latePoll is how often awaitLate looks for the late copies of this run's
// lost APPENDs.
const latePoll = 200 * time.Millisecond

// awaitLate keeps the folder pass from ending while an APPEND it cannot
// account for may still land: a server may commit what it received after
// the connection is gone. Each APPEND of this run whose answer was lost is
// looked for until its copy is found (each commits at most once, so then
// nothing more can come) or Options.LateCommitWindow has passed since the
// last was lost; after a takeover from a run that crashed with suspects in
// this folder, one look starts after that run's window has passed.
// Without lost APPENDs or a crashed predecessor it returns at once.
func (w *worker) awaitLate(ctx context.Context, fc *folderCopy) error {
	window := w.run.opts.LateCommitWindow
	for {
		n, last := fc.unfound()
		inherited := fc.awaitsInherited(w.run)
		ownDone := n == 0 || !fc.lookedAt.Before(last.Add(window))
		if ownDone && !inherited {
			if n > 0 {
				w.run.warn(fmt.Sprintf("folder %q: %d APPENDs sent on a target connection that dropped were not stored within %v; taken as never stored (a copy stored later still is removed by the next run)",
					fc.m.Target, n, window))
			}
			return nil
		}
		next := time.Now().Add(latePoll)
		if ownDone {
			next = w.run.lateUntil // only the crashed run's window is left
		}
		t := time.NewTimer(time.Until(next))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		if err := w.settle(ctx, fc, 0); err != nil {
			return err
		}
		if err := w.record(ctx, fc, fc.msgs, nil); err != nil {
			return err
		}
	}
}

// lose notes an APPEND of msg whose answer will never be read: the target
// may store it anyway, now or later (see awaitLate). msg.sha must be the
// digest of the bytes sent.
func (fc *folderCopy) lose(msg *message) {
	msg.lost = true
	fc.mu.Lock()
	if fc.late == nil {
		fc.late = map[[32]byte]int{}
	}
	fc.late[msg.sha]++
	fc.lastLost = time.Now()
	fc.mu.Unlock()
}

// found notes a copy of ours found on the target by its bytes: if a lost
// APPEND of those bytes was outstanding, that is where it went.
func (fc *folderCopy) found(sha [32]byte) {
	fc.mu.Lock()
	if fc.late[sha] > 1 {
		fc.late[sha]--
	} else {
		delete(fc.late, sha)
	}
	fc.mu.Unlock()
}

// unfound is how many lost APPENDs of this run have not been found, and
// when the last was lost.
func (fc *folderCopy) unfound() (n int, last time.Time) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	for _, k := range fc.late {
		n += k
	}
	return n, fc.lastLost
}

// copyPending appends and verifies every pending message in batches.
func (w *worker) copyPending(ctx context.Context, fc *folderCopy) error {
	pending := fc.with(statusPending)
	for len(pending) > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if w.run.stopping() {
			return ErrInterrupted
		}
		if err := w.run.window(ctx); err != nil {
			if errors.Is(err, ErrOutsideWindow) {
				w.run.windowClosed.Store(true)
			}
			return err
		}
		n := w.batchLen(fc, pending)
		batch := pending[:n]
		pending = pending[n:]
		next := pending[:w.batchLen(fc, pending)]
		if err := w.announce(ctx, fc, batch); err != nil {
			return err
		}
		split := fc.split
		if err := w.appendBatch(ctx, fc, batch); err != nil {
			return err
		}
		if fc.split != split {
			// The target refused the batch as a whole (MULTIAPPEND is
			// atomic: nothing was stored): again, in smaller batches.
			pending = append(slices.Clip(batch), pending...)
			continue
		}
		if hi, ok := settleBound(fc, batch); ok {
			if err := w.settle(ctx, fc, hi); err != nil {
				return err
			}
		}
		var err error
		if len(pending) == 0 && fc.passComplete(w.run) {
			err = w.recordLast(ctx, fc, batch)
		} else {
			err = w.record(ctx, fc, batch, next)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// passComplete reports whether nothing is left for the folder's pass to
// do after the batch just checked: no message waits to be sent, for its
// outcome or for its retry, no lost APPEND of this run is unaccounted for
// and no crashed run's APPENDs may still land. What copyOnce does then
// until finishFolder writes nothing, so the last batch's record can carry
// what finishFolder would write (see recordLast).
func (fc *folderCopy) passComplete(r *run) bool {
	for _, msg := range fc.msgs {
		switch {
		case msg.status == statusPending, msg.status == statusUnknown:
			return false
		case msg.awaitsRetry():
			return false
		}
	}
	if n, _ := fc.unfound(); n > 0 {
		return false
	}
	return !fc.awaitsInherited(r)
}

// awaitsRetry: the message failed for a bad target copy and gets its one
// retry (copyOnce).
func (msg *message) awaitsRetry() bool {
	return msg.status == statusFailed && !msg.retried && msg.retryable()
}

// awaitsInherited: a crashed run's APPENDs may still land in the folder
// after its last look (awaitLate waits for one more look after
// run.lateUntil).
func (fc *folderCopy) awaitsInherited(r *run) bool {
	return fc.inherited && fc.lookedAt.Before(r.lateUntil)
}

// settleBound is how far the check after a batch must look: up to the
// batch's highest APPENDUID when every outcome is known, else up to the
// newest message (hi 0). ok is false when there is nothing to check.
func settleBound(fc *folderCopy, batch []*message) (hi imap.UID, ok bool) {
	if len(fc.with(statusUnknown)) > 0 {
		return 0, true
	}
	for _, msg := range batch {
		if msg.status == statusAppended && msg.dstUID >= fc.mark {
			hi = max(hi, msg.dstUID)
		}
	}
	return hi, hi != 0
}

// retryable: only a bad target copy is retried; a refused APPEND is not.
func (msg *message) retryable() bool { return strings.HasPrefix(msg.reason, "verification failed") }

// ours records that msg is on the target at uid. It is called by one
// goroutine at a time (the APPEND collector while a batch streams, the
// worker otherwise).
func (fc *folderCopy) ours(msg *message, uid imap.UID) {
	msg.status, msg.dstUID = statusAppended, uid
}

func (fc *folderCopy) with(s msgStatus) []*message {
	var out []*message
	for _, msg := range fc.msgs {
		if msg.status == s {
			out = append(out, msg)
		}
	}
	return out
}

// listMessages fetches UID, flags, date and size of the source messages.
// With changedSince (CONDSTORE, from the last pass), only messages changed
// since then are fetched; the others are the map's records, and a UID
// SEARCH supplies the folder's complete UID set (so expunges show).
func (w *worker) listMessages(ctx context.Context, fc *folderCopy, known []state.Message, changedSince uint64) error {
	opts := &imap.FetchOptions{UID: true, Flags: true, InternalDate: true, RFC822Size: true, ChangedSince: changedSince}
	if err := w.fetchMeta(ctx, fc, imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, opts); err != nil {
		return err
	}
	if changedSince > 0 {
		var sopts *imap.SearchOptions
		if w.src.Features.ESearch {
			sopts = &imap.SearchOptions{ReturnAll: true}
		}
		data, err := w.src.UIDSearch(ctx, fc.m.Source, &imap.SearchCriteria{}, sopts)
		if err != nil {
			return err
		}
		byUID := make(map[imap.UID]*state.Message, len(known))
		for i := range known {
			byUID[imap.UID(known[i].SrcUID)] = &known[i]
		}
		var missing imap.UIDSet
		for _, uid := range data.AllUIDs() {
			if fc.byUID[uid] != nil {
				continue
			}
			k := byUID[uid]
			if k == nil {
				missing.AddNum(uid) // not changed, not recorded: a message that failed before
				continue
			}
			msg := &message{uid: uid, size: k.Size}
			for _, f := range k.Flags {
				msg.flags = append(msg.flags, imap.Flag(f))
			}
			fc.msgs = append(fc.msgs, msg)
			fc.byUID[uid] = msg
		}
		if len(missing) > 0 {
			opts.ChangedSince = 0
			if err := w.fetchMeta(ctx, fc, missing, opts); err != nil {
				return err
			}
		}
	}
	sort.Slice(fc.msgs, func(i, j int) bool { return fc.msgs[i].uid < fc.msgs[j].uid })
	return nil
}

func (w *worker) fetchMeta(ctx context.Context, fc *folderCopy, set imap.NumSet, opts *imap.FetchOptions) (err error) {
	st, err := w.src.Stream(ctx)
	if err != nil {
		return err
	}
	defer func() { st.End(err) }()
	fetch := st.Fetch(set, opts)
	defer fetch.Close()
	for {
		st.Asked()
		data := fetch.Next()
		if data == nil {
			break
		}
		st.Answered()
		buf, err := data.Collect()
		if err != nil {
			return st.Err("list messages", fc.m.Source, 0, err)
		}
		if buf.UID == 0 || fc.byUID[buf.UID] != nil {
			continue
		}
		msg := &message{uid: buf.UID, flags: buf.Flags, date: buf.InternalDate, size: buf.RFC822Size}
		fc.msgs = append(fc.msgs, msg)
		fc.byUID[msg.uid] = msg
	}
	if err := fetch.Close(); err != nil {
		return st.Err("list messages", fc.m.Source, 0, err)
	}
	return nil
}

func (w *worker) maxTargetUID(ctx context.Context) (imap.UID, error) {
	data, err := w.dst.UIDSearch(ctx, "", &imap.SearchCriteria{}, &imap.SearchOptions{ReturnMax: true})
	if err != nil {
		return 0, err
	}
	if uids := data.AllUIDs(); len(uids) > 0 {
		return uids[len(uids)-1], nil
	}
	return imap.UID(data.Max), nil
}

// pendingAppend is an APPEND sent and not yet answered.
type pendingAppend struct {
	msg  *message
	cmd  *imapconn.AppendCommand
	sent time.Time // when its literal was complete
}

// appendBatch streams the batch's bodies from the source straight into
// pipelined APPENDs on the target, hashing the exact bytes on the way.
func (w *worker) appendBatch(ctx context.Context, fc *folderCopy, batch []*message) error {
	var uids imap.UIDSet
	for _, msg := range batch {
		msg.fetched = false
		if msg.size == 0 {
			msg.status, msg.reason = statusFailed, "empty message: a zero-byte message cannot be appended"
			continue
		}
		uids.AddNum(msg.uid)
	}
	if len(uids) == 0 {
		return nil
	}
	if w.multi() {
		return w.appendMulti(ctx, fc, batch, uids)
	}
	srcStream, dstStream, err := w.beginPair(ctx)
	if err != nil {
		return err
	}
	w.dstSt = dstStream
	inflight := make(chan pendingAppend, maxInFlight)
	var wg sync.WaitGroup
	var lost error // a completion said the target connection is gone
	var lostMu sync.Mutex
	wg.Add(1)
	go func() {
		defer wg.Done()
		for p := range inflight {
			data, err := p.cmd.Wait()
			w.run.dstLim.ObserveAppend(time.Since(p.sent), p.msg.size)
			w.appended(fc, p.msg, data, err)
			if a := decideAppend(err).Action; a == imapconn.Reconnect || a == imapconn.FailMailbox || a == imapconn.Retry {
				lostMu.Lock()
				if lost == nil {
					lost = &imapconn.OpError{Side: imapconn.Target, Op: "append", Folder: fc.m.Target, UID: p.msg.uid, Err: err}
				}
				lostMu.Unlock()
			}
		}
	}()
	err = w.streamBatch(ctx, fc, srcStream, uids, func(msg *message, lit imap.LiteralReader) error {
		return w.appendOne(ctx, fc, msg, lit, inflight)
	})
	srcStream.End(sideErr(imapconn.Source, err))
	close(inflight)
	wg.Wait()
	if err == nil {
		err = lost
	}
	dstStream.End(sideErr(imapconn.Target, err))
	if err == nil {
		// A message expunged on the source since the listing is not fetched.
		for _, msg := range batch {
			if msg.status == statusPending && !msg.fetched {
				msg.status, msg.reason = statusFailed, "vanished from the source during the copy"
			}
		}
	}
	return err
}

// streamBatch fetches the bodies of uids from the source and hands each to
// sink as it comes (sink must read it to its end, or leave it unread for
// the FETCH loop to discard, before it returns).
func (w *worker) streamBatch(ctx context.Context, fc *folderCopy, st *imapconn.Stream, uids imap.UIDSet, sink func(*message, imap.LiteralReader) error) (err error) {
	// One message at a time under the messages/s buckets. The source's
	// latency is the wait for each message, counted from when it may
	// come: for the first, from the command itself, so that a rate limit
	// (whose waits let later messages queue up unseen) cannot hide a slow
	// server.
	wait := func() error {
		if err := w.run.srcLim.WaitMessages(ctx, 1); err != nil {
			return err
		}
		return w.run.dstLim.WaitMessages(ctx, 1)
	}
	defer w.meter.flush()
	if err := wait(); err != nil {
		return err
	}
	st.Asked()
	fetch := st.Fetch(uids, &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	})
	defer closeFetch(w.src, fetch, &err)
	for first := true; ; first = false {
		if !first {
			if err := wait(); err != nil {
				return err
			}
			st.Asked()
		}
		data := fetch.Next()
		if data == nil {
			break
		}
		st.Answered()
		var uid imap.UID
		var spooled *os.File
		var spooledSize int64
		for item := data.Next(); item != nil; item = data.Next() {
			switch it := item.(type) {
			case imapconn.FetchItemUID:
				uid = it.UID
			case imapconn.FetchItemBody:
				if it.Literal == nil {
					continue
				}
				if uid == 0 {
					// This server sends the body before the UID: keep the
					// bytes on disk until the UID says which message it is.
					f, n, err := spool(it.Literal)
					if err != nil {
						return err
					}
					spooled, spooledSize = f, n
					continue
				}
				if err := sink(fc.byUID[uid], it.Literal); err != nil {
					return err
				}
			}
		}
		if spooled != nil {
			err := sink(fc.byUID[uid], sizedReader{spooled, spooledSize})
			spooled.Close()
			os.Remove(spooled.Name())
			if err != nil {
				return err
			}
		}
	}
	if err := fetch.Close(); err != nil {
		return st.Err("fetch", fc.m.Source, 0, err)
	}
	return nil
}

type sizedReader struct {
	io.Reader
	n int64
}

func (s sizedReader) Size() int64 { return s.n }

func spool(r io.Reader) (*os.File, int64, error) {
	f, err := os.CreateTemp("", "mailferry-spool-*")
	if err != nil {
		return nil, 0, fmt.Errorf("spool message: %w", err)
	}
	n, err := io.Copy(f, r)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, 0, fmt.Errorf("spool message: %w", err)
	}
	return f, n, nil
}

// appendOne streams one body into an APPEND. The literal must be read to
// its end before the next FETCH item is requested.
func (w *worker) appendOne(ctx context.Context, fc *folderCopy, msg *message, lit imap.LiteralReader, inflight chan<- pendingAppend) error {
	// The server judges the size of a single APPEND itself.
	size, ok := w.admit(msg, lit, 0)
	if !ok {
		return nil
	}
	flags := w.sendFlags(fc, msg)
	cmd := w.dstSt.Append(fc.m.Target, size, &imap.AppendOptions{Flags: flags, Time: msg.date})
	msg.status = statusUnknown
	sourceBroke, err := w.copyBody(ctx, msg, lit, size, cmd)
	if err == nil {
		err = w.fenced() // the literal is out, the command not yet ended
	}
	if err != nil {
		msg.status = statusPending
		if errors.Is(err, state.ErrLeaseLost) {
			// Never end the command: drop the connection, so the server
			// stores nothing of it.
			w.dst.Close()
			_ = cmd.Close()
			return fmt.Errorf("append uid %d to %q: %w", msg.uid, fc.m.Target, err)
		}
		if sourceBroke {
			// The source broke mid-message. Never leave an APPEND
			// mid-literal: drop the target connection. The literal never
			// completed, so nothing was stored for this message; earlier
			// APPENDs still in flight become unknown and are reconciled.
			w.dst.Close()
			_ = cmd.Close() // releases the client's command lock
			return fmt.Errorf("fetch uid %d from %q on the source: %w: %w", msg.uid, fc.m.Source, errLiteralBroken, err)
		}
		// The target refused before or during the literal, or the
		// connection broke. Closing the command ends it either way (the
		// library completes a command whose final write fails); the
		// answer says which.
		_ = cmd.Close()
		werr := waitOrClose(cmd, w.dst, 5*time.Second)
		w.dst.Close()
		var ie *imap.Error
		if errors.As(werr, &ie) {
			msg.status, msg.reason = statusFailed, fmt.Sprintf("append refused by the target: %v", werr)
			d := decideAppend(werr)
			refused := d.Action == imapconn.FailMessage || d.Action == imapconn.Exists
			if d.Action == imapconn.Retry {
				msg.status, msg.reason = statusPending, "" // a busy server stored nothing: again after the wait
			}
			if refused && w.fallBack(fc, msg, werr) {
				msg.status, msg.reason = statusPending, ""
			}
			if refused {
				// Only this message is refused; reconnect and go on.
				return &imapconn.OpError{Side: imapconn.Target, Op: "append", Folder: fc.m.Target, UID: msg.uid, Err: errReconnect}
			}
			return &imapconn.OpError{Side: imapconn.Target, Op: "append", Folder: fc.m.Target, UID: msg.uid, Err: werr}
		}
		return &imapconn.OpError{Side: imapconn.Target, Op: "append", Folder: fc.m.Target, UID: msg.uid, Err: err}
	}
	if err := cmd.Close(); err != nil {
		// The whole literal went out: the server may store it anyway.
		msg.status = statusPending
		fc.lose(msg)
		w.dst.Close()
		return &imapconn.OpError{Side: imapconn.Target, Op: "append", Folder: fc.m.Target, UID: msg.uid, Err: err}
	}
	select {
	case inflight <- pendingAppend{msg: msg, cmd: cmd, sent: time.Now()}:
		return nil
	case <-ctx.Done():
		fc.lose(msg) // sent, its answer never read
		return ctx.Err()
	}
}

// admit takes a body the FETCH handed over for sending, or says to let the
// FETCH loop discard it: a message not asked for (or already handled), or
// one that cannot be appended (failed here, with the reason): empty, or
// over limit (0: none checked here). Both APPEND paths start with it.
func (w *worker) admit(msg *message, lit imap.LiteralReader, limit int64) (int64, bool) {
	if msg == nil || msg.status != statusPending {
		return 0, false
	}
	msg.fetched = true
	size := lit.Size()
	switch {
	case size == 0:
		msg.status, msg.reason = statusFailed, "empty message: a zero-byte message cannot be appended"
		return 0, false
	case limit > 0 && size > limit:
		msg.status, msg.reason = statusFailed, fmt.Sprintf("%d bytes, larger than the target's APPENDLIMIT of %d", size, limit)
		return 0, false
	}
	return size, true
}

// sendFlags are the flags msg is appended with at its fallback level,
// those the target does not keep dropped (with a warning); msg.sent
// records them.
func (w *worker) sendFlags(fc *folderCopy, msg *message) []imap.Flag {
	flags, dropped := appendFlags(msg.flagsAt(msg.flagLevel), fc.perm)
	msg.sent = flags
	for _, f := range dropped {
		w.flagWarning(fc, string(f))
	}
	return flags
}

// copyBody streams size bytes of lit into dst (an APPEND's literal) under
// the bytes/s limits, hashing them on the way; on success msg holds their
// size and SHA-256. On failure, sourceBroke says whether the source's
// literal broke (else the write to the target failed). The
// "append-literal" failpoint fires halfway through bodies over 1 MiB.
func (w *worker) copyBody(ctx context.Context, msg *message, lit imap.LiteralReader, size int64, dst io.Writer) (sourceBroke bool, err error) {
	if w.buf == nil {
		w.buf = make([]byte, 64<<10)
	}
	w.run.count(func(r *Report) { r.BodiesFetched++ })
	ew := &errWriter{w: dst, fence: w.run.opts.State}
	var dw io.Writer = ew
	if size > 1<<20 {
		dw = &failWriter{Writer: dw, at: size / 2}
	}
	if w.run.opts.Observer != nil {
		w.meter.w, w.meter.run = dw, w.run
		dw = &w.meter
	}
	h := sha256.New()
	body := w.run.limitedReader(ctx, io.LimitReader(lit, size))
	n, err := io.CopyBuffer(dw, io.TeeReader(body, h), w.buf)
	if err == nil && n != size {
		err = fmt.Errorf("source literal for uid %d ended after %d of %d bytes", msg.uid, n, size)
	}
	if err != nil {
		return ew.err == nil, err
	}
	copy(msg.sha[:], h.Sum(nil))
	msg.size, msg.hashed = size, true
	return false, nil
}

// waitOrClose waits for an APPEND whose literal could not be written. When
// the server refused it, its answer is already on the way; when the
// connection broke, nothing will come, so the connection is closed to
// release the command.
func waitOrClose(cmd *imapconn.AppendCommand, c *imapconn.Session, d time.Duration) error {
	done := make(chan error, 1)
	go func() {
		_, err := cmd.Wait()
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		c.Close()
		return <-done
	}
}

// fenced is the lease's CheckHeld (nil without a lease).
func (w *worker) fenced() error {
	if l := w.run.opts.State; l != nil {
		return l.CheckHeld()
	}
	return nil
}

// errWriter remembers whether a write failed (as opposed to the read).
// With a fence, it refuses to write once the lease expired unrenewed
// (state.Lease.CheckHeld): a process frozen mid-literal past its lease
// sends no more of it.
type errWriter struct {
	w     io.Writer
	err   error
	fence *state.Lease
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.fence != nil {
		if err := e.fence.CheckHeld(); err != nil {
			e.err = err
			return 0, err
		}
	}
	n, err := e.w.Write(p)
	if err != nil {
		e.err = err
	}
	return n, err
}

// errLiteralBroken marks an error while reading a FETCH literal: the
// connection is not to be read any more.
var errLiteralBroken = errors.New("message body cut off")

// closeFetch ends a FETCH. After a literal broke, the connection is closed
// instead: go-imap (v2.0.0-beta.8) would read the broken literal again to
// discard it, racing its own reader goroutine on the dead connection.
func closeFetch(c *imapconn.Session, fetch *imapconn.FetchCommand, err *error) {
	if errors.Is(*err, errLiteralBroken) {
		c.Close()
		return
	}
	fetch.Close()
}

// failWriter passes the "append-literal" failpoint when the write
// crosses byte at.
type failWriter struct {
	io.Writer
	at, n int64
}

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n < f.at && f.n+int64(len(p)) >= f.at {
		failpoint.Hit("append-literal")
	}
	n, err := f.Writer.Write(p)
	f.n += int64(n)
	return n, err
}

// errReconnect asks for the target connection to be reopened; it is
// classified Retry.
var errReconnect = errors.New("target closed the connection after refusing a message")

// flagsAt is the message's flags at a fallback level.
func (msg *message) flagsAt(level int) []imap.Flag {
	switch level {
	case 0:
		return msg.flags
	case 1:
		var sys []imap.Flag
		for _, f := range msg.flags {
			if strings.HasPrefix(string(f), `\`) {
				sys = append(sys, f)
			}
		}
		return sys
	}
	return nil
}

// fallBack decides, after the target refused a message, whether to try it
// again with fewer flags (a server may refuse a keyword it cannot store:
// too long, too many). It warns once per folder and level.
func (w *worker) fallBack(fc *folderCopy, msg *message, err error) bool {
	for msg.flagLevel < 2 {
		before, _ := appendFlags(msg.flagsAt(msg.flagLevel), permSet{})
		msg.flagLevel++
		after, _ := appendFlags(msg.flagsAt(msg.flagLevel), permSet{})
		if len(after) == len(before) {
			continue
		}
		var gone []imap.Flag
		for _, f := range before {
			if !slices.Contains(after, f) {
				gone = append(gone, f)
			}
		}
		what := "keywords"
		if msg.flagLevel == 2 {
			what = "flags"
		}
		key := fmt.Sprintf("refused %s", what)
		fc.mu.Lock()
		first := !fc.warned[key]
		fc.warned[key] = true
		fc.mu.Unlock()
		if first {
			w.run.warn(fmt.Sprintf("folder %q: the target refused uid %d with %s %s (%v); such messages are copied without their %s",
				fc.m.Target, msg.uid, what, flagList(gone), err, what))
		}
		return true
	}
	return false
}

func flagList(fs []imap.Flag) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = string(f)
	}
	return "(" + strings.Join(s, " ") + ")"
}

func (w *worker) flagWarning(fc *folderCopy, flag string) {
	fc.mu.Lock()
	seen := fc.warned[flag]
	fc.warned[flag] = true
	fc.mu.Unlock()
	if seen {
		return
	}
	w.run.warn(fmt.Sprintf("folder %q: the target does not keep flag %q; messages copied without it", fc.m.Target, flag))
}

// appended records an APPEND's answer. It runs on the collector goroutine
// while the batch streams; it only touches msg.
func (w *worker) appended(fc *folderCopy, msg *message, data *imap.AppendData, err error) {
	d := decideAppend(err)
	switch {
	case err == nil && data != nil && data.UID != 0 && w.dst.Features.UIDPlus:
		failpoint.Hit("append-answered") // stored on the target, not yet recorded
		fc.ours(msg, data.UID)
		w.run.emit(Event{Kind: EventMessageCopied, Folder: fc.m.Source, Messages: 1, Bytes: msg.size})
	case err == nil:
		msg.status = statusUnknown // no APPENDUID: found by reconcile
		w.run.emit(Event{Kind: EventMessageCopied, Folder: fc.m.Source, Messages: 1, Bytes: msg.size})
	case d.Action == imapconn.Retry:
		msg.status = statusPending // refused by a busy server, nothing stored: again after the wait
	case (d.Action == imapconn.FailMessage || d.Action == imapconn.Exists) && w.fallBack(fc, msg, err):
		msg.status = statusPending // again, with fewer flags
	case d.Action == imapconn.FailMessage || d.Action == imapconn.Exists || d.Action == imapconn.FailMailbox:
		msg.status, msg.reason = statusFailed, fmt.Sprintf("append refused by the target: %v", err)
	default:
		// Connection lost: maybe stored, maybe not, maybe later.
		msg.status = statusUnknown
		fc.lose(msg)
	}
}

// targetMsg is what the target holds at one UID.
type targetMsg struct {
	uid    imap.UID
	size   int64
	sha    [32]byte
	hashed bool // sha is the digest of the bytes read
	flags  []imap.Flag
	date   time.Time // INTERNALDATE
}

// fetchTarget reads size, flags and (if body) the SHA-256 of the exact
// bytes of target messages in the selected folder.
func (w *worker) fetchTarget(ctx context.Context, uids imap.UIDSet, body bool) ([]targetMsg, error) {
	return w.fetchDigests(ctx, w.dst, uids, body)
}

// fetchDigests reads size, flags and (if body) the SHA-256 of the exact
// bytes of messages in c's selected folder, never setting \Seen.
func (w *worker) fetchDigests(ctx context.Context, c *imapconn.Session, uids imap.UIDSet, body bool) (_ []targetMsg, err error) {
	opts := &imap.FetchOptions{UID: true, RFC822Size: true, Flags: true, InternalDate: true}
	if body {
		opts.BodySection = []*imap.FetchItemBodySection{{Peek: true}}
	}
	st, err := c.Stream(ctx)
	if err != nil {
		return nil, err
	}
	defer func() { st.End(err) }()
	fetch := st.Fetch(uids, opts)
	defer closeFetch(c, fetch, &err)
	var out []targetMsg
	if w.buf == nil {
		w.buf = make([]byte, 64<<10)
	}
	for {
		st.Asked()
		data := fetch.Next()
		if data == nil {
			break
		}
		st.Answered()
		var t targetMsg
		for item := data.Next(); item != nil; item = data.Next() {
			switch it := item.(type) {
			case imapconn.FetchItemUID:
				t.uid = it.UID
			case imapconn.FetchItemSize:
				t.size = it.Size
			case imapconn.FetchItemFlags:
				t.flags = it.Flags
			case imapconn.FetchItemDate:
				t.date = it.Time
			case imapconn.FetchItemBody:
				if it.Literal == nil {
					continue
				}
				h := sha256.New()
				n, err := io.CopyBuffer(h, it.Literal, w.buf)
				if err != nil {
					return nil, st.Err("read back", "", t.uid, fmt.Errorf("%w: %w", errLiteralBroken, err))
				}
				if n != it.Literal.Size() {
					return nil, st.Err("read back", "", t.uid, fmt.Errorf("literal ended after %d of %d bytes", n, it.Literal.Size()))
				}
				copy(t.sha[:], h.Sum(nil))
				t.size, t.hashed = n, true
			}
		}
		if t.uid != 0 {
			out = append(out, t)
		}
	}
	if err := fetch.Close(); err != nil {
		return nil, st.Err("read back", "", 0, err)
	}
	return out, nil
}

// accept marks msg verified by its target copy t, warning about flags the
// target did not keep.
func (w *worker) accept(fc *folderCopy, msg *message, t targetMsg) {
	msg.status = statusVerified
	for _, f := range missingFlags(msg.sent, t.flags) {
		w.flagWarning(fc, f)
	}
}

// deleteTarget removes exactly these target UIDs (copies this run made and
// found bad). Without UIDPLUS a plain EXPUNGE could remove other messages
// marked \Deleted, so the copies are only flagged.
func (w *worker) deleteTarget(ctx context.Context, uids imap.UIDSet) error {
	if err := w.dst.Store(ctx, "", uids, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}); err != nil {
		return fmt.Errorf("flag copies %s deleted: %w", uids, err)
	}
	if w.dst.Features.UIDPlus {
		if err := w.dst.UIDExpunge(ctx, "", uids); err != nil {
			return fmt.Errorf("expunge copies %s: %w", uids, err)
		}
	}
	return nil
}
