package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"

	"mailferry/migrate"
)

// applyView renders an apply's progress: on a terminal an overall bar
// (bytes, rate, ETA) and a line per move as it changes phase or ends; off a
// terminal a plain line every few seconds and one per finished move; with
// --json one JSON object per event (NDJSON) on stdout. Never ANSI codes
// into a pipe.
type applyView struct {
	g     *globalOptions
	w     io.Writer
	bar   *progressbar.ProgressBar
	json  *json.Encoder
	every time.Duration

	mu       sync.Mutex
	total    int64
	bytes    int64
	msgs     int
	moves    int
	finished int
	phase    map[string]string // active moves
	route    map[string]string // mailbox -> "from -> to"
	copied   map[string]int64  // bytes copied per mailbox this run
	started  time.Time
	lastLine time.Time
}

func newApplyView(g *globalOptions, moves []migrate.Move) *applyView {
	v := &applyView{g: g, w: g.stderr, phase: map[string]string{}, route: map[string]string{}, copied: map[string]int64{},
		started: time.Now(), lastLine: time.Now(),
		every: 5 * time.Second, moves: len(moves)}
	if g.json {
		v.every = 2 * time.Second
	}
	for _, m := range moves {
		v.total += m.Bytes
		v.route[m.Mailbox] = m.From + " -> " + m.To
	}
	switch {
	case g.json:
		v.json = json.NewEncoder(g.stdout)
	case isTerminal(g.stderr) && v.total > 0:
		v.bar = progressbar.NewOptions64(v.total,
			progressbar.OptionSetWriter(g.stderr),
			progressbar.OptionShowBytes(true),
			progressbar.OptionUseIECUnits(true),
			progressbar.OptionSetDescription(fmt.Sprintf("0/%d moves", len(moves))),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionClearOnFinish(),
		)
	}
	return v
}

// line prints one line above the bar (or as is without one).
func (v *applyView) line(format string, args ...any) {
	if v.bar != nil {
		_ = v.bar.Clear()
	}
	fmt.Fprintf(v.w, "mailferry: "+format+"\n", args...)
}

// say prints one line among the progress output (never into the JSON
// stream: there it goes to stderr).
func (v *applyView) say(format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.line(format, args...)
}

func (v *applyView) event(e migrate.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if e.Kind == migrate.EventMessageCopied {
		v.msgs += e.Messages
		v.bytes += e.Bytes
		v.copied[e.Mailbox] += e.Bytes
	}
	if e.Kind == migrate.EventMoveDone {
		v.finished++
	}
	if v.json != nil {
		// One line per event, except copied messages: those are summed
		// into a progress line every few seconds.
		if e.Kind != migrate.EventMessageCopied {
			_ = v.json.Encode(ndjsonEvent(e))
		} else if time.Since(v.lastLine) >= v.every {
			v.lastLine = time.Now()
			_ = v.json.Encode(progressLine{"progress", time.Now().UTC(), v.msgs, v.bytes, v.finished, v.moves})
		}
		return
	}
	switch e.Kind {
	case migrate.EventMessageCopied:
		if v.bar != nil {
			_ = v.bar.Add64(e.Bytes)
		}
	case migrate.EventMovePhase:
		if v.phase[e.Mailbox] != e.Text {
			v.phase[e.Mailbox] = e.Text
			if v.bar != nil {
				v.line("%s: %s", e.Mailbox, e.Text)
			}
		}
	case migrate.EventMoveDone:
		delete(v.phase, e.Mailbox)
		v.line("%s: %s (%d/%d moves finished)", e.Mailbox, e.Text, v.finished, v.moves)
		if v.bar != nil {
			v.bar.Describe(fmt.Sprintf("%d/%d moves", v.finished, v.moves))
		}
	case migrate.EventWarning:
		v.line("warning: %s: %s", e.Mailbox, e.Text)
	}
	if v.bar != nil && len(v.phase) > 0 && time.Since(v.lastLine) >= v.every {
		// A line per active move above the bar, every few seconds.
		v.lastLine = time.Now()
		names := make([]string, 0, len(v.phase))
		for mb := range v.phase {
			names = append(names, mb)
		}
		sort.Strings(names)
		for _, mb := range names {
			v.line("  %s (%s): %s, %s copied", mb, v.route[mb], v.phase[mb], humanBytes(v.copied[mb]))
		}
	}
	if v.bar == nil && time.Since(v.lastLine) >= v.every {
		v.lastLine = time.Now()
		secs := time.Since(v.started).Seconds()
		v.line("%d/%d moves finished, %d active (%s); %d messages, %s copied, %s",
			v.finished, v.moves, len(v.phase), v.activeText(), v.msgs, humanBytes(v.bytes), humanRate(float64(v.bytes)/secs))
	}
}

// activeText names the active moves by phase, e.g. "3 copying, 1 final-delta".
func (v *applyView) activeText() string {
	n := map[string]int{}
	for _, p := range v.phase {
		n[p]++
	}
	var parts []string
	for p, c := range n {
		parts = append(parts, fmt.Sprintf("%d %s", c, p))
	}
	sort.Strings(parts)
	return strings.Join(parts, ", ")
}

func (v *applyView) done() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.bar != nil {
		_ = v.bar.Finish()
		v.bar = nil
	}
}

// ndjsonEvent is one event as a JSON line.
var ndjsonKinds = map[migrate.EventKind]string{
	migrate.EventPlanned: "planned", migrate.EventFolderStarted: "folder_started", migrate.EventFolderDone: "folder_done",
	migrate.EventMessageCopied: "message_copied", migrate.EventWarning: "warning",
	migrate.EventMovePhase: "move_phase", migrate.EventMoveDone: "move_done",
}

func ndjsonEvent(e migrate.Event) any {
	kind := ndjsonKinds[e.Kind]
	return eventLine{kind, time.Now().UTC(), e.Mailbox, e.Folder, e.Messages, e.Bytes, e.Text}
}
