package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"golang.org/x/term"

	"mailferry/inventory"
	"mailferry/migrate"
	"mailferry/throttle"
)

// progress renders one mailbox copy's events (mailferry migrate): on a
// terminal a bar redrawn in place (bytes as they stream, rate, ETA, the
// throttles holding back) with warnings scrolling above it; a plain line
// every few seconds elsewhere; nothing but the final report with --json.
type progress struct {
	w        io.Writer
	quiet    bool
	limiters []*throttle.Limiter // shown in the bar and the plain lines

	p    *mpb.Progress
	bar  *mpb.Bar
	snap atomic.Pointer[progressSnap] // what the bar shows; its filler reads nothing else

	mu           sync.Mutex
	totalMsgs    int
	totalBytes   int64
	msgs         int
	bytes        int64 // of the copied messages
	streamed     int64 // body bytes sent (EventBytes)
	rate         rateWindow
	lastLine     time.Time
	lastSnap     time.Time
	started      time.Time
	lineInterval time.Duration
}

type progressSnap struct {
	total, done int64
	text        string
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
			p.line("warning: %s", oneLine(e.Text))
		}
	case migrate.EventPlanned:
		p.totalMsgs, p.totalBytes = e.Messages, e.Bytes
		if !p.quiet && p.p == nil && isTerminal(p.w) && e.Bytes > 0 {
			p.startBar()
		}
	case migrate.EventBytes:
		p.streamed += e.Bytes
	case migrate.EventMessageCopied:
		p.msgs += e.Messages
		p.bytes += e.Bytes
	default:
		return
	}
	now := time.Now()
	if p.p != nil {
		// The bar's text, a few times a second (reading the limiters per
		// event would cost two locks an event for nothing the eye can
		// follow).
		if now.Sub(p.lastSnap) >= viewTick {
			p.lastSnap = now
			p.rate.add(now, p.streamed)
			p.snap.Store(&progressSnap{total: max(p.totalBytes, p.streamed), done: p.streamed, text: p.text(true)})
		}
		return
	}
	if p.quiet || now.Sub(p.lastLine) < p.lineInterval {
		return
	}
	p.lastLine = now
	p.rate.add(now, p.streamed)
	p.line("%s", p.text(false))
}

// text says how far the copy is. p.mu is held.
func (p *progress) text(live bool) string {
	var b strings.Builder
	var rate float64
	if live {
		rate = p.rate.perSecond()
	} else if secs := time.Since(p.started).Seconds(); secs > 0 {
		rate = float64(p.streamed) / secs
	}
	fmt.Fprintf(&b, "copied %d/%d messages, %s of %s, %s/s", p.msgs, p.totalMsgs,
		inventory.FormatBytes(p.streamed), inventory.FormatBytes(p.totalBytes), inventory.FormatBytes(int64(rate)))
	if left := p.totalBytes - p.streamed; left > 0 && rate > 0 {
		fmt.Fprintf(&b, ", ETA %s", etaText(time.Duration(float64(left)/rate*float64(time.Second))))
	}
	stats := make([]throttle.Stats, len(p.limiters))
	for i, l := range p.limiters {
		stats[i] = l.Snapshot()
	}
	b.WriteString(throttleText(stats))
	return b.String()
}

// startBar puts the bar on the terminal. p.mu is held.
func (p *progress) startBar() {
	p.snap.Store(&progressSnap{total: p.totalBytes})
	p.p = mpb.New(mpb.WithOutput(p.w), mpb.WithRefreshRate(viewTick))
	p.bar = p.p.New(0, nil, mpb.BarFillerTrim(),
		statusBar(func() (int64, int64, string) { s := p.snap.Load(); return s.done, s.total, s.text }))
}

// line prints one line, above the bar when there is one. p.mu is held.
func (p *progress) line(format string, args ...any) {
	text := "mailferry: " + fmt.Sprintf(format, args...) + "\n"
	if p.p != nil {
		_, _ = p.p.Write([]byte(text))
		return
	}
	_, _ = io.WriteString(p.w, text)
}

func (p *progress) done() {
	p.mu.Lock()
	pp, bar := p.p, p.bar
	p.mu.Unlock()
	if pp == nil {
		return
	}
	bar.Abort(true)
	pp.Wait()
	p.mu.Lock()
	p.p, p.bar = nil, nil
	p.mu.Unlock()
}
