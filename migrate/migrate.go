// Package migrate copies mailboxes IMAP to IMAP: every folder, every message
// byte for byte with its flags and internal date, verified by SHA-256 on the
// target. It never changes the source: bodies are read with BODY.PEEK and
// folders are opened read-only.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"mailferry/internal/imapconn"
	"mailferry/state"
	"mailferry/throttle"
)

// VerifyMode says how each appended message is checked on the target.
type VerifyMode string

const (
	// VerifyFull reads every appended message back and compares size and
	// SHA-256 of the exact bytes.
	VerifyFull VerifyMode = "full"
	// VerifySize compares RFC822.SIZE only.
	VerifySize VerifyMode = "size"
	// VerifyNone trusts the server's OK to APPEND.
	VerifyNone VerifyMode = "none"
)

// ParseVerifyMode accepts "full", "size" or "none".
func ParseVerifyMode(s string) (VerifyMode, error) {
	switch m := VerifyMode(strings.ToLower(s)); m {
	case VerifyFull, VerifySize, VerifyNone:
		return m, nil
	}
	return "", fmt.Errorf("verify mode %q: want full, size or none", s)
}

// Options tune one mailbox copy. The zero value copies everything with full
// verification over four connections per side.
type Options struct {
	Verify VerifyMode
	// Connections is how many folders are copied at once; each uses one
	// connection per side. 0 means 4.
	Connections int
	// Exclude skips folders whose logical path ("Archive/2019", whatever
	// the servers' delimiters) matches any of these.
	Exclude []*regexp.Regexp
	// FolderMap renames folders: logical source path -> logical target path.
	FolderMap map[string]string
	// MailboxRetries bounds the retries (after lost connections or busy
	// replies) of all the mailbox's folders together; each folder also
	// gives up after a few. 0 means 30.
	MailboxRetries int
	// BatchMessages bounds the messages fetched per source FETCH; 0 means 256.
	BatchMessages int
	// Observer receives progress events; nil means none.
	Observer Observer
	// State makes the copy durable and exactly-once: the message map,
	// UIDVALIDITYs and the target's UIDNEXT before each batch live in the
	// lease's migration, so a rerun resumes, adopts copies appended but
	// not recorded, and carries new messages, flag changes and expunges
	// (a delta pass). nil copies from scratch with nothing recorded.
	State *state.Lease
	// Stop, when closed, stops the copy from starting work: batches in
	// flight finish and are recorded, then Copy returns ErrInterrupted.
	// (Cancelling the context stops at once instead.) nil never stops.
	Stop <-chan struct{}
	// Source and Target throttle the copy on each cluster: every IMAP
	// command passes through its cluster's limiter (connection cap,
	// adaptive concurrency, backoff on busy replies), message bodies flow
	// under both sides' bytes/s and messages/s buckets, and no new batch
	// starts outside either side's time windows. Share one Limiter between
	// copies on the same cluster. nil: no limit beyond Connections.
	Source, Target *throttle.Limiter
	// ExitOutsideWindow makes a closed time window stop the copy (after
	// finishing and recording the batches in flight, as Stop does) with
	// ErrOutsideWindow instead of waiting for the next window.
	ExitOutsideWindow bool
	// Phase and PhaseDone name the state's phase while the copy runs and
	// after it succeeded; "" means "copying" and "done". A runner that
	// takes a move through several passes names its own.
	Phase, PhaseDone string
	// Sessions, when set, keeps the copy's connections open for the next
	// copy of the same mailbox (a runner's next pass) and reuses the ones
	// the previous copy kept.
	Sessions *Sessions
	// KeepDeleted keeps target copies of messages and folders deleted on
	// the source since the last pass (State only).
	KeepDeleted bool
	// AllowMassExpunge mirrors the deletion of more than 10% (and more
	// than 5) of a folder's messages on the source, or of a whole folder
	// holding more than 5 copies; without it such a folder stops, naming
	// what it would have expunged.
	AllowMassExpunge bool
	// AllConnections opens every one of the Connections pairs, however
	// little the mailbox holds (by default a small mailbox gets fewer:
	// see pairsFor).
	AllConnections bool
	// Alone: this copy is the only one its process runs (migrate), so a
	// further connection pair pays off at a quarter of the work it needs
	// when many copies share the machine and the clusters (apply; see
	// pairsFor).
	Alone bool
	// NoMultiAppend sends one APPEND per message even to a target that
	// offers MULTIAPPEND (RFC 3502), which otherwise carries each batch
	// in one command.
	NoMultiAppend bool
	// LateCommitWindow is how long after a client is gone a target may
	// still store an APPEND it had received: a folder pass whose target
	// connection dropped with APPENDs in flight looks for them until each
	// is found or this long has passed, and a run that takes over from a
	// crashed one looks once more when this long has passed since the
	// crash, before a folder with the crashed run's suspects is done.
	// 0 means DefaultLateCommitWindow.
	LateCommitWindow time.Duration
}

// DefaultLateCommitWindow is Options.LateCommitWindow's default: a healthy
// server finishes what a dropped connection had sent within moments
// (2.5 s at most in the drop sweep, with 150 ms of network delay).
const DefaultLateCommitWindow = 10 * time.Second

// Report is what a copy did. It holds no secrets.
type Report struct {
	Mailbox  string     `json:"mailbox"`
	Source   string     `json:"source"`
	Target   string     `json:"target"`
	Verify   VerifyMode `json:"verify"`
	Folders  int        `json:"folders"`
	Messages int        `json:"messages"`
	Bytes    int64      `json:"bytes"`
	Copied   int        `json:"copied"`
	// Done is how many messages an earlier run had already copied (State).
	Done int `json:"already_copied"`
	// Adopted messages were found on the target, appended by an earlier
	// run that stopped before recording them, and not appended again.
	Adopted int `json:"adopted"`
	// DuplicatesRemoved target messages were copies of messages that
	// already had one (an APPEND the target committed after its
	// connection was lost), found by content and removed.
	DuplicatesRemoved int `json:"duplicates_removed"`
	// TargetOnly messages found on the target at or above the mark are
	// the target's own (their bytes match nothing mailferry sent there):
	// left alone.
	TargetOnly int `json:"target_only"`
	// FlagsUpdated target copies got the flags changed on the source.
	FlagsUpdated int `json:"flags_updated"`
	// Expunged target copies of messages deleted on the source.
	Expunged int `json:"expunged"`
	// Remaining messages were left for the next run by an interruption.
	Remaining int `json:"remaining,omitempty"`
	// Throttle is what each cluster's limiter observed by the end.
	Throttle []Throttle `json:"throttle,omitempty"`
	// BodiesFetched counts message bodies read from the source.
	BodiesFetched int             `json:"source_bodies_fetched"`
	Verified      int             `json:"verified"`
	Failed        int             `json:"failed"`
	Seconds       float64         `json:"seconds"`
	BytesPerSec   float64         `json:"bytes_per_second"`
	Mapping       []FolderMapping `json:"folder_mapping"`
	Failures      []Failure       `json:"failures,omitempty"`
	Warnings      []string        `json:"warnings,omitempty"`
}

// Failure is one message (UID > 0) or folder (UID 0) that was not copied and
// verified, with the reason.
type Failure struct {
	Folder string `json:"folder"`
	UID    uint32 `json:"uid,omitempty"`
	Reason string `json:"reason"`
}

// OK reports whether every message was copied and verified (or, with
// VerifyNone, copied).
func (r *Report) OK() bool { return r.Failed == 0 }

// EventKind names a progress event.
type EventKind int

const (
	// EventPlanned: folders listed and mapped; Messages and Bytes are totals.
	EventPlanned EventKind = iota
	// EventFolderStarted / EventFolderDone bracket a folder.
	EventFolderStarted
	EventFolderDone
	// EventMessageCopied: one message appended (Bytes is its size).
	EventMessageCopied
	// EventWarning: something was adjusted (Text says what); the copy goes on.
	EventWarning
	// EventMovePhase: Apply took a move into the phase Text.
	EventMovePhase
	// EventMoveDone: a move ended; Text is its result (done, failed, held,
	// interrupted, skipped), Reason why it is not done.
	EventMoveDone
	// EventClusterHealth: the storage signal of the cluster Cluster
	// (health_query) changed level, failed or works again; Text says how.
	EventClusterHealth
	// EventBytes: Bytes more of message bodies were streamed to the target
	// (sent, not yet answered). Each connection reports at most every
	// bytesEvery, and what is left when a batch ends; for live progress.
	EventBytes
)

// Event is one progress report from a copy.
type Event struct {
	Kind EventKind
	// Mailbox is set by Apply (one copy's events carry no mailbox).
	Mailbox string
	// Cluster is set on cluster events (EventClusterHealth).
	Cluster  string
	Folder   string
	Messages int
	Bytes    int64
	Text     string
	// Phase is, in EventMoveDone, the phase the move ended in (done for
	// a move skipped because an earlier run finished it).
	Phase string
	// Reason: why a move (EventMoveDone) is not done, as in MoveResult.
	Reason string
}

// Observer receives events. Implementations must be safe for concurrent use;
// they are called from the copy's worker goroutines and must not block long.
type Observer interface{ Event(Event) }

// ObserverFunc adapts a function to Observer.
type ObserverFunc func(Event)

// Event calls f.
func (f ObserverFunc) Event(e Event) { f(e) }

// Copy copies one mailbox from src to dst. It returns an error only when the
// mailbox could not be migrated at all (login refused, folders not listable);
// messages or folders that fail are listed in the report and the rest go on.
// Cancelling ctx stops the copy promptly; what was appended stays appended.
// With State, the pass goes into the migration's history (see recordPass).
func Copy(ctx context.Context, src, dst imapconn.Config, opts Options) (*Report, error) {
	if opts.State == nil {
		return copyMailbox(ctx, src, dst, opts)
	}
	start := time.Now()
	var appended atomic.Int64 // bytes of the APPENDs the target accepted
	inner := opts.Observer
	opts.Observer = ObserverFunc(func(e Event) {
		if e.Kind == EventMessageCopied {
			appended.Add(e.Bytes)
		}
		if inner != nil {
			inner.Event(e)
		}
	})
	rep, err := copyMailbox(ctx, src, dst, opts)
	recordPass(ctx, opts, start, appended.Load(), rep, err)
	return rep, err
}

// recordPass adds the pass to the state's history: what it changed and
// how it ended, in words (a copy that could not start at all, such as a
// refused login, fails with its error; one that ran fails with its first
// failed message or folder).
func recordPass(ctx context.Context, opts Options, start time.Time, appended int64, rep *Report, err error) {
	p := state.Pass{Phase: opts.Phase, Result: state.PassOK, Started: start.UTC(), Ended: time.Now().UTC(), Changes: state.Changes{BytesCopied: appended}}
	if p.Phase == "" {
		p.Phase = "copying"
	}
	switch {
	case errors.Is(err, ErrOutsideWindow):
		p.Result, p.Error = state.PassWaiting, "outside the allowed time windows"
	case errors.Is(err, ErrInterrupted):
		p.Result, p.Error = state.PassInterrupted, "interrupted by the operator"
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		p.Result, p.Error = state.PassInterrupted, "interrupted: the run was stopped at once"
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			p.Error = "interrupted: " + cause.Error() // such as a lost lease
		}
	case err != nil:
		p.Result, p.Error = state.PassFailed, err.Error()
	case rep != nil && rep.Failed > 0:
		p.Result, p.Error = state.PassFailed, fmt.Sprintf("%d of %d messages failed; first: %s", rep.Failed, rep.Messages, rep.Failures[0].Reason)
	}
	if rep != nil {
		p.Messages, p.Failed = int64(rep.Messages), int64(rep.Failed)
		p.Copied, p.Adopted, p.FlagsUpdated = int64(rep.Copied), int64(rep.Adopted), int64(rep.FlagsUpdated)
		p.Expunged, p.TargetOnly, p.DuplicatesRemoved = int64(rep.Expunged), int64(rep.TargetOnly), int64(rep.DuplicatesRemoved)
	}
	if rerr := opts.State.RecordPass(context.WithoutCancel(ctx), p); rerr != nil && !errors.Is(rerr, state.ErrLeaseLost) && opts.Observer != nil {
		opts.Observer.Event(Event{Kind: EventWarning, Text: fmt.Sprintf("record the pass: %v", rerr)})
	}
}

// copyMailbox is Copy without the pass's history.
func copyMailbox(ctx context.Context, src, dst imapconn.Config, opts Options) (*Report, error) {
	start := time.Now()
	if opts.Verify == "" {
		opts.Verify = VerifyFull
	}
	if opts.Connections <= 0 {
		opts.Connections = 4
	}
	if opts.BatchMessages <= 0 {
		opts.BatchMessages = 256
	}
	if opts.MailboxRetries <= 0 {
		opts.MailboxRetries = 30
	}
	if opts.LateCommitWindow <= 0 {
		opts.LateCommitWindow = DefaultLateCommitWindow
	}
	if src.Side == "" {
		src.Side = "source"
	}
	if dst.Side == "" {
		dst.Side = "target"
	}
	r := &run{opts: opts, srcCfg: src, dstCfg: dst, budget: throttle.NewBudget(maxAttempts-1, opts.MailboxRetries), report: &Report{
		Mailbox: src.Endpoint.Mailbox, Source: src.Endpoint.String(), Target: dst.Endpoint.String(), Verify: opts.Verify,
	}}

	if l := opts.State; l != nil {
		// APPENDs of an earlier run that may still land: one that crashed
		// (it never released the lease), or one that stopped while some
		// could (see worker.awaitLate). A run that ends before then passes
		// the time on.
		if !l.Unreleased.IsZero() {
			l.MayLand(l.Unreleased.Add(opts.LateCommitWindow))
		}
		r.lateUntil = l.LateUntil()
	}
	if err := r.limiters(); err != nil {
		return nil, err
	}
	first, err := r.takePair(ctx)
	if err != nil {
		return nil, err
	}
	sc, dc := first.src, first.dst
	closeBoth := func() {
		sc.Close()
		dc.Close()
		first.rel[0]()
		first.rel[1]()
	}
	defer func() {
		// Reported at the end, whatever the outcome.
		r.report.Throttle = []Throttle{r.srcLim.Snapshot(), r.dstLim.Snapshot()}
	}()
	// The two sides list at once, each on its own connection.
	var srcTree, dstTree *tree
	var serr, derr error
	var lists sync.WaitGroup
	lists.Add(1)
	go func() { defer lists.Done(); srcTree, serr = listTree(ctx, sc) }()
	dstTree, derr = listTree(ctx, dc)
	lists.Wait()
	if err := errors.Join(serr, derr); err != nil {
		closeBoth()
		return nil, err
	}
	mappings, warnings := mapFolders(srcTree, dstTree, opts.Exclude, opts.FolderMap)
	for _, w := range warnings {
		r.warn(w)
	}
	r.failBadNames(srcTree.BadNames)
	for _, name := range dstTree.BadNames {
		r.warn(fmt.Sprintf("the target lists a folder named %q, which is not valid modified UTF-7; it is left alone", name))
	}
	if opts.State != nil {
		changed, err := r.folderChanges(ctx, sc, dc, mappings)
		if err == nil && changed {
			dstTree, err = listTree(ctx, dc)
		}
		if err != nil {
			closeBoth()
			return nil, fmt.Errorf("folders renamed or deleted on the source: %w", err)
		}
	}
	r.report.Mapping = mappings

	// The copy's other connection pairs log in while the target's folders
	// are created on the first one: how many is known from the source's
	// folders now (a folder that then fails to be prepared counts, which
	// can only add a pair that finds the queue empty and leaves).
	var candidates []*FolderMapping
	for i := range mappings {
		if !mappings[i].Excluded {
			candidates = append(candidates, &mappings[i])
		}
	}
	n := min(opts.Connections, len(candidates))
	if !opts.AllConnections {
		n = min(n, r.pairsFor(folderTotals(candidates)))
	}
	queue := make(chan *FolderMapping, len(candidates))
	var wg sync.WaitGroup
	// The first worker has the copy's connections; the others help only if
	// they get theirs before the folders run out: they never take a
	// folder and then wait for a connection place that other copies hold
	// (kept Sessions hold theirs between passes).
	drained, allTaken := context.WithCancel(ctx)
	defer allTaken()
	r.workersLeft.Store(int32(n))
	startWorker := func(i int) {
		w := &worker{run: r}
		if i == 0 {
			w.pair = first
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer w.close()
			if i > 0 {
				p, err := r.takePairWaiting(ctx, drained)
				if err != nil {
					return
				}
				w.pair = p
			}
			defer allTaken() // this worker found the queue empty
			for m := range queue {
				if ctx.Err() != nil || r.stopping() || r.windowClosed.Load() {
					r.count(func(rep *Report) { rep.Remaining += int(m.src.Messages); rep.Messages += int(m.src.Messages) })
					continue
				}
				w.copyFolder(ctx, m)
				r.progress(ctx, r.phase(), "")
			}
		}()
	}
	for i := 1; i < n; i++ {
		startWorker(i)
	}

	// Largest folders first, so the last folder to finish is a small one.
	// Each goes to the workers as soon as its target folder is ready, so
	// the other pairs copy while the first creates the rest. The plan is
	// what the source listed: a folder that cannot be prepared fails in
	// it, as one that fails later does.
	sort.SliceStable(candidates, func(i, j int) bool {
		a, b := candidates[i].src, candidates[j].src
		if a.Size != b.Size {
			return a.Size > b.Size
		}
		return a.Messages > b.Messages
	})
	totalMsgs, totalBytes := folderTotals(candidates)
	r.totalMsgs, r.totalBytes = totalMsgs, totalBytes
	r.emit(Event{Kind: EventPlanned, Messages: totalMsgs, Bytes: totalBytes})
	r.progress(ctx, r.phase(), "")

	for _, m := range candidates {
		r.count(func(rep *Report) { rep.Folders++ })
		if err := prepareTarget(ctx, dc, dstTree, m); err != nil {
			if errors.Is(err, ctx.Err()) && ctx.Err() != nil {
				break
			}
			r.failFolder(m, fmt.Sprintf("create or subscribe %q on the target: %v", m.Target, err))
			continue
		}
		if d := dstTree.byName(m.Target); d != nil && !d.NoSelect {
			m.dst = d
		}
		queue <- m
	}
	close(queue)
	if n > 0 {
		startWorker(0) // with the first pair, free now
	}
	wg.Wait()
	if n == 0 {
		r.release(first)
	}

	rep := r.report
	rep.Seconds = time.Since(start).Seconds()
	if rep.Seconds > 0 {
		rep.BytesPerSec = float64(rep.Bytes) / rep.Seconds
	}
	sort.SliceStable(rep.Failures, func(i, j int) bool {
		if rep.Failures[i].Folder != rep.Failures[j].Folder {
			return rep.Failures[i].Folder < rep.Failures[j].Folder
		}
		return rep.Failures[i].UID < rep.Failures[j].UID
	})
	r.mu.Lock()
	r.lastPhase = "" // the final record is always written
	r.mu.Unlock()
	switch {
	case ctx.Err() != nil:
		r.progress(ctx, "interrupted", context.Cause(ctx).Error())
		return rep, context.Cause(ctx)
	case r.stopping():
		r.progress(ctx, "interrupted", "interrupted by the operator")
		return rep, ErrInterrupted
	case r.windowClosed.Load():
		r.progress(ctx, "waiting", "outside the allowed time windows")
		return rep, ErrOutsideWindow
	case rep.Failed > 0:
		r.progress(ctx, "failed", fmt.Sprintf("%d of %d messages failed; first: %s", rep.Failed, rep.Messages, rep.Failures[0].Reason))
	default:
		done := "done"
		if opts.PhaseDone != "" {
			done = opts.PhaseDone
		}
		r.progress(ctx, done, "")
	}
	return rep, nil
}

// Extra connection pairs pay off only with enough left to copy: each
// costs two logins and a connection place on each cluster (one of which
// may be struggling), and a small mailbox is done by one pair before the
// others have logged in. One pair per this many messages, or bytes,
// whichever asks for more.
const (
	messagesPerPair = 1000
	bytesPerPair    = 32 << 20
)

// pairsFor is how many connection pairs the copy of a mailbox of msgs
// messages and bytes bytes can use; what an earlier run copied (as the
// state says) does not count. A copy that runs alone (Options.Alone)
// gets a pair per quarter of that work: nothing else keeps the machine
// and the servers busy while one pair waits for an answer. Measured on
// the realistic bench (one 500-message mailbox, Dovecot mdbox target),
// three pairs instead of one: 1.53x mbsync's speed instead of 1.17x for
// about 0.08 ms more of the machine's CPU per message (the logins); in
// apply --parallel 4 the same split made the whole run slower (1.00x
// instead of 1.23x), the moves already filling the machine.
func (r *run) pairsFor(msgs int, bytes int64) int {
	work, size := int64(msgs), bytes
	if l := r.opts.State; l != nil {
		work -= l.Migration.MessagesDone
		size -= l.Migration.BytesDone
	}
	perPair, perPairBytes := int64(messagesPerPair), int64(bytesPerPair)
	if r.opts.Alone {
		perPair, perPairBytes = perPair/4, perPairBytes/4
	}
	return int(1 + max(work/perPair, size/perPairBytes, 0))
}

// dialPair opens a connection to each side, each under its cluster's
// connection cap, the places taken in lockOrder; the logins run at once.
func (r *run) dialPair(ctx context.Context) (pair, error) {
	return r.dialPairWaiting(ctx, ctx)
}

// dialPairWaiting is dialPair that waits for the connection places only as
// long as wait lasts; the connections live as long as ctx.
func (r *run) dialPairWaiting(ctx, wait context.Context) (pair, error) {
	var rel [2]func()
	lims := [2]*throttle.Limiter{r.srcLim, r.dstLim}
	order := r.lockOrder()
	first, second := order[0], order[1]
	var err error
	if rel[first], err = lims[first].AcquireConn(wait); err != nil {
		return pair{}, err
	}
	if rel[second], err = lims[second].AcquireConn(wait); err != nil {
		rel[first]()
		return pair{}, err
	}
	var sc, dc *imapconn.Conn
	var serr, derr error
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); sc, serr = imapconn.Dial(ctx, r.srcCfg) }()
	go func() { defer wg.Done(); dc, derr = imapconn.Dial(ctx, r.dstCfg) }()
	wg.Wait()
	if serr != nil || derr != nil {
		if sc != nil {
			sc.Close()
		}
		if dc != nil {
			dc.Close()
		}
		rel[0]()
		rel[1]()
		return pair{}, errors.Join(serr, derr)
	}
	return pair{
		src: imapconn.NewSession(sc, imapconn.Source, r.srcLim),
		dst: imapconn.NewSession(dc, imapconn.Target, r.dstLim),
		rel: rel,
	}, nil
}

// folderTotals is the messages and bytes the source lists in folders.
func folderTotals(folders []*FolderMapping) (msgs int, bytes int64) {
	for _, m := range folders {
		msgs += int(m.src.Messages)
		bytes += m.src.Size
	}
	return msgs, bytes
}

// prepareTarget creates the target folder when missing and makes its
// subscription match the source's.
func prepareTarget(ctx context.Context, dc *imapconn.Session, dstTree *tree, m *FolderMapping) error {
	existing := dstTree.byName(m.Target)
	if existing == nil || existing.NoSelect {
		if err := dc.Create(ctx, m.Target); err != nil && imapconn.Decide(err).Action != imapconn.Exists {
			return err
		}
	}
	subscribed := existing != nil && existing.Subscribed
	switch {
	case m.subscribe && !subscribed:
		return dc.Subscribe(ctx, m.Target)
	case !m.subscribe && subscribed:
		return dc.Unsubscribe(ctx, m.Target)
	}
	return nil
}

func (r *run) phase() string {
	if r.opts.Phase != "" {
		return r.opts.Phase
	}
	return "copying"
}

// run is the shared state of one Copy.
type run struct {
	opts           Options
	srcCfg, dstCfg imapconn.Config
	mu             sync.Mutex
	report         *Report
	srcLim, dstLim *throttle.Limiter
	budget         *throttle.Budget // the mailbox's retries
	windowClosed   atomic.Bool      // a batch found a time window closed (ExitOutsideWindow)
	workersLeft    atomic.Int32     // workers of this copy still running
	totalMsgs      int              // as listed before the copy (for progress)
	totalBytes     int64            // likewise
	bytesDone      int64            // bytes of messages copied, now or before
	lastPhase      string           // the progress last recorded, and when
	lastProgress   time.Time        // (guarded by mu)
	// lateUntil: the previous holder of the state's lease crashed; APPENDs
	// it sent may be stored until then (see worker.awaitLate).
	lateUntil time.Time
}

func (r *run) emit(e Event) {
	if r.opts.Observer != nil {
		r.opts.Observer.Event(e)
	}
}

// count updates the report's counters under the lock.
func (r *run) count(f func(*Report)) {
	r.mu.Lock()
	f(r.report)
	r.mu.Unlock()
}

func (r *run) warn(text string) {
	r.mu.Lock()
	r.report.Warnings = append(r.report.Warnings, text)
	r.mu.Unlock()
	r.emit(Event{Kind: EventWarning, Text: text})
}

func (r *run) failFolder(m *FolderMapping, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.report.Failures = append(r.report.Failures, Failure{Folder: m.Source, Reason: reason})
	r.report.Messages += int(m.src.Messages)
	r.report.Failed += max(int(m.src.Messages), 1)
}

// failBadNames reports the source's folders whose names are not valid
// modified UTF-7: they cannot be named in a command, so they fail alone
// and every other folder is copied.
func (r *run) failBadNames(names []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, name := range names {
		r.report.Folders++
		r.report.Failed++
		r.report.Failures = append(r.report.Failures, Failure{Folder: name,
			Reason: fmt.Sprintf("folder name %q from the source is not valid modified UTF-7; skipped", name)})
	}
}
