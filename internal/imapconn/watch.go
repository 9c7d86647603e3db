package imapconn

import (
	"bytes"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// DefaultIdleTimeout is how long a connection may make no progress while
// mailferry waits for the server before it is closed (Config.IdleTimeout 0).
const DefaultIdleTimeout = 120 * time.Second

// TimeoutError says a connection was closed because no byte moved for After
// while mailferry waited for the server. It is a net.Error whose Timeout is
// true; its text says "connection closed", so that it is classified as a
// lost connection (Retry) also when the IMAP library flattens it into its
// own error text.
type TimeoutError struct {
	Side, Addr string
	After      time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s: %s timed out after %s without progress; connection closed", e.Side, e.Addr, e.After)
}

// Timeout reports true.
func (e *TimeoutError) Timeout() bool { return true }

// Temporary reports true: a new connection may do better.
func (e *TimeoutError) Temporary() bool { return true }

// watchConn is the net.Conn handed to the IMAP library. It replaces the
// library's fixed deadlines (30 s per response line, 5 min per literal,
// which would cut a throttled but moving literal) with one rule that
// follows progress: while mailferry waits for the server — a command is
// outstanding and a read is blocked, or a write is blocked — and no byte
// moves for the idle timeout, a watchdog closes the connection and every
// later read and write returns a *TimeoutError naming the side. A
// connection with nothing outstanding (kept between passes) is never
// closed by it, however long it sits.
//
// "Outstanding" is known without help from callers: the write side follows
// the command stream (lines and literals) and records each command's tag;
// the read side (respFilter) retires a tag at its tagged response. While
// mailferry itself owes the server bytes (inside a literal it is sending,
// or after a "+" continuation), a blocked read is not the server's fault
// and does not count.
//
// The read side also filters what the IMAP library cannot survive (see
// respFilter).
type watchConn struct {
	net.Conn          // the layer the IMAP stream runs on (TLS or TCP)
	raw      net.Conn // the TCP connection, closed by the watchdog and Close
	side     string
	addr     string
	idle     time.Duration
	filter   *respFilter
	done     chan struct{}
	once     sync.Once

	mu           sync.Mutex
	lastProgress time.Time
	readSince    time.Time // a read is blocked since (zero: none)
	writeSince   time.Time // a write is blocked since (zero: none)
	tags         map[string]struct{}
	greeting     bool // the server's first line is still awaited
	owe          bool // mailferry owes the server bytes
	err          error
	bad          []string
	cmd          cmdScanner
	own          *ownCmd // a command written beneath the library (MultiAppend)
}

// newWatchConn wraps c (raw is the TCP connection beneath it) and starts
// the watchdog. prefix, when set, is read before anything from c (a
// greeting replayed after STARTTLS).
func newWatchConn(c, raw net.Conn, side, addr string, idle time.Duration, prefix []byte) *watchConn {
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	w := &watchConn{
		Conn: c, raw: raw, side: side, addr: addr, idle: idle,
		done: make(chan struct{}), tags: map[string]struct{}{}, greeting: true,
		lastProgress: time.Now(),
	}
	w.filter = newRespFilter(&trackReader{w: w, prefix: prefix}, w)
	go w.watchdog()
	return w
}

func (w *watchConn) watchdog() {
	tick := min(max(w.idle/8, 5*time.Millisecond), 5*time.Second)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-w.done:
			return
		case now := <-t.C:
			if w.stalled(now) {
				w.mu.Lock()
				if w.err == nil {
					w.err = &TimeoutError{Side: w.side, Addr: w.addr, After: w.idle}
				}
				w.mu.Unlock()
				_ = w.raw.Close()
				return
			}
		}
	}
}

// stalled reports whether the server has kept mailferry waiting, with no
// byte moving, for the idle timeout.
func (w *watchConn) stalled(now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.writeSince.IsZero() && now.Sub(later(w.lastProgress, w.writeSince)) >= w.idle {
		return true
	}
	waiting := (len(w.tags) > 0 || w.greeting) && !w.owe
	return waiting && !w.readSince.IsZero() && now.Sub(later(w.lastProgress, w.readSince)) >= w.idle
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Read returns the server's bytes, filtered (see respFilter).
func (w *watchConn) Read(p []byte) (int, error) { return w.filter.Read(p) }

// maxWriteChunk bounds one write to the connection, so that progress is
// seen while a large literal goes out.
const maxWriteChunk = 64 << 10

// Write follows the command stream, then writes p.
func (w *watchConn) Write(p []byte) (int, error) {
	var n int
	for len(p) > 0 {
		chunk := p[:min(len(p), maxWriteChunk)]
		w.mu.Lock()
		if w.err != nil {
			err := w.err
			w.mu.Unlock()
			return n, err
		}
		w.cmd.scan(chunk, w)
		w.writeSince = time.Now()
		w.mu.Unlock()
		m, err := w.Conn.Write(chunk)
		n += m
		w.mu.Lock()
		w.writeSince = time.Time{}
		if m > 0 {
			w.lastProgress = time.Now()
		}
		if err != nil && w.err != nil {
			err = w.err
		}
		w.mu.Unlock()
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

// Close closes the TCP connection at once (no TLS close_notify, which could
// block on a stalled server) and stops the watchdog.
func (w *watchConn) Close() error {
	w.once.Do(func() { close(w.done) })
	return w.raw.Close()
}

// SetDeadline and its two siblings do nothing: the IMAP library's fixed
// deadlines are replaced by the watchdog (see watchConn).
func (w *watchConn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline does nothing (see SetDeadline).
func (w *watchConn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline does nothing (see SetDeadline).
func (w *watchConn) SetWriteDeadline(time.Time) error { return nil }

// onLine is called by the read filter at the start of each response: tag
// is the tag of a tagged response, "+" for a continuation request, "*" for
// untagged data.
func (w *watchConn) onLine(tag string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.greeting = false
	switch tag {
	case "*":
	case "+":
		w.owe = true // the server waits for mailferry now
	default:
		delete(w.tags, tag)
	}
}

func (w *watchConn) badName(raw string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, b := range w.bad {
		if b == raw {
			return
		}
	}
	w.bad = append(w.bad, raw)
}

// badNames returns the mailbox names dropped from LIST and STATUS responses.
func (w *watchConn) badNames() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.bad...)
}

// trackReader is the read side beneath the filter: it records blocked
// reads and progress, and turns the watchdog's close into its error.
type trackReader struct {
	w      *watchConn
	prefix []byte
}

func (t *trackReader) Read(p []byte) (int, error) {
	if len(t.prefix) > 0 {
		n := copy(p, t.prefix)
		t.prefix = t.prefix[n:]
		return n, nil
	}
	w := t.w
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return 0, err
	}
	w.readSince = time.Now()
	w.mu.Unlock()
	n, err := w.Conn.Read(p)
	w.mu.Lock()
	w.readSince = time.Time{}
	if n > 0 {
		w.lastProgress = time.Now()
	}
	if err != nil && w.err != nil {
		err = w.err
	}
	w.mu.Unlock()
	return n, err
}

// cmdScanner follows the client's command stream: logical lines (a line
// continues after each literal) and literals ({n}, {n+}, ~{n}), without
// looking inside literals. It runs under watchConn.mu.
type cmdScanner struct {
	lit     int64 // literal bytes still to be written
	inLine  bool  // past the first token of the current line
	tok     []byte
	tail    []byte // the current segment's last bytes, for the literal marker
	tokOver bool   // the first token was too long to be a tag
}

const maxTag = 64

func (s *cmdScanner) scan(b []byte, w *watchConn) {
	for len(b) > 0 {
		if s.lit > 0 {
			n := int(min(int64(len(b)), s.lit))
			s.lit -= int64(n)
			b = b[n:]
			w.owe = true
			continue
		}
		seg := b
		end := bytes.IndexByte(b, '\n')
		if end >= 0 {
			seg = b[:end+1]
		}
		b = b[len(seg):]
		if !s.inLine {
			for _, c := range seg {
				if c == ' ' || c == '\r' || c == '\n' {
					if c == ' ' && len(s.tok) > 0 && !s.tokOver {
						w.tags[string(s.tok)] = struct{}{}
					}
					s.inLine = true
					break
				}
				if len(s.tok) < maxTag {
					s.tok = append(s.tok, c)
				} else {
					s.tokOver = true
				}
			}
		}
		s.tail = appendTail(s.tail, seg)
		if end < 0 {
			continue
		}
		if n, sync, ok := literalMarker(s.tail); ok {
			s.lit = n
			s.inLine = true
			w.owe = !sync || n == 0 // a synchronizing literal waits for "+"
		} else {
			s.inLine = false
			s.tok = s.tok[:0]
			s.tokOver = false
			w.owe = false
		}
		s.tail = s.tail[:0]
	}
}

// maxTail is enough for the longest literal marker: "~{" 20 digits "+}\r\n".
const maxTail = 32

func appendTail(tail, seg []byte) []byte {
	if len(seg) >= maxTail {
		return append(tail[:0], seg[len(seg)-maxTail:]...)
	}
	tail = append(tail, seg...)
	if len(tail) > maxTail {
		tail = append(tail[:0], tail[len(tail)-maxTail:]...)
	}
	return tail
}

// literalMarker reports whether line (a segment ending in LF) ends with a
// literal's size, "{n}\r\n" or "{n+}\r\n" (or with "~"), and whether the
// literal is synchronizing.
func literalMarker(line []byte) (n int64, sync, ok bool) {
	l := len(line)
	if l < 4 || line[l-1] != '\n' || line[l-2] != '\r' || line[l-3] != '}' {
		return 0, false, false
	}
	end := l - 3
	sync = true
	if line[end-1] == '+' || line[end-1] == '-' {
		sync = false
		end--
	}
	start := end
	for start > 0 && line[start-1] >= '0' && line[start-1] <= '9' {
		start--
	}
	if start == end || start == 0 || line[start-1] != '{' {
		return 0, false, false
	}
	v, err := strconv.ParseInt(string(line[start:end]), 10, 64)
	if err != nil {
		return 0, false, false
	}
	return v, sync, true
}
