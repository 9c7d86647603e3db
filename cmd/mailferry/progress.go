package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"mailferry/migrate"
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
				progressbar.OptionShowCount(),
				progressbar.OptionSetDescription("copying"),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionClearOnFinish(),
			)
		}
	case migrate.EventMessageCopied:
		p.msgs += e.Messages
		p.bytes += e.Bytes
		switch {
		case p.bar != nil:
			_ = p.bar.Add64(e.Bytes)
		case !p.quiet && time.Since(p.lastLine) >= p.lineInterval:
			p.lastLine = time.Now()
			secs := time.Since(p.started).Seconds()
			fmt.Fprintf(p.w, "mailferry: copied %d/%d messages, %s/%s, %.1f MB/s\n",
				p.msgs, p.totalMsgs, humanBytes(p.bytes), humanBytes(p.totalBytes), float64(p.bytes)/1e6/secs)
		}
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
