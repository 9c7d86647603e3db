package faultproxy

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// Late is a loopback proxy for the faults of a connection that dies with
// work in flight, where what the client sent may reach the server after
// the client is gone: the server then commits APPENDs nobody waits for.
//
//   - SetDelay holds every client-to-server chunk for a while (bytes in
//     flight on a network); when the client goes away, what it sent is
//     still delivered, late.
//   - HoldAfter keeps a connection's commands after its n-th APPEND from
//     the server until Release, which delivers the complete ones on the
//     dead client's behalf; ReleaseAfterScan does so the moment another
//     connection's first FETCH has been answered (the next run's scan).
//   - DropAfter closes the client side after its n-th command has gone
//     upstream, commands read by then still being delivered; ByeMidLiteral
//     says BYE to the client halfway through a literal and closes it.
//   - LieSize adds delta to every RFC822.SIZE the server reports.
//
// It needs plaintext IMAP. Its methods are safe for concurrent use.
type Late struct {
	Addr     string
	upstream string
	ln       net.Listener
	wg       sync.WaitGroup

	mu        sync.Mutex
	delay     time.Duration
	deadDelay time.Duration
	holdAfter int // 0: never
	dropAfter int // 0: never
	byeAt     int // literal number (1-based, counted over all links) to cut; 0: never
	literals  int
	lie       int64
	scanWatch bool // ReleaseAfterScan armed
	pending   []*lateLink
	released  int // complete APPENDs delivered by Release
	drops     int
	names     map[string]int // commands the server received, by name
	links     map[*lateLink]struct{}
}

// StartLate listens on a free loopback port and forwards to upstream
// until the test ends.
func StartLate(t TB, upstream string) *Late {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultproxy: listen: %v", err)
	}
	p := &Late{Addr: ln.Addr().String(), upstream: upstream, ln: ln, links: map[*lateLink]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// SetDelay delays client-to-server bytes by d (0: none) on new chunks.
func (p *Late) SetDelay(d time.Duration) { p.mu.Lock(); p.delay = d; p.mu.Unlock() }

// SetDeadDelay holds back, by d more, what a client had sent but the
// server not yet received when the client went away: its last commands
// reach the server d after its end, while other connections go on.
func (p *Late) SetDeadDelay(d time.Duration) { p.mu.Lock(); p.deadDelay = d; p.mu.Unlock() }

// HoldAfter holds, on each connection, everything after the start of its
// n-th APPEND command... precisely: commands from the (n+1)-th APPEND on
// are held back (0 turns it off for new commands).
func (p *Late) HoldAfter(n int) { p.mu.Lock(); p.holdAfter = n; p.mu.Unlock() }

// DropAfter closes a connection's client side once its n-th command went
// to the server (0: never). Counting restarts on every connection.
func (p *Late) DropAfter(n int) { p.mu.Lock(); p.dropAfter = n; p.mu.Unlock() }

// ByeMidLiteral makes the n-th client literal over 1 KiB from now on (all
// connections together) end halfway: the client gets "* BYE" and is
// closed; the server gets the half literal, then end of stream.
func (p *Late) ByeMidLiteral(n int) { p.mu.Lock(); p.byeAt, p.literals = n, 0; p.mu.Unlock() }

// LieSize adds delta to every RFC822.SIZE in the server's responses.
func (p *Late) LieSize(delta int64) { p.mu.Lock(); p.lie = delta; p.mu.Unlock() }

// ReleaseAfterScan arms a Release for the moment another connection's
// first FETCH command has been answered by the server.
func (p *Late) ReleaseAfterScan() { p.mu.Lock(); p.scanWatch = true; p.mu.Unlock() }

// Held is the number of complete APPEND commands held back from links
// whose client is gone, waiting for Release.
func (p *Late) Held() int {
	p.mu.Lock()
	links := append([]*lateLink(nil), p.pending...)
	p.mu.Unlock()
	n := 0
	for _, k := range links {
		k.mu.Lock()
		n += k.heldAppends
		k.mu.Unlock()
	}
	return n
}

// HeldSoFar is the number of complete APPEND commands held back on all
// connections, whether their client is still there or not.
func (p *Late) HeldSoFar() int {
	p.mu.Lock()
	links := append([]*lateLink(nil), p.pending...)
	for k := range p.links {
		links = append(links, k)
	}
	p.mu.Unlock()
	n := 0
	seen := map[*lateLink]bool{}
	for _, k := range links {
		if seen[k] {
			continue
		}
		seen[k] = true
		k.mu.Lock()
		n += k.heldAppends
		k.mu.Unlock()
	}
	return n
}

// Drain waits (at most d) until the server has closed every connection
// whose client is gone: by then it has read and done all they had sent.
// Held links (HoldAfter) wait for Release and are not waited for.
func (p *Late) Drain(d time.Duration) bool {
	deadline := time.Now().Add(d)
	for {
		busy := false
		p.mu.Lock()
		pending := map[*lateLink]bool{}
		for _, k := range p.pending {
			pending[k] = true
		}
		for k := range p.links {
			k.mu.Lock()
			gone := k.clientGone
			k.mu.Unlock()
			if gone && !pending[k] {
				busy = true
			}
		}
		p.mu.Unlock()
		if !busy {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Released is how many held APPENDs Release delivered.
func (p *Late) Released() int { p.mu.Lock(); defer p.mu.Unlock(); return p.released }

// Drops is how many client connections DropAfter or ByeMidLiteral closed.
func (p *Late) Drops() int { p.mu.Lock(); defer p.mu.Unlock(); return p.drops }

// CommandsByName counts the commands that reached the server by name
// ("SELECT", "UID FETCH", "APPEND", ...).
func (p *Late) CommandsByName() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]int, len(p.names))
	for k, v := range p.names {
		out[k] = v
	}
	return out
}

// commandName is the name of the command whose first line is line.
func commandName(line []byte) string {
	f := bytes.Fields(line)
	switch {
	case len(f) >= 3 && bytes.EqualFold(f[1], []byte("UID")):
		return "UID " + string(bytes.ToUpper(f[2]))
	case len(f) >= 2:
		return string(bytes.ToUpper(f[1]))
	}
	return ""
}

// Release delivers the complete commands held for clients that are gone,
// then logs those sessions out. It returns when the server has answered.
func (p *Late) Release() {
	p.mu.Lock()
	links := p.pending
	p.pending = nil
	p.mu.Unlock()
	for _, k := range links {
		k.deliverHeld()
	}
}

// Close stops accepting and closes every connection.
func (p *Late) Close() {
	_ = p.ln.Close()
	p.mu.Lock()
	var all []*lateLink
	for k := range p.links {
		all = append(all, k)
	}
	all = append(all, p.pending...)
	p.pending = nil
	p.mu.Unlock()
	for _, k := range all {
		k.closeAll()
	}
	p.wg.Wait()
}

func (p *Late) accept() {
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
		k := &lateLink{p: p, client: c, server: u, ctx: ctx, cancel: cancel, queue: make(chan chunk, 1024)}
		p.mu.Lock()
		p.links[k] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(3)
		go func() { defer p.wg.Done(); k.fromClient() }()
		go func() { defer p.wg.Done(); k.toServer() }()
		go func() { defer p.wg.Done(); k.toClient() }()
	}
}

type lateLink struct {
	p              *Late
	client, server net.Conn
	ctx            context.Context
	cancel         context.CancelFunc
	queue          chan chunk // client -> server, stamped with arrival

	mu           sync.Mutex
	appends      int    // APPEND commands seen
	commands     int    // commands completed on the way up
	holding      bool   // client bytes go to held, not upstream
	held         []byte // held bytes
	heldComplete int    // length of held that ends at a command boundary
	heldAppends  int    // complete APPENDs in held[:heldComplete]
	fetchTag     []byte // the tag of this link's first FETCH (ReleaseAfterScan)
	name         string // the current command's name
	clientGone   bool
	goneAt       time.Time
	once         sync.Once
}

var sizeRE = regexp.MustCompile(`RFC822\.SIZE ([0-9]+)`)

// fromClient reads the client, follows its commands, and queues or holds
// what it sent. At the client's end it leaves the rest to toServer.
func (k *lateLink) fromClient() {
	defer close(k.queue)
	var s scanner
	buf := make([]byte, 32<<10)
	inAppend, first := false, true
	for {
		n, err := k.client.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			m, ev := s.advance(data)
			seg := append([]byte(nil), data[:m]...)
			data = data[m:]
			if ev != evNone && first {
				// The first line of a command.
				first = false
				inAppend = ev == evLiteral && bytes.Contains(bytes.ToUpper(s.line), []byte(" APPEND "))
				if inAppend {
					k.mu.Lock()
					k.appends++
					if h := k.p.holdAfterN(); h > 0 && k.appends > h {
						k.holding = true
					}
					k.mu.Unlock()
				}
				k.noteFetch(s.line)
				k.name = commandName(s.line)
			}
			if ev == evLiteral && len(seg) > 0 {
				if half, cut := k.p.byeCut(s.literal); cut {
					// Forward the line and half the literal, then BYE.
					k.send(seg)
					take := min(int64(len(data)), half)
					k.send(append([]byte(nil), data[:take]...))
					_, _ = k.client.Write([]byte("* BYE faultproxy: closing mid-literal\r\n"))
					k.dropClient()
					return
				}
			}
			k.mu.Lock()
			if k.holding {
				k.held = append(k.held, seg...)
				if ev == evBoundary {
					k.heldComplete = len(k.held)
					if inAppend {
						k.heldAppends++
					}
				}
				k.mu.Unlock()
			} else {
				k.mu.Unlock()
				k.send(seg)
			}
			if ev == evBoundary {
				inAppend, first = false, true
				if k.countCommand() {
					// What the client had sent by now still arrives.
					k.send(append([]byte(nil), data...))
					k.dropClient()
					return
				}
			}
		}
		if err != nil {
			k.mu.Lock()
			k.clientGone, k.goneAt = true, time.Now()
			hasHeld := k.heldComplete > 0
			k.mu.Unlock()
			if hasHeld {
				k.p.mu.Lock()
				k.p.pending = append(k.p.pending, k)
				k.p.mu.Unlock()
			}
			return
		}
	}
}

func (p *Late) holdAfterN() int { p.mu.Lock(); defer p.mu.Unlock(); return p.holdAfter }

// byeCut decides whether a literal of size n is the one to cut, and
// where.
func (p *Late) byeCut(n int64) (int64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.byeAt == 0 || n <= 1024 {
		return 0, false
	}
	p.literals++
	if p.literals != p.byeAt {
		return 0, false
	}
	p.byeAt = 0
	p.drops++
	return n / 2, true
}

// noteFetch remembers the tag of the link's first FETCH command when a
// ReleaseAfterScan is armed and other links hold commands.
func (k *lateLink) noteFetch(line []byte) {
	f := bytes.Fields(line)
	if len(f) < 2 {
		return
	}
	isFetch := bytes.EqualFold(f[1], []byte("FETCH")) || len(f) > 2 && bytes.EqualFold(f[1], []byte("UID")) && bytes.EqualFold(f[2], []byte("FETCH"))
	if !isFetch {
		return
	}
	k.p.mu.Lock()
	armed := k.p.scanWatch && len(k.p.pending) > 0
	k.p.mu.Unlock()
	k.mu.Lock()
	defer k.mu.Unlock()
	if armed && k.fetchTag == nil {
		k.fetchTag = append([]byte(nil), f[0]...)
	}
}

// countCommand counts a command sent upstream and reports whether
// DropAfter wants the client closed now.
func (k *lateLink) countCommand() bool {
	k.mu.Lock()
	k.commands++
	n := k.commands
	held := k.holding
	k.mu.Unlock()
	k.p.mu.Lock()
	defer k.p.mu.Unlock()
	if !held {
		if k.p.names == nil {
			k.p.names = map[string]int{}
		}
		k.p.names[k.name]++
	}
	if k.p.dropAfter > 0 && n == k.p.dropAfter {
		k.p.drops++
		return true
	}
	return false
}

// send queues b for the server.
func (k *lateLink) send(b []byte) {
	if len(b) == 0 {
		return
	}
	select {
	case k.queue <- chunk{data: b, at: time.Now()}:
	case <-k.ctx.Done():
	}
}

// dropClient closes the client side; the server side goes on with what
// was queued.
func (k *lateLink) dropClient() {
	if tc, ok := k.client.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = k.client.Close()
	k.mu.Lock()
	k.clientGone, k.goneAt = true, time.Now()
	k.mu.Unlock()
}

// toServer writes the queue to the server after the delay. When the queue
// ends (the client is gone) and nothing is held, the server's side is
// closed for writing, so it sees the end of stream after the last byte.
func (k *lateLink) toServer() {
	for c := range k.queue {
		k.p.mu.Lock()
		d, dead := k.p.delay, k.p.deadDelay
		k.p.mu.Unlock()
		wait := time.Until(c.at.Add(d))
		k.mu.Lock()
		if k.clientGone && dead > 0 {
			wait = max(wait, time.Until(k.goneAt.Add(dead)))
		}
		k.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-k.ctx.Done():
				t.Stop()
				return
			}
		}
		if _, err := k.server.Write(c.data); err != nil {
			return
		}
	}
	k.mu.Lock()
	held := k.heldComplete > 0
	k.mu.Unlock()
	if !held {
		if tc, ok := k.server.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}
}

// toClient copies the server's bytes to the client (rewriting sizes for
// LieSize) and, for ReleaseAfterScan, releases held links when this link's
// first FETCH is answered.
func (k *lateLink) toClient() {
	defer k.closeAll()
	var s scanner
	buf := make([]byte, 32<<10)
	for {
		n, err := k.server.Read(buf)
		data := buf[:n]
		var out []byte
		for len(data) > 0 {
			m, ev := s.advance(data)
			seg := data[:m]
			data = data[m:]
			if ev != evNone && !s.truncated {
				line := s.line
				if lie := k.p.lieDelta(); lie != 0 && bytes.Contains(line, []byte("RFC822.SIZE ")) {
					seg = sizeRE.ReplaceAllFunc(seg, func(b []byte) []byte {
						v, _ := strconv.ParseInt(string(sizeRE.FindSubmatch(b)[1]), 10, 64)
						return []byte(fmt.Sprintf("RFC822.SIZE %d", v+lie))
					})
				}
				k.mu.Lock()
				tag := k.fetchTag
				k.mu.Unlock()
				if tag != nil && ev == evBoundary && bytes.HasPrefix(line, append(append([]byte(nil), tag...), ' ')) {
					k.mu.Lock()
					k.fetchTag = nil
					k.mu.Unlock()
					k.p.mu.Lock()
					k.p.scanWatch = false
					k.p.mu.Unlock()
					out = append(out, seg...)
					k.writeClient(out)
					out = nil
					k.p.Release()
					continue
				}
			}
			out = append(out, seg...)
		}
		k.writeClient(out)
		if err != nil {
			return
		}
	}
}

func (p *Late) lieDelta() int64 { p.mu.Lock(); defer p.mu.Unlock(); return p.lie }

func (k *lateLink) writeClient(b []byte) {
	if len(b) == 0 {
		return
	}
	k.mu.Lock()
	gone := k.clientGone
	k.mu.Unlock()
	if !gone {
		_, _ = k.client.Write(b)
	}
}

// deliverHeld sends the held complete commands upstream, then LOGOUT, and
// waits (bounded) for the server to close.
func (k *lateLink) deliverHeld() {
	k.mu.Lock()
	data := append([]byte(nil), k.held[:k.heldComplete]...)
	n := k.heldAppends
	k.mu.Unlock()
	_, _ = k.server.Write(append(data, "zz LOGOUT\r\n"...))
	k.p.mu.Lock()
	k.p.released += n
	k.p.mu.Unlock()
	_ = k.server.SetReadDeadline(time.Now().Add(10 * time.Second))
	select {
	case <-k.ctx.Done(): // toClient saw the server close
	case <-time.After(10 * time.Second):
	}
}

func (k *lateLink) closeAll() {
	k.once.Do(func() {
		k.cancel()
		_ = k.client.Close()
		_ = k.server.Close()
		k.p.mu.Lock()
		delete(k.p.links, k)
		k.p.mu.Unlock()
	})
}
