package migrate

import (
	"io"
	"time"
)

// bytesEvery spaces one connection's EventBytes reports.
const bytesEvery = 200 * time.Millisecond

// streamMeter passes a message body on to the target's APPEND, counting
// its bytes, and reports them as EventBytes at most every bytesEvery (what
// is left when a batch ends goes out with flush). It lives in its worker,
// so copying a body allocates nothing for it; only the worker's goroutine
// touches it.
type streamMeter struct {
	w    io.Writer
	run  *run
	n    int64     // bytes written since the last report
	last time.Time // when the last report went out
}

func (m *streamMeter) Write(p []byte) (int, error) {
	n, err := m.w.Write(p)
	m.n += int64(n)
	if now := time.Now(); now.Sub(m.last) >= bytesEvery {
		m.report(now)
	}
	return n, err
}

// flush reports what was written since the last report.
func (m *streamMeter) flush() {
	if m.n > 0 {
		m.report(time.Now())
	}
}

func (m *streamMeter) report(now time.Time) {
	m.last = now
	if m.n > 0 {
		n := m.n
		m.n = 0
		m.run.emit(Event{Kind: EventBytes, Bytes: n})
	}
}
