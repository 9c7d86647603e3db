package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"mailferry/migrate"
	"mailferry/throttle"
)

// progress renders copy events: a progress bar on a terminal, a plain line
// every few seconds elsewhere, nothing but the final report with --json.
// Warnings go to stderr as they happen (not with --json: the report lists
// them).
type progress struct {
	w     io.Writer
	quiet bool
	bar   *progressbar.ProgressBar

	mu           sync.Mutex
	totalMsgs    int
	totalBytes   int64
	msgs         int
	bytes        int64
	lastLine     time.Time
	started      time.Time
	lineInterval time.Duration
	limiters     []*throttle.Limiter // shown in plain lines and the bar
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func newProgress(w io.Writer, asJSON bool) *progress {
	return &progress{w: w, quiet: asJSON, started: time.Now(), lastLine: time.Now(), lineInterval: 5 * time.Second}
}

func (p *progress) Event(e migrate.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch e.Kind {
	case migrate.EventWarning:
		if !p.quiet {
			p.clearBar()
			fmt.Fprintf(p.w, "mailferry: warning: %s\n", e.Text)
		}
	case migrate.EventPlanned:
		p.totalMsgs, p.totalBytes = e.Messages, e.Bytes
		if !p.quiet && isTerminal(p.w) && e.Bytes > 0 {
			p.bar = progressbar.NewOptions64(e.Bytes,
				progressbar.OptionSetWriter(p.w),
				progressbar.OptionShowBytes(true),
				progressbar.OptionUseIECUnits(true),
				progressbar.OptionShowCount(),
				progressbar.OptionSetDescription("copying"),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionClearOnFinish(),
			)
		}
	case migrate.EventMessageCopied:
		p.msgs += e.Messages
		p.bytes += e.Bytes
		if p.bar != nil {
			_ = p.bar.Add64(e.Bytes)
		}
		if p.quiet || time.Since(p.lastLine) < p.lineInterval {
			return
		}
		// Every few seconds: a plain line, or the throttle's state in the
		// bar's description (reading the limiters per message would cost
		// two locks a message for nothing the eye can follow).
		p.lastLine = time.Now()
		if p.bar != nil {
			p.bar.Describe("copying" + p.throttleText())
			return
		}
		secs := time.Since(p.started).Seconds()
		fmt.Fprintf(p.w, "mailferry: copied %d/%d messages, %s/%s, %s%s\n",
			p.msgs, p.totalMsgs, humanBytes(p.bytes), humanBytes(p.totalBytes), humanRate(float64(p.bytes)/secs), p.throttleText())
	}
}

func (p *progress) clearBar() {
	if p.bar != nil {
		_ = p.bar.Clear()
	}
}

func (p *progress) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
		p.bar = nil
	}
}

// throttleText says, for each throttled side that is holding back, its
// concurrency limit, latency and backoffs: what an operator watching a
// sick cluster wants to see.
func (p *progress) throttleText() string {
	var b strings.Builder
	for _, l := range p.limiters {
		st := l.Snapshot()
		if st.Limit == st.Cap && st.Backoffs == 0 && st.RateWaits == 0 && st.WindowWaits == 0 {
			continue
		}
		fmt.Fprintf(&b, "; %s: %d/%d in flight allowed, p90 %s", st.Name, st.Limit, st.Cap, st.Latency.Round(time.Millisecond))
		if st.Backoffs > 0 {
			fmt.Fprintf(&b, ", %d backoffs (last %v)", st.Backoffs, st.LastSignal)
		}
		if st.RateWaits > 0 {
			b.WriteString(", rate-limited")
		}
	}
	return b.String()
}
