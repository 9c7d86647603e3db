package migrate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"mailferry/internal/imapconn"
	"mailferry/internal/pop3"
	"mailferry/state"
	"mailferry/throttle"
)

// Phases a move goes through, as the state records them. A move resumes
// from its recorded phase: a rerun of Apply skips what is done.
const (
	PhaseCopying    = "copying"     // the first pass
	PhaseConverging = "converging"  // delta passes until little changes between passes
	PhaseReady      = "ready"       // converged; waiting for the cutover (no hook, held, or the hook failed)
	PhaseCutover    = "cutover"     // the hook said mail now goes to the target
	PhaseFinal      = "final-delta" // catching what reached the source before the cutover
	PhaseDone       = "done"        // every message on the target, verified
)

// Results of a move in an ApplyReport.
const (
	ResultDone        = "done"
	ResultFailed      = "failed"
	ResultHeld        = "held"
	ResultInterrupted = "interrupted"
	ResultSkipped     = "skipped"
	// ResultSynced: the move is in sync at ready but not final, because
	// nothing said routing changed (no cutover hook, no Routed). Mail
	// still reaches the source; every Apply follows it with a delta pass.
	ResultSynced = "synced"
)

// Move is one mailbox to move, with the logins to use on both clusters.
type Move struct {
	Mailbox  string
	From, To string // cluster names
	Src, Dst imapconn.Config
	Bytes    int64 // as planned, for progress
	// Err, when set, says why the move cannot start (its login could not
	// be built); it fails alone.
	Err error
	// SrcPOP3 and DstPOP3 are the mailbox's POP3 logins when its clusters
	// have a pop3 URL: with SrcPOP3 the move compares the POP3 UIDLs of
	// both sides before its cutover and after its final delta (see
	// POP3Check).
	SrcPOP3, DstPOP3 *pop3.Config
}

// MoveKey is the state's key of a move: the mailbox on its source and
// target clusters, by the inventory's names (never a login or a URL, so a
// changed admin name or address does not start the move over).
func MoveKey(m Move) state.Key {
	return state.Key{Source: "cluster:" + m.From + "/" + m.Mailbox, Target: "cluster:" + m.To + "/" + m.Mailbox}
}

// LegacyMoveKey is the key mailferry up to schema 2 gave a move (its URLs,
// with the login), so that a state written then is taken over (see
// state.Store.Rekey).
func LegacyMoveKey(m Move) state.Key {
	return state.Key{Source: m.Src.Endpoint.String(), Target: m.Dst.Endpoint.String()}
}

// ApplyOptions say how to run a plan's moves.
type ApplyOptions struct {
	// Copy is the template of each pass's options (Verify, Connections,
	// BatchMessages, KeepDeleted, ExitOutsideWindow); State, Source,
	// Target, Observer, Stop and the phases are set per move.
	Copy Options
	// Acquire takes the lease of one move's migration (refusing, with
	// *state.HeldError in the chain, while another process holds it).
	Acquire func(ctx context.Context, key state.Key) (*state.Lease, error)
	// Parallel moves run at once; 0 means 4.
	Parallel int
	// ConvergeMessages: a delta pass that changes fewer messages than this
	// ends the converging phase; 0 means 50.
	ConvergeMessages int
	// MaxPasses bounds the passes before the cutover, converged or not (the
	// final delta catches the rest); 0 means 6.
	MaxPasses int
	// Cutover runs once per move when it has converged; an error holds the
	// move at ready (retried by the next Apply). A move becomes final only
	// after Cutover succeeded or with Routed: with neither, it stays in
	// sync at ready (ResultSynced) and each Apply runs one delta pass on
	// it, so mail that still reaches the source is copied.
	Cutover func(ctx context.Context, m Move) error
	// Routed: the operator says mail for these moves already goes to their
	// targets, so a move at ready goes on to the final delta without a
	// hook (complete --routed).
	Routed bool
	// POP3Gate holds at ready, before the cutover, a move whose source has
	// POP3 and whose target's UIDLs do not match it (or could not be
	// compared): its POP clients would download their mail again. The
	// held move keeps following the source (a delta pass per Apply) and
	// is checked again by the next Apply or Complete.
	POP3Gate bool
	// HoldAtReady stops every move at ready (an approval gate); Complete
	// takes only moves that are at ready or later on to the end.
	HoldAtReady, Complete bool
	// Named: Complete was given these moves by name, so one that is not
	// ready is held (a failure of the run), not skipped.
	Named bool
	// Limiter returns a cluster's limiter, shared by every move on it;
	// nil means none.
	Limiter func(cluster string) *throttle.Limiter
	// Observer receives every move's events, with Mailbox set.
	Observer Observer
	// Stop, when closed, stops starting moves and passes; passes in flight
	// finish their batches (see Options.Stop).
	Stop <-chan struct{}
}

// MoveResult is what happened to one move.
type MoveResult struct {
	Mailbox  string  `json:"mailbox"`
	From     string  `json:"from"`
	To       string  `json:"to"`
	Phase    string  `json:"phase"`
	Result   string  `json:"result"`
	Reason   string  `json:"reason,omitempty"`
	Messages int     `json:"messages"`
	Bytes    int64   `json:"bytes"`
	Copied   int     `json:"copied"`
	Verified int     `json:"verified"`
	Failed   int     `json:"failed"`
	Passes   int     `json:"passes"`
	Seconds  float64 `json:"seconds"`
	// ConfigurationError: the move failed on its configuration (a login
	// that could not be built, credentials refused, TLS that cannot be
	// set up), which no rerun fixes until the inventory or the servers'
	// accounts change.
	ConfigurationError bool `json:"configuration_error,omitempty"`
	// Failures are the last pass's failed messages and folders.
	Failures []Failure `json:"failures,omitempty"`
	// POP3 is set when the source has POP3: what a POP client would see
	// of the move.
	POP3 *POP3Check `json:"pop3,omitempty"`

	outsideWindow bool // interrupted by a closed time window
}

// ApplyReport is the outcome of Apply, one result per move in plan order.
type ApplyReport struct {
	Moves   []MoveResult `json:"moves"`
	Seconds float64      `json:"seconds"`
	// Throttle is what each cluster's limiter observed by the end (filled
	// by the caller, which owns the limiters).
	Throttle []Throttle  `json:"throttle,omitempty"`
	Totals   ApplyTotals `json:"totals"`
}

// ApplyTotals sums an ApplyReport's moves: how many ended in each result,
// and their messages and bytes.
type ApplyTotals struct {
	Moves       int   `json:"moves"`
	Done        int   `json:"done"`
	Failed      int   `json:"failed"`
	Held        int   `json:"held"`
	Interrupted int   `json:"interrupted"`
	Skipped     int   `json:"skipped"`
	Synced      int   `json:"synced"`
	Messages    int   `json:"messages"`
	Copied      int   `json:"copied"`
	Verified    int   `json:"verified"`
	Bytes       int64 `json:"bytes"`
	// ConfigurationFailed counts the failed moves whose failure is one of
	// configuration (see MoveResult.ConfigurationError).
	ConfigurationFailed int `json:"configuration_failed"`
}

// OK reports whether every move is done (skipped ones were done before).
// A synced move is not done: see Unfinished.
func (r *ApplyReport) OK() bool {
	return !r.Unfinished() && r.Totals.Synced == 0
}

// Unfinished reports whether some move failed, is held or was interrupted:
// what is left is neither done nor merely waiting for the routing to change.
func (r *ApplyReport) Unfinished() bool {
	return r.Totals.Failed > 0 || r.Totals.Held > 0 || r.Totals.Interrupted > 0
}

// Apply runs the moves, at most Parallel at once, each from its recorded
// phase to done: first copy, delta passes until converged, cutover hook,
// final delta, final verification. Without a hook (and without Routed) a
// move goes no further than ready (ResultSynced), following the source by
// a delta pass on each Apply. A move that fails fails alone. It
// returns ErrInterrupted (with the report) when Stop closed or ctx ended,
// and ErrOutsideWindow when a closed time window stopped a move.
func Apply(ctx context.Context, moves []Move, opts ApplyOptions) (*ApplyReport, error) {
	start := time.Now()
	opts.defaults()
	rep := &ApplyReport{Moves: make([]MoveResult, len(moves))}
	sem := make(chan struct{}, opts.Parallel)
	var wg sync.WaitGroup
	for i, m := range moves {
		rep.Moves[i] = MoveResult{Mailbox: m.Mailbox, From: m.From, To: m.To, Result: ResultInterrupted, Reason: "not started"}
		if ctx.Err() != nil || stopped(opts.Stop) {
			continue
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			continue
		case <-opts.Stop:
			continue
		}
		if ctx.Err() != nil || stopped(opts.Stop) {
			<-sem
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			rep.Moves[i] = opts.RunMove(ctx, m)
		}()
	}
	wg.Wait()
	rep.Tally()
	rep.Seconds = time.Since(start).Seconds()
	if ctx.Err() != nil || stopped(opts.Stop) {
		return rep, ErrInterrupted
	}
	for _, r := range rep.Moves {
		if r.outsideWindow {
			return rep, ErrOutsideWindow
		}
	}
	return rep, nil
}

// Tally sums the moves' results into Totals.
func (rep *ApplyReport) Tally() {
	var zero ApplyReport
	rep.Totals = zero.Totals
	t := &rep.Totals
	for _, r := range rep.Moves {
		t.Moves++
		switch r.Result {
		case ResultDone:
			t.Done++
		case ResultFailed:
			t.Failed++
			if r.ConfigurationError {
				t.ConfigurationFailed++
			}
		case ResultHeld:
			t.Held++
		case ResultInterrupted:
			t.Interrupted++
		case ResultSkipped:
			t.Skipped++
		case ResultSynced:
			t.Synced++
		}
		t.Messages += r.Messages
		t.Copied += r.Copied
		t.Verified += r.Verified
		t.Bytes += r.Bytes
	}
}

func (o *ApplyOptions) defaults() {
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	if o.ConvergeMessages <= 0 {
		o.ConvergeMessages = 50
	}
	if o.MaxPasses <= 0 {
		o.MaxPasses = 6
	}
}

// RunMove runs one move as Apply runs each of its moves (from its recorded
// phase as far as it may go, under the move's lease), and emits its
// EventMoveDone. A fleet worker calls it for each move it takes. It is
// safe for concurrent use on different moves.
func (o ApplyOptions) RunMove(ctx context.Context, m Move) MoveResult {
	o.defaults()
	t0 := time.Now()
	res := o.runMove(ctx, m)
	res.Seconds = time.Since(t0).Seconds()
	o.emit(Event{Kind: EventMoveDone, Mailbox: m.Mailbox, Text: res.Result, Phase: res.Phase, Reason: res.Reason})
	return res
}

func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

func (o *ApplyOptions) emit(e Event) {
	if o.Observer != nil {
		o.Observer.Event(e)
	}
}

// runMove takes one move from its recorded phase as far as it may go.
func (o *ApplyOptions) runMove(ctx context.Context, m Move) MoveResult {
	res := MoveResult{Mailbox: m.Mailbox, From: m.From, To: m.To}
	fail := func(result, reason string) MoveResult {
		res.Result, res.Reason = result, reason
		return res
	}
	// A move whose login could not be built fails on its configuration;
	// it still takes its lease (below) so the failure is recorded.
	res.ConfigurationError = m.Err != nil
	lease, err := o.Acquire(ctx, MoveKey(m))
	if err != nil {
		// Held by another process (*state.HeldError) is not done either:
		// the move fails alone, naming the holder, and the next Apply
		// retries it.
		if m.Err != nil {
			return fail(ResultFailed, m.Err.Error())
		}
		return fail(ResultFailed, err.Error())
	}
	defer lease.Release(context.WithoutCancel(ctx))
	// The run's outcome goes into the state with the reason, for status.
	defer func() { recordResult(context.WithoutCancel(ctx), lease, res) }()
	if m.Err != nil {
		return fail(ResultFailed, m.Err.Error())
	}
	ctx, release := Hold(ctx, lease)
	defer release()
	sessions := &Sessions{} // one login per connection for all the passes
	defer sessions.Close()

	phase := lease.Migration.Phase
	res.Phase = phase
	setPhase := func(p, lastErr string) {
		res.Phase = p
		// The counters stay as the last pass recorded them: the whole
		// move's, not this run's.
		_ = lease.SetPhase(context.WithoutCancel(ctx), p, lastErr)
		o.emit(Event{Kind: EventMovePhase, Mailbox: m.Mailbox, Text: p})
	}
	switch {
	case phase == PhaseDone:
		res.Phase = PhaseDone
		return fail(ResultSkipped, "already done")
	case o.Complete && phase != PhaseReady && phase != PhaseCutover && phase != PhaseFinal:
		reason := fmt.Sprintf("not ready (phase %q): run apply first", phaseName(phase))
		if o.Named {
			return fail(ResultHeld, reason) // asked for by name: not done, say so
		}
		return fail(ResultSkipped, reason)
	}

	pass := func(p, after string) (*Report, error) {
		opts := o.Copy
		opts.State, opts.Stop, opts.Phase, opts.PhaseDone, opts.Sessions = lease, o.Stop, p, after, sessions
		if o.Limiter != nil {
			opts.Source, opts.Target = o.Limiter(m.From), o.Limiter(m.To)
		}
		if o.Observer != nil {
			opts.Observer = ObserverFunc(func(e Event) {
				e.Mailbox = m.Mailbox
				o.Observer.Event(e)
			})
		}
		o.emit(Event{Kind: EventMovePhase, Mailbox: m.Mailbox, Text: p})
		if err := waitStorage(ctx, o.Stop, opts.Source, opts.Target); err != nil {
			return nil, err // a pass starts only while both storages allow it
		}
		rep, err := Copy(ctx, m.Src, m.Dst, opts)
		res.Passes++
		if rep != nil {
			res.Messages, res.Bytes, res.Verified, res.Failed = rep.Messages, rep.Bytes, rep.Verified, rep.Failed
			res.Copied += rep.Copied
			res.Failures = rep.Failures
			res.Phase = p
		}
		return rep, err
	}
	// outcome turns a pass's error or failures into the move's result, or
	// "" to go on.
	outcome := func(rep *Report, err error) string {
		switch {
		case errors.Is(err, ErrInterrupted), errors.Is(err, ErrOutsideWindow), errors.Is(err, context.Canceled):
			res.Result, res.Reason = ResultInterrupted, err.Error()
			res.outsideWindow = errors.Is(err, ErrOutsideWindow)
		case err != nil:
			res.Result, res.Reason = ResultFailed, err.Error()
			res.ConfigurationError = imapconn.IsConfigurationError(err)
		case rep.Failed > 0:
			res.Result, res.Reason = ResultFailed, fmt.Sprintf("%d of %d messages failed; first: %s", rep.Failed, rep.Messages, rep.Failures[0].Reason)
		}
		return res.Result
	}

	converged := false // this run's passes took the move to ready
	if phase != PhaseReady && phase != PhaseCutover && phase != PhaseFinal {
		converged = true
		p := PhaseCopying
		if phase != "" && phase != PhaseCopying {
			p = PhaseConverging // a rerun of a started move
		}
		for n := 1; ; n++ {
			rep, err := pass(p, PhaseConverging)
			if outcome(rep, err) != "" {
				return res
			}
			changed := rep.Copied + rep.FlagsUpdated + rep.Expunged
			// Converging passes shrink the final delta, which runs after
			// the routing changes. With the routing already changed
			// (Routed, no hook) the final delta follows at once and does
			// what another pass would: one pass, then ready.
			routed := o.Routed && o.Cutover == nil
			if changed < o.ConvergeMessages || n >= o.MaxPasses || routed {
				break
			}
			if stopped(o.Stop) {
				return fail(ResultInterrupted, "interrupted between passes")
			}
			p = PhaseConverging
		}
		setPhase(PhaseReady, "")
		phase = PhaseReady
	}
	followed := false // a delta pass at ready ran in this run
	if phase == PhaseReady {
		if o.HoldAtReady && !o.Complete {
			return fail(ResultHeld, "held at ready (--hold-at-ready): finish with `mailferry complete`")
		}
		if m.SrcPOP3 != nil {
			// The POP3 check runs here, before the routing changes: the
			// target's UIDLs exist only once the messages are on it, and
			// a mismatch found after the cutover could hold nothing. A
			// move that was ready before this run first follows the
			// source, so that the target holds what the source has.
			if !converged {
				rep, err := pass(PhaseReady, PhaseReady)
				if outcome(rep, err) != "" {
					return res
				}
				followed = true
			}
			sessions.Close() // no IMAP connection sits idle meanwhile
			res.POP3 = o.checkPOP3(ctx, m, POP3BeforeCutover)
			if ctx.Err() != nil {
				return fail(ResultInterrupted, ctx.Err().Error())
			}
			if !res.POP3.UIDLsMatch {
				o.emit(Event{Kind: EventWarning, Mailbox: m.Mailbox, Text: res.POP3.Summary()})
			}
			if o.POP3Gate && !res.POP3.UIDLsMatch {
				reason := "held at ready (--pop3-gate): " + res.POP3.Summary()
				setPhase(PhaseReady, reason)
				return fail(ResultHeld, reason+"; the next apply follows the source and checks again (complete without --pop3-gate accepts it)")
			}
		}
		switch {
		case o.Cutover != nil:
			// No connection sits idle, holding its places, while the hook runs.
			sessions.Close()
			if err := o.Cutover(ctx, m); err != nil {
				setPhase(PhaseReady, "cutover hook: "+err.Error())
				return fail(ResultHeld, "cutover hook failed, held at ready (retried by the next apply): "+err.Error())
			}
		case o.Routed:
			// The operator switched the routing: nothing to run.
		default:
			// Routing has not changed: the source still receives this
			// mailbox's mail. Stay at ready, following the source: a move
			// that was ready before this run gets a delta pass.
			if !converged && !followed {
				rep, err := pass(PhaseReady, PhaseReady)
				if outcome(rep, err) != "" {
					return res
				}
			}
			return fail(ResultSynced, NotRoutedReason)
		}
		setPhase(PhaseCutover, "")
		phase = PhaseCutover
	}
	// The final delta: mail that reached the source before the routing
	// changed; then every message must be on the target and verified.
	rep, err := pass(PhaseFinal, PhaseFinal)
	if outcome(rep, err) != "" {
		return res
	}
	if o.Copy.Verify != VerifyNone && rep.Verified != rep.Messages {
		return fail(ResultFailed, fmt.Sprintf("final verification: %d of %d messages verified", rep.Verified, rep.Messages))
	}
	setPhase(PhaseDone, "")
	res.Result = ResultDone
	if m.SrcPOP3 != nil {
		// What the POP clients find now that every message is there; the
		// move is done whatever it says. A final check that could not be
		// made keeps the one before the cutover, if any.
		sessions.Close()
		final := o.checkPOP3(ctx, m, POP3Final)
		if final.Error == "" || res.POP3 == nil || res.POP3.Error != "" {
			res.POP3 = final
		}
		if !final.UIDLsMatch {
			o.emit(Event{Kind: EventWarning, Mailbox: m.Mailbox, Text: final.Summary()})
		}
	}
	return res
}

// recordResult records how the run of a move ended, with the reason of a
// move that failed, is held or stopped. A move skipped as already done or
// not ready keeps the result it had.
func recordResult(ctx context.Context, lease *state.Lease, res MoveResult) {
	reason := res.Reason
	switch res.Result {
	case ResultSkipped:
		return
	case ResultDone, ResultSynced:
		reason = ""
	}
	_ = lease.SetResult(ctx, res.Result, reason)
}

// NotRoutedReason is why a move without a cutover hook stays synced at
// ready.
const NotRoutedReason = "in sync at ready, NOT final: no cutover hook ran, routing unchanged; each run copies what still reaches the source"

func phaseName(p string) string {
	if p == "" {
		return "new"
	}
	return p
}
