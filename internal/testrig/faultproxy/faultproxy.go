// Package faultproxy is a loopback TCP proxy for tests that sits between
// mailferry and a real IMAP server and misbehaves on command: it corrupts
// chosen bytes on their way to the server, delays, slows or stalls the
// server's replies, answers chosen commands itself with [UNAVAILABLE], and
// resets connections. Every fault can be switched on and off while
// connections are open.
//
// The command-aware faults (ReplyUnavailable) follow the IMAP stream's
// lines and literals, so they need plaintext IMAP; after STARTTLS, or on
// implicit TLS, a connection is forwarded without looking.
package faultproxy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// TB is the subset of testing.TB the proxy needs.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// UnavailableText follows the tag in the replies of ReplyUnavailable.
const UnavailableText = " NO [UNAVAILABLE] Backend overloaded, try again in 1 seconds\r\n"

// Proxy forwards 127.0.0.1:port to an upstream address. Its methods are
// safe for concurrent use.
type Proxy struct {
	Addr     string
	upstream string
	ln       net.Listener
	wg       sync.WaitGroup

	mu    sync.Mutex
	links map[*link]struct{}
	open  int // client connections open
	peak  int // most client connections open at once

	pattern []byte // CorruptUpstream
	times   int    // corruptions left; <0 means always
	hits    int

	latency   time.Duration
	bandwidth *rate.Limiter // nil: unlimited
	stall     chan struct{} // non-nil while stalled; closed when released
	blocked   int           // chunks held by a stall right now

	sent int64 // server-to-client bytes delivered

	reject     []byte // ReplyUnavailable, ReplyText
	rejectText []byte // what follows the tag; nil means UnavailableText
	rejectLeft int    // <0 means always
	rejected   int
}

// Start listens on a free loopback port and forwards to upstream until the
// test ends.
func Start(t TB, upstream string) *Proxy {
	t.Helper()
	p, err := Listen(upstream)
	if err != nil {
		t.Fatalf("faultproxy: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// Listen is Start outside a test (the demo's degraded cluster): the
// caller calls Close.
func Listen(upstream string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), upstream: upstream, ln: ln, links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// CorruptUpstream makes the next n occurrences (n < 0: all) of pattern in
// the client-to-server stream arrive with their first byte changed, so
// sizes stay equal and contents differ.
func (p *Proxy) CorruptUpstream(pattern []byte, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pattern, p.times = append([]byte(nil), pattern...), n
}

// Corruptions is how many occurrences were corrupted so far.
func (p *Proxy) Corruptions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits
}

// SetLatency delays every chunk from the server by d after it arrived
// (chunks keep their order and overlap in time, so throughput stays); 0
// removes the delay. Chunks already waiting keep the delay they had.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.latency = max(0, d)
}

// SetBandwidth caps the server-to-client throughput of all connections
// together at bytesPerSecond; 0 removes the cap.
func (p *Proxy) SetBandwidth(bytesPerSecond int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if bytesPerSecond <= 0 {
		p.bandwidth = nil
		return
	}
	burst := min(max(1, bytesPerSecond/20), 16<<10)
	p.bandwidth = rate.NewLimiter(rate.Limit(bytesPerSecond), burst)
}

// Stall stops (on) or resumes (off) forwarding in both directions.
// Connections stay open; bytes wait in the proxy and in socket buffers.
func (p *Proxy) Stall(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case on && p.stall == nil:
		p.stall = make(chan struct{})
	case !on && p.stall != nil:
		close(p.stall)
		p.stall = nil
	}
}

// ReplyUnavailable makes the proxy answer the next n (n < 0: all) client
// commands whose first line contains pattern (such as "FETCH") itself,
// with "<tag>"+UnavailableText, instead of forwarding them. A command with
// a synchronizing literal is answered before the client sends the literal;
// one with a LITERAL+ literal is swallowed whole, then answered.
func (p *Proxy) ReplyUnavailable(pattern []byte, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.reject, p.rejectLeft, p.rejectText = append([]byte(nil), pattern...), n, nil
}

// Unavailable is how many commands ReplyUnavailable answered so far.
func (p *Proxy) Unavailable() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rejected
}

// Sent is how many bytes the proxy delivered from servers to clients.
func (p *Proxy) Sent() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

// Conns is the number of client connections open now; PeakConns the most
// that were open at once.
func (p *Proxy) Conns() (open, peak int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.open, p.peak
}

// DropAll resets every open connection (TCP RST to both sides).
func (p *Proxy) DropAll() {
	p.mu.Lock()
	links := make([]*link, 0, len(p.links))
	for k := range p.links {
		links = append(links, k)
	}
	p.mu.Unlock()
	for _, k := range links {
		k.close(true)
	}
}

// Close stops accepting and drops every connection.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.DropAll()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.DialTimeout("tcp", p.upstream, 10*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		k := &link{p: p, client: c, server: u, ctx: ctx, cancel: cancel,
			chunks: make(chan chunk, 64), inject: make(chan []byte, 16)}
		p.mu.Lock()
		p.links[k] = struct{}{}
		p.open++
		p.peak = max(p.peak, p.open)
		p.mu.Unlock()
		p.wg.Add(3)
		go func() { defer p.wg.Done(); k.upstream() }()
		go func() { defer p.wg.Done(); k.readServer() }()
		go func() { defer p.wg.Done(); k.writeClient() }()
	}
}

// link is one proxied connection: a client and its server.
type link struct {
	p              *Proxy
	client, server net.Conn
	ctx            context.Context // ends when the link closes
	cancel         context.CancelFunc
	once           sync.Once
	chunks         chan chunk  // server -> client, closed at the server's EOF
	inject         chan []byte // replies the proxy sends the client itself
}

type chunk struct {
	data []byte
	at   time.Time // when it arrived from the server
}

// close ends the link, with a reset if asked.
func (k *link) close(reset bool) {
	k.once.Do(func() {
		k.cancel()
		for _, c := range []net.Conn{k.client, k.server} {
			if tc, ok := c.(*net.TCPConn); ok && reset {
				_ = tc.SetLinger(0)
			}
			_ = c.Close()
		}
		k.p.mu.Lock()
		delete(k.p.links, k)
		k.p.open--
		k.p.mu.Unlock()
	})
}

// hold blocks while the proxy is stalled. It reports false if the link
// closed meanwhile.
func (k *link) hold() bool {
	p := k.p
	p.mu.Lock()
	ch := p.stall
	if ch == nil {
		p.mu.Unlock()
		return k.ctx.Err() == nil
	}
	p.blocked++
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.blocked--
		p.mu.Unlock()
	}()
	select {
	case <-ch:
		return k.ctx.Err() == nil
	case <-k.ctx.Done():
		return false
	}
}

// heldChunks is how many chunks a stall holds right now (for tests).
func (p *Proxy) heldChunks() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blocked
}

// upstream copies client to server through the command filter and the
// corrupter.
func (k *link) upstream() {
	defer k.close(false)
	f := filter{k: k}
	buf := make([]byte, 32<<10)
	var held []byte // a tail that may be the start of the corruption pattern
	for {
		n, err := k.client.Read(buf)
		if n > 0 {
			data := k.p.corrupt(append(held, f.fromClient(buf[:n])...))
			held = nil
			if j := k.p.partialSuffix(data); j > 0 {
				held = append([]byte(nil), data[len(data)-j:]...)
				data = data[:len(data)-j]
			}
			if len(data) > 0 {
				if !k.hold() {
					return
				}
				if _, werr := k.server.Write(data); werr != nil {
					return
				}
			}
		}
		if err != nil {
			if len(held) > 0 && k.hold() {
				_, _ = k.server.Write(held)
			}
			return
		}
	}
}

// readServer queues the server's bytes, stamped with their arrival, for
// writeClient. It closes the queue at the server's end of stream, so that
// what was queued is still delivered.
func (k *link) readServer() {
	defer close(k.chunks)
	for {
		buf := make([]byte, 32<<10)
		n, err := k.server.Read(buf)
		if n > 0 {
			select {
			case k.chunks <- chunk{data: buf[:n], at: time.Now()}:
			case <-k.ctx.Done():
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// writeClient delivers the server's bytes with the latency, bandwidth and
// stall in force, and the proxy's own replies between whole responses.
func (k *link) writeClient() {
	defer k.close(false)
	var s scanner
	opaque := false
	var pending [][]byte // proxy replies waiting for a response boundary
	flush := func() bool {
		for _, r := range pending {
			if _, err := k.client.Write(r); err != nil {
				return false
			}
		}
		pending = pending[:0]
		return true
	}
	for {
		select {
		case <-k.ctx.Done():
			return
		case r := <-k.inject:
			pending = append(pending, r)
			if (opaque || s.atStart()) && !flush() {
				return
			}
		case c, ok := <-k.chunks:
			if !ok {
				return
			}
			if !k.delay(c.at) || !k.hold() {
				return
			}
			data := c.data
			if !opaque && len(data) > 0 && data[0] == 0x16 && s.atStart() && !s.mid {
				opaque = true // a TLS record where a response should start
			}
			for len(data) > 0 {
				n := len(data)
				var ev event
				if !opaque {
					n, ev = s.advance(data)
				}
				if !k.send(data[:n]) {
					return
				}
				data = data[n:]
				if ev == evBoundary && len(pending) > 0 && !flush() {
					return
				}
			}
		}
	}
}

// delay waits until the latency in force has passed since at.
func (k *link) delay(at time.Time) bool {
	k.p.mu.Lock()
	d := k.p.latency
	k.p.mu.Unlock()
	wait := time.Until(at.Add(d))
	if wait <= 0 {
		return true
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-k.ctx.Done():
		return false
	}
}

// send writes b to the client under the bandwidth cap.
func (k *link) send(b []byte) bool {
	for len(b) > 0 {
		k.p.mu.Lock()
		lim := k.p.bandwidth
		k.p.mu.Unlock()
		n := len(b)
		if lim != nil {
			n = min(n, lim.Burst())
			if err := lim.WaitN(k.ctx, n); err != nil {
				return false
			}
		}
		if _, err := k.client.Write(b[:n]); err != nil {
			return false
		}
		k.p.mu.Lock()
		k.p.sent += int64(n)
		k.p.mu.Unlock()
		b = b[n:]
	}
	return true
}

// reply queues a response of the proxy's own for the client.
func (k *link) reply(b []byte) {
	select {
	case k.inject <- b:
	case <-k.ctx.Done():
	}
}

// filter is the client-to-server command filter of one link.
type filter struct {
	k         *link
	s         scanner
	opaque    bool   // TLS: forward without looking
	buffering bool   // holding a command's first line until it is complete
	buf       []byte // that line
	swallow   []byte // the reply to a command being dropped up to its end
}

// fromClient returns what of data goes on to the server, answering and
// dropping the commands that ReplyUnavailable selects.
func (f *filter) fromClient(data []byte) []byte {
	if f.opaque {
		return data
	}
	if f.s.atStart() && !f.buffering && f.swallow == nil && len(data) > 0 && data[0] == 0x16 {
		f.opaque = true // implicit TLS
		return data
	}
	var out []byte
	for len(data) > 0 {
		if f.s.atStart() && !f.buffering && f.swallow == nil && f.k.p.rejectArmed() {
			f.buffering = true
		}
		n, ev := f.s.advance(data)
		seg := data[:n]
		data = data[n:]
		switch {
		case f.swallow != nil:
			if ev == evBoundary {
				f.k.reply(f.swallow)
				f.swallow = nil
			}
		case f.buffering:
			f.buf = append(f.buf, seg...)
			if ev == evNone && len(f.buf) <= maxKeep {
				continue
			}
			line := f.buf
			f.buf, f.buffering = nil, false
			reply, ok := []byte(nil), false
			if ev != evNone {
				reply, ok = f.k.p.takeReject(line)
			}
			switch {
			case !ok:
				out = append(out, line...)
			case ev == evLiteral && synchronizing(line):
				f.s.reset() // the client sends no literal after a tagged reply
				f.k.reply(reply)
			case ev == evLiteral:
				f.swallow = reply
			default:
				f.k.reply(reply)
			}
		default:
			out = append(out, seg...)
		}
		if ev == evBoundary && isStartTLS(f.s.line) {
			f.opaque = true
			return append(out, data...)
		}
	}
	return out
}

func isStartTLS(line []byte) bool {
	fields := bytes.Fields(line)
	return len(fields) == 2 && bytes.EqualFold(fields[1], []byte("STARTTLS"))
}

func (p *Proxy) rejectArmed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.reject) > 0 && p.rejectLeft != 0
}

// takeReject decides whether the command whose first line is line is to
// be answered by the proxy, and returns the reply: its tag and the text
// of ReplyUnavailable or ReplyText.
func (p *Proxy) takeReject(line []byte) ([]byte, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.reject) == 0 || p.rejectLeft == 0 || !bytes.Contains(line, p.reject) {
		return nil, false
	}
	tag, _, _ := bytes.Cut(bytes.TrimLeft(line, " "), []byte(" "))
	tag = bytes.TrimRight(tag, "\r\n")
	if len(tag) == 0 {
		return nil, false
	}
	if p.rejectLeft > 0 {
		p.rejectLeft--
	}
	p.rejected++
	text := p.rejectText
	if text == nil {
		text = []byte(UnavailableText)
	}
	return append(append([]byte(nil), tag...), text...), true
}

func (p *Proxy) corrupt(data []byte) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pattern) == 0 {
		return data
	}
	for off := 0; p.times != 0; {
		i := bytes.Index(data[off:], p.pattern)
		if i < 0 {
			break
		}
		data[off+i] ^= 0x20 // flips case of a letter: same size, other bytes
		off += i + len(p.pattern)
		p.hits++
		if p.times > 0 {
			p.times--
		}
	}
	return data
}

// partialSuffix is the length of the longest proper suffix of data that is
// a prefix of the pattern (held back until more bytes arrive).
func (p *Proxy) partialSuffix(data []byte) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pattern) == 0 || p.times == 0 {
		return 0
	}
	for k := min(len(p.pattern)-1, len(data)); k > 0; k-- {
		if bytes.HasPrefix(p.pattern, data[len(data)-k:]) {
			return k
		}
	}
	return 0
}
