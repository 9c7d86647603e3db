package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"mailferry/inventory"
	"mailferry/migrate"
	"mailferry/throttle"
)

// applyView renders an apply's progress.
//
// On a terminal: a live area redrawn in place (vbauerster/mpb) at the
// bottom of the screen, one line per active move (mailbox, route, phase,
// bytes streamed of its remaining work, rate), the throttles that hold
// back, and one overall bar (bytes as they stream, of the work this run
// has left; rate and ETA from that alone). Phase changes, finished moves,
// throttle changes and warnings scroll above it as lines.
//
// Off a terminal: no bar, no escape codes, the same lines as plain log
// lines, and a status line every few seconds. With --json one JSON object
// per event (NDJSON) on stdout.
type applyView struct {
	g     *globalOptions
	w     io.Writer
	json  *json.Encoder
	every time.Duration // between status lines (off a terminal) or JSON progress lines
	lims  []*throttle.Limiter

	// The live area (terminal only). Its fillers read snap only, never
	// mu: mpb calls them from its own goroutines, and a line written
	// through p under mu waits for them.
	p     *mpb.Progress
	bar   *mpb.Bar
	slots int // move lines in the live area
	snap  atomic.Pointer[viewSnap]

	stopTick chan struct{}
	tickDone chan struct{}

	mu        sync.Mutex
	moves     map[string]*moveView // by mailbox
	order     []*moveView          // plan order
	mbWidth   int                  // widest mailbox name (capped), for the move lines
	rtWidth   int                  // widest route
	planned   int                  // moves this run has work for
	before    int                  // moves done before this run (skipped)
	finished  int                  // moves this run finished (any result)
	streamed  int64                // body bytes sent this run (EventBytes)
	msgs      int                  // messages copied this run
	copied    int64                // their bytes
	rate      rateWindow           // of streamed
	started   time.Time
	lastLine  time.Time // last status line (off a terminal) or JSON progress line
	limitSeen map[string]limitSeen
	closed    bool
}

// moveView is one move as the view follows it.
type moveView struct {
	mailbox, route string
	phase          string
	active         bool
	done           bool  // finished in this run
	doneBefore     bool  // done before this run: skipped
	est            int64 // bytes this run has left to copy, as estimated at the start
	fresh          bool  // the state knew nothing of the move: its first listing gives est
	streamed       int64 // body bytes sent this run
	copied         int64 // bytes of the messages copied this run
	msgs           int
	started        time.Time
	rate           rateWindow
}

// moveBefore is what the state said of a move before the run.
type moveBefore struct {
	phase                 string
	bytesDone, bytesTotal int64
}

// limitSeen is the last limit a throttle line told of.
type limitSeen struct {
	limit int
	at    time.Time
}

// viewSnap is what the live area shows, rebuilt by the ticker.
type viewSnap struct {
	moveLines []string
	throttle  string
	total     int64 // bytes of this run's work (grows if passes find more)
	done      int64 // streamed so far
	status    string
}

// viewTick is how often the live area's text is rebuilt and redrawn.
const viewTick = 200 * time.Millisecond

func newApplyView(g *globalOptions, moves []migrate.Move, parallel int, lims []*throttle.Limiter, before map[string]moveBefore) *applyView {
	v := &applyView{g: g, w: g.stderr, lims: lims, moves: map[string]*moveView{}, limitSeen: map[string]limitSeen{},
		started: time.Now(), lastLine: time.Now(), every: 5 * time.Second, planned: len(moves)}
	if g.json {
		v.every = 2 * time.Second
	}
	for _, m := range moves {
		mv := &moveView{mailbox: m.Mailbox, route: m.From + " -> " + m.To, est: m.Bytes, fresh: true}
		if b, ok := before[m.Mailbox]; ok {
			mv.fresh = false
			switch {
			case b.phase == migrate.PhaseDone:
				mv.est, mv.doneBefore = 0, true
				v.planned--
				v.before++
			case b.phase == migrate.PhaseReady || b.phase == migrate.PhaseCutover || b.phase == migrate.PhaseFinal:
				mv.est = 0 // copied before: what is left is a delta
			case b.bytesTotal > 0:
				mv.est = max(0, b.bytesTotal-b.bytesDone)
			default:
				mv.fresh = true
			}
		}
		v.moves[m.Mailbox] = mv
		v.order = append(v.order, mv)
		v.mbWidth = max(v.mbWidth, min(len(m.Mailbox), 32))
		v.rtWidth = max(v.rtWidth, min(len(mv.route), 32))
	}
	for _, l := range lims {
		st := l.Snapshot()
		v.limitSeen[st.Name] = limitSeen{limit: st.Limit}
	}
	switch {
	case g.json:
		v.json = json.NewEncoder(g.stdout)
		return v
	case isTerminal(g.stderr):
		v.startLive(parallel)
	}
	v.stopTick, v.tickDone = make(chan struct{}), make(chan struct{})
	go v.ticker()
	return v
}

// startLive puts the live area on the terminal.
func (v *applyView) startLive(parallel int) {
	v.slots = min(parallel, 24)
	if f, ok := v.w.(*os.File); ok {
		if _, h, err := term.GetSize(int(f.Fd())); err == nil && h > 0 {
			v.slots = min(v.slots, max(1, h-8))
		}
	}
	v.snap.Store(&viewSnap{})
	v.p = mpb.New(mpb.WithOutput(v.w), mpb.WithRefreshRate(viewTick))
	// The live area is one mpb bar: the overall line, and above it (top
	// extenders are given bottom line first) the throttle line and the
	// move lines. An empty line takes no row.
	above := []mpb.BarFiller{mpb.BarFillerFunc(func(w io.Writer, st decor.Statistics) error {
		return v.fill(w, st, v.snap.Load().throttle)
	})}
	for i := v.slots - 1; i >= 0; i-- {
		above = append(above, mpb.BarFillerFunc(func(w io.Writer, st decor.Statistics) error {
			lines := v.snap.Load().moveLines
			if i >= len(lines) {
				return nil
			}
			return v.fill(w, st, lines[i])
		}))
	}
	v.bar = v.p.New(0, nil,
		mpb.BarFillerTrim(),
		mpb.BarTopExtender(above...),
		statusBar(func() (int64, int64, string) { s := v.snap.Load(); return s.done, s.total, s.status }),
	)
}

// statusBar draws a bar's own row: 32 cells of bar, the percentage and a
// status text, cut to the terminal's width. read gives the figures at
// each redraw (the live view's and migrate's bars alike).
func statusBar(read func() (done, total int64, text string)) mpb.BarOption {
	barStyle := mpb.BarStyle().Build()
	var scratch bytes.Buffer
	return mpb.BarFillerMiddleware(func(mpb.BarFiller) mpb.BarFiller {
		return mpb.BarFillerFunc(func(w io.Writer, st decor.Statistics) error {
			done, total, text := read()
			total = max(total, done, 1)
			scratch.Reset()
			_ = barStyle.Fill(&scratch, decor.Statistics{AvailableWidth: 32, Total: total, Current: done})
			// mpb ends the bar's own row (unlike the extenders' rows).
			line := fmt.Sprintf("%s %3d%%  %s", scratch.String(), done*100/total, text)
			_, err := io.WriteString(w, cutRunes(line, st.AvailableWidth-1))
			return err
		})
	})
}

// fill writes one line above the bar in the live area, cut to the
// terminal's width (one column spare, so that no terminal wraps it).
func (v *applyView) fill(w io.Writer, st decor.Statistics, line string) error {
	if line == "" {
		return nil
	}
	if width := st.AvailableWidth - 1; width > 0 {
		line = cutRunes(line, width)
	}
	_, err := io.WriteString(w, line+"\n")
	return err
}

// line prints one line above the live area, or as a plain line without
// one. v.mu is held.
func (v *applyView) line(format string, args ...any) {
	text := "mailferry: " + fmt.Sprintf(format, args...) + "\n"
	if v.p != nil {
		_, _ = v.p.Write([]byte(text))
		return
	}
	_, _ = io.WriteString(v.w, text)
}

// say prints one line among the progress output (never into the JSON
// stream: there it goes to stderr).
func (v *applyView) say(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.line(format, oneLineArgs(args)...)
}

func (v *applyView) event(e migrate.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	mv := v.moves[e.Mailbox]
	if mv == nil {
		mv = &moveView{} // not a move of this view: counted nowhere
	}
	switch e.Kind {
	case migrate.EventBytes:
		mv.streamed += e.Bytes
		v.streamed += e.Bytes
		return
	case migrate.EventMessageCopied:
		mv.msgs += e.Messages
		mv.copied += e.Bytes
		v.msgs += e.Messages
		v.copied += e.Bytes
	case migrate.EventPlanned:
		if mv.fresh {
			mv.est, mv.fresh = e.Bytes, false // the source's listing knows better than the inventory
		}
	case migrate.EventMoveDone:
		mv.active, mv.done = false, true
		switch {
		case e.Text != migrate.ResultSkipped:
			v.finished++
		case mv.doneBefore:
		case e.Reason == "already done":
			mv.doneBefore = true
			v.planned--
			v.before++
		default: // complete: not ready, so no work of this run
			v.planned--
		}
	}
	changed := false
	if e.Kind == migrate.EventMovePhase {
		if !mv.active && !mv.done {
			mv.active, mv.started = true, time.Now()
		}
		changed, mv.phase = mv.phase != e.Text, e.Text
	}
	if v.json != nil {
		v.jsonEvent(e)
		return
	}
	switch e.Kind {
	case migrate.EventMovePhase:
		if changed && scrolledPhase(e.Text) {
			v.line("%s (%s): %s", e.Mailbox, mv.route, e.Text)
		}
	case migrate.EventMoveDone:
		v.line("%s", v.doneText(mv, e))
	case migrate.EventWarning:
		v.line("warning: %s: %s", e.Mailbox, oneLine(e.Text))
	}
}

// scrolledPhase says whether entering phase p gets a line above the live
// area: the passes do; ready and cutover last a moment on the way to the
// final delta (a move that stays at ready ends with its result line, and
// the cutover hook's output has its own), and done is the result line's.
func scrolledPhase(p string) bool {
	return p != migrate.PhaseReady && p != migrate.PhaseCutover && p != migrate.PhaseDone
}

// doneText is a finished move's line: its result, what this run copied,
// and how far the run is.
func (v *applyView) doneText(mv *moveView, e migrate.Event) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", mv.mailbox, e.Text)
	if e.Text == migrate.ResultSkipped {
		fmt.Fprintf(&b, " (%s)", oneLine(e.Reason))
		return b.String()
	}
	if e.Reason != "" && e.Text != migrate.ResultDone {
		fmt.Fprintf(&b, ": %s", cutRunes(moveReason(e.Text, e.Reason, mv.phase), 160))
	}
	fmt.Fprintf(&b, "; %d messages (%s) copied", mv.msgs, inventory.FormatBytes(mv.copied))
	if !mv.started.IsZero() {
		fmt.Fprintf(&b, " in %s", time.Since(mv.started).Round(100*time.Millisecond))
	}
	fmt.Fprintf(&b, " [%d/%d]", v.finished, v.planned)
	return b.String()
}

// jsonEvent writes an event as a JSON line; copied messages and streamed
// bytes are summed into a progress line every few seconds. v.mu is held.
func (v *applyView) jsonEvent(e migrate.Event) {
	switch e.Kind {
	case migrate.EventBytes:
		return
	case migrate.EventMessageCopied:
		if time.Since(v.lastLine) < v.every {
			return
		}
		v.lastLine = time.Now()
		_ = v.json.Encode(progressLine{"progress", time.Now().UTC(), v.msgs, v.copied, v.finished, len(v.order)})
	default:
		_ = v.json.Encode(ndjsonEvent(e))
	}
}

// ticker rebuilds the live area's text, prints throttle changes and,
// off a terminal, a status line every few seconds.
func (v *applyView) ticker() {
	defer close(v.tickDone)
	t := time.NewTicker(viewTick)
	defer t.Stop()
	for {
		select {
		case <-v.stopTick:
			return
		case now := <-t.C:
			v.tick(now)
		}
	}
}

func (v *applyView) tick(now time.Time) {
	stats := make([]throttle.Stats, len(v.lims))
	for i, l := range v.lims {
		stats[i] = l.Snapshot()
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	v.rate.add(now, v.streamed)
	for _, mv := range v.order {
		if mv.active {
			mv.rate.add(now, mv.streamed)
		}
	}
	v.throttleLines(now, stats)
	if v.p != nil {
		v.snap.Store(v.snapshot(now, stats))
		return
	}
	if now.Sub(v.lastLine) >= v.every {
		v.lastLine = now
		v.line("%s%s", v.statusText(now), throttleText(stats))
	}
}

// total is the bytes of this run's work: what the finished moves
// streamed, and for the others the larger of their estimate and what
// they streamed so far. v.mu is held.
func (v *applyView) total() int64 {
	var t int64
	for _, mv := range v.order {
		if mv.done {
			t += mv.streamed
		} else {
			t += max(mv.est, mv.streamed)
		}
	}
	return t
}

// statusText says how far the run is: bytes of its own work, rate, ETA
// from the work left, moves. v.mu is held.
func (v *applyView) statusText(now time.Time) string {
	total := v.total()
	rate := v.rate.perSecond()
	var b strings.Builder
	fmt.Fprintf(&b, "%s of %s, %s/s", inventory.FormatBytes(v.streamed), inventory.FormatBytes(total), inventory.FormatBytes(int64(rate)))
	active := 0
	for _, mv := range v.order {
		if mv.active {
			active++
		}
	}
	switch left := total - v.streamed; {
	case active == 0 && v.finished == 0:
		b.WriteString(", starting")
	case left <= 0:
		b.WriteString(", finishing (delta passes and verification)")
	case rate > 0:
		fmt.Fprintf(&b, ", ETA %s", etaText(time.Duration(float64(left)/rate*float64(time.Second))))
	default:
		b.WriteString(", ETA --")
	}
	fmt.Fprintf(&b, "; moves %d/%d finished, %d active", v.finished, v.planned, active)
	if v.before > 0 {
		fmt.Fprintf(&b, " (%d done before this run)", v.before)
	}
	fmt.Fprintf(&b, "; %s elapsed", now.Sub(v.started).Round(time.Second))
	return b.String()
}

// snapshot builds the live area's text. v.mu is held.
func (v *applyView) snapshot(now time.Time, stats []throttle.Stats) *viewSnap {
	s := &viewSnap{total: v.total(), done: v.streamed, status: v.statusText(now)}
	s.throttle = strings.TrimPrefix(throttleText(stats), "; ")
	if s.throttle != "" {
		s.throttle = "  throttle: " + s.throttle
	}
	var active []*moveView
	for _, mv := range v.order {
		if mv.active {
			active = append(active, mv)
		}
	}
	for i, mv := range active {
		if i == v.slots-1 && len(active) > v.slots {
			s.moveLines = append(s.moveLines, fmt.Sprintf("  ... and %d more active moves", len(active)-i))
			break
		}
		work := inventory.FormatBytes(mv.streamed)
		if mv.est > 0 {
			work += " / " + inventory.FormatBytes(max(mv.est, mv.streamed))
		}
		s.moveLines = append(s.moveLines, fmt.Sprintf("  %-*s  %-*s  %-11s  %-21s  %s/s",
			v.mbWidth, cutRunes(mv.mailbox, v.mbWidth), v.rtWidth, cutRunes(mv.route, v.rtWidth), mv.phase, work,
			inventory.FormatBytes(int64(mv.rate.perSecond()))))
	}
	return s
}

// throttleLines prints a line when a throttle's limit fell, reached its
// cap again, or (at most every few seconds) grew. v.mu is held.
func (v *applyView) throttleLines(now time.Time, stats []throttle.Stats) {
	for _, st := range stats {
		seen := v.limitSeen[st.Name]
		switch {
		case st.Limit == seen.limit:
			continue
		case st.Limit < seen.limit:
			v.line("throttle %s: limit %d -> %d of %d commands in flight (p90 latency %s, healthy %s; %d busy replies)",
				st.Name, seen.limit, st.Limit, st.Cap, st.Latency.Round(time.Millisecond), st.Baseline.Round(time.Millisecond), st.Distress)
		case st.Limit == st.Cap:
			v.line("throttle %s: limit %d -> %d: back at its cap (p90 latency %s)", st.Name, seen.limit, st.Limit, st.Latency.Round(time.Millisecond))
		case now.Sub(seen.at) >= 3*time.Second:
			v.line("throttle %s: limit %d -> %d of %d: recovering (p90 latency %s)", st.Name, seen.limit, st.Limit, st.Cap, st.Latency.Round(time.Millisecond))
		default:
			continue
		}
		v.limitSeen[st.Name] = limitSeen{limit: st.Limit, at: now}
	}
}

// copiedBytes is how many bytes of messages the run copied for mailbox.
func (v *applyView) copiedBytes(mailbox string) int64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if mv := v.moves[mailbox]; mv != nil {
		return mv.copied
	}
	return 0
}

// done takes the live area off the screen (the report follows) and stops
// the ticker.
func (v *applyView) done() {
	if v.stopTick != nil {
		close(v.stopTick)
		<-v.tickDone
		v.stopTick = nil
	}
	v.mu.Lock()
	v.closed = true
	p, bar := v.p, v.bar
	v.mu.Unlock()
	if p != nil {
		bar.Abort(true)
		p.Wait()
		v.mu.Lock()
		v.p, v.bar = nil, nil
		v.mu.Unlock()
	}
}

// rateWindow is a rate over the last few seconds, from cumulative counts
// sampled by the ticker; it allocates nothing.
type rateWindow struct {
	t    [26]time.Time // 5 s of viewTick samples, and one
	n    [26]int64
	next int
	full bool
}

func (r *rateWindow) add(now time.Time, count int64) {
	r.t[r.next], r.n[r.next] = now, count
	r.next = (r.next + 1) % len(r.t)
	r.full = r.full || r.next == 0
}

// perSecond is the rate between the oldest and the newest sample.
func (r *rateWindow) perSecond() float64 {
	newest := (r.next + len(r.t) - 1) % len(r.t)
	oldest := 0
	if r.full {
		oldest = r.next
	}
	if newest == oldest || r.t[newest].IsZero() {
		return 0
	}
	secs := r.t[newest].Sub(r.t[oldest]).Seconds()
	if secs <= 0 {
		return 0
	}
	return float64(r.n[newest]-r.n[oldest]) / secs
}

func etaText(d time.Duration) string {
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < time.Hour:
		return d.Round(10 * time.Second).String()
	default:
		return d.Round(time.Minute).String()
	}
}

// throttleText says, for each throttled side that is holding back, its
// concurrency limit, latency and backoffs: what an operator watching a
// sick cluster wants to see. "" when none is.
func throttleText(stats []throttle.Stats) string {
	var b strings.Builder
	for _, st := range stats {
		if st.Limit == st.Cap && st.Backoffs == 0 && st.RateWaits == 0 && st.WindowWaits == 0 {
			continue
		}
		fmt.Fprintf(&b, "; %s %d/%d in flight allowed, p90 %s", st.Name, st.Limit, st.Cap, st.Latency.Round(time.Millisecond))
		if st.Decreases > 0 {
			fmt.Fprintf(&b, ", %d decreases", st.Decreases)
		}
		if st.Backoffs > 0 {
			fmt.Fprintf(&b, ", %d backoffs (last %v)", st.Backoffs, st.LastSignal)
		}
		if st.RateWaits > 0 {
			b.WriteString(", rate-limited")
		}
		if st.WindowWaits > 0 {
			b.WriteString(", waited for a window")
		}
	}
	return b.String()
}

// moveReason says in words why a move is not done: a stop is told as
// such, not as "interrupted: interrupted" or "context canceled".
func moveReason(result, reason, phase string) string {
	during := ""
	if phase != "" {
		during = " during " + phase
	}
	switch {
	case result != migrate.ResultInterrupted:
		return oneLine(reason)
	case reason == "not started":
		return "not started: the run was stopped before its turn"
	case reason == "interrupted between passes":
		return "stopped by Ctrl-C/SIGTERM between passes" + during + "; run again to resume"
	case strings.Contains(reason, migrate.ErrOutsideWindow.Error()):
		return "stopped outside the allowed time windows" + during + "; run again inside a window"
	case strings.HasSuffix(reason, "context canceled"):
		return "stopped at once (second Ctrl-C/SIGTERM or lease lost)" + during + "; run again to resume"
	case strings.HasSuffix(reason, migrate.ErrInterrupted.Error()):
		return "stopped by Ctrl-C/SIGTERM" + during + " (messages in flight finished); run again to resume"
	}
	return oneLine(reason)
}

// oneLine folds a multi-line text (a server's error with its own line
// breaks, a hook's output) into one line.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, "\r\n\t") {
		return s
	}
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\t", " ")
	parts := strings.Split(s, "\n")
	out := parts[:0]
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " / ")
}

func oneLineArgs(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		if s, ok := a.(string); ok {
			a = oneLine(s)
		}
		out[i] = a
	}
	return out
}

// cutRunes cuts s to at most n characters, marking the cut with "…".
func cutRunes(s string, n int) string {
	if n <= 0 {
		return s
	}
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// ndjsonEvent is one event as a JSON line.
var ndjsonKinds = map[migrate.EventKind]string{
	migrate.EventPlanned: "planned", migrate.EventFolderStarted: "folder_started", migrate.EventFolderDone: "folder_done",
	migrate.EventMessageCopied: "message_copied", migrate.EventWarning: "warning",
	migrate.EventMovePhase: "move_phase", migrate.EventMoveDone: "move_done", migrate.EventClusterHealth: "cluster_health",
}

func ndjsonEvent(e migrate.Event) any {
	return eventLine{Event: ndjsonKinds[e.Kind], Time: time.Now().UTC(), Mailbox: e.Mailbox, Cluster: e.Cluster,
		Folder: e.Folder, Messages: e.Messages, Bytes: e.Bytes, Text: e.Text, Reason: e.Reason}
}

// renderApplyTable prints the final report as a table: one row a move,
// what this run copied, each cell on one line and the reasons cut to fit
// (their full text is in the --report file at reportPath; "-": say nothing
// of it).
func renderApplyTable(w io.Writer, rep *migrate.ApplyReport, copiedBytes func(mailbox string) int64, reportPath string) error {
	const reasonWidth = 100
	cut := false // some reason was cut
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MAILBOX\tFROM\tTO\tMESSAGES COPIED\tBYTES COPIED\tTIME\tVERIFIED\tRESULT")
	var bytesTotal int64
	for _, m := range rep.Moves {
		result := m.Result
		if m.Reason != "" && m.Result != migrate.ResultDone {
			reason := moveReason(m.Result, m.Reason, m.Phase)
			if short := cutRunes(reason, reasonWidth); short != reason {
				cut, reason = true, short
			}
			result += ": " + reason
		}
		b := copiedBytes(m.Mailbox)
		bytesTotal += b
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\n", oneLine(m.Mailbox), oneLine(m.From), oneLine(m.To), m.Copied,
			inventory.FormatBytes(b), time.Duration(m.Seconds*float64(time.Second)).Round(100*time.Millisecond), m.Verified, result)
	}
	t := rep.Totals
	fmt.Fprintf(tw, "total\t\t\t%d\t%s\t%s\t%d\t%d done, %d failed, %d held, %d interrupted, %d skipped, %d synced (not final)\n",
		t.Copied, inventory.FormatBytes(bytesTotal), time.Duration(rep.Seconds*float64(time.Second)).Round(100*time.Millisecond), t.Verified,
		t.Done, t.Failed, t.Held, t.Interrupted, t.Skipped, t.Synced)
	if err := tw.Flush(); err != nil {
		return err
	}
	switch {
	case !cut || reportPath == "-":
	case reportPath != "":
		fmt.Fprintf(w, "(reasons cut to %d characters: %s has them whole)\n", reasonWidth, reportPath)
	default:
		fmt.Fprintf(w, "(reasons cut to %d characters: --report FILE keeps them whole)\n", reasonWidth)
	}
	for _, st := range rep.Throttle {
		if st.Commands == 0 {
			continue
		}
		fmt.Fprintf(w, "throttle %s: limit %d/%d at the end (%d decreases, %d increases), p90 latency %s, %d backoffs, %d rate waits\n",
			st.Name, st.Limit, st.Cap, st.Decreases, st.Increases, st.Latency.Round(time.Millisecond), st.Backoffs, st.RateWaits)
	}
	return nil
}
