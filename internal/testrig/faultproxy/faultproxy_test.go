package faultproxy

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeServer is a minimal IMAP-shaped server: it reads commands (lines
// and literals, synchronizing or LITERAL+), records them, and answers
// "FETCH" with a body literal that looks like protocol inside, "BIG n"
// with an n-byte literal, and anything else with OK.
type fakeServer struct {
	Addr string
	body []byte

	mu   sync.Mutex
	cmds []string
}

// trapBody is a message body that contains what a careless scanner would
// take for command or response lines and literal announcements.
var trapBody = []byte("Subject: x\r\n\r\nx1 FETCH 1 BODY[]\r\nx2 OK fake\r\n{5}\r\n* BYE not really\r\n")

func startServer(t *testing.T) *fakeServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{Addr: ln.Addr().String(), body: trapBody}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				s.serve(c)
			}()
		}
	}()
	return s
}

func (s *fakeServer) serve(c net.Conn) {
	r := bufio.NewReader(c)
	w := bufio.NewWriter(c)
	w.WriteString("* OK fake ready\r\n")
	w.Flush()
	for {
		var cmd []byte
		for {
			line, err := r.ReadBytes('\n')
			if err != nil {
				return
			}
			cmd = append(cmd, line...)
			n, ok := literalAt(line)
			if !ok {
				break
			}
			if synchronizing(line) {
				w.WriteString("+ go ahead\r\n")
				w.Flush()
			}
			lit := make([]byte, n)
			if _, err := io.ReadFull(r, lit); err != nil {
				return
			}
			cmd = append(cmd, lit...)
		}
		s.mu.Lock()
		s.cmds = append(s.cmds, string(cmd))
		s.mu.Unlock()
		fields := strings.Fields(string(cmd))
		if len(fields) < 2 {
			continue
		}
		tag := fields[0]
		switch strings.ToUpper(fields[1]) {
		case "FETCH":
			fmt.Fprintf(w, "* 1 FETCH (BODY[] {%d}\r\n%s)\r\n", len(s.body), s.body)
		case "BIG":
			n, _ := strconv.Atoi(fields[2])
			fmt.Fprintf(w, "* BIG {%d}\r\n%s\r\n", n, bytes.Repeat([]byte("b"), n))
		}
		fmt.Fprintf(w, "%s OK done\r\n", tag)
		w.Flush()
	}
}

func (s *fakeServer) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmds...)
}

// client is a raw IMAP client that understands literals in responses.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	cl := &client{t: t, c: c, r: bufio.NewReader(c)}
	if g := cl.response(); !strings.HasPrefix(g, "* OK") {
		t.Fatalf("greeting %q", g)
	}
	return cl
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

// response reads one whole response (a line and any literals it carries).
func (c *client) response() string {
	c.t.Helper()
	var b []byte
	for {
		line, err := c.r.ReadBytes('\n')
		if err != nil {
			c.t.Fatalf("read response: %v (got %q)", err, b)
		}
		b = append(b, line...)
		n, ok := literalAt(line)
		if !ok {
			return string(b)
		}
		lit := make([]byte, n)
		if _, err := io.ReadFull(c.r, lit); err != nil {
			c.t.Fatal(err)
		}
		b = append(b, lit...)
	}
}

// until reads responses up to the tagged one for tag and returns them all.
func (c *client) until(tag string) []string {
	c.t.Helper()
	var rs []string
	for {
		r := c.response()
		rs = append(rs, r)
		if strings.HasPrefix(r, tag+" ") {
			return rs
		}
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestForwardsAndCorrupts(t *testing.T) {
	srv := startServer(t)
	p := Start(t, srv.Addr)
	c := dial(t, p.Addr)
	p.CorruptUpstream([]byte("Hello"), 1)
	c.send("a1 APPEND INBOX {11}\r\n")
	if r := c.response(); !strings.HasPrefix(r, "+ ") {
		t.Fatalf("want a continuation, got %q", r)
	}
	c.send("Hello Hello\r\n")
	c.until("a1")
	rs := c.until2("a2 FETCH 1 BODY[]\r\n", "a2")
	if !strings.Contains(rs[0], string(trapBody)) {
		t.Fatalf("fetch response lost its body: %q", rs)
	}
	if got := srv.commands()[0]; got != "a1 APPEND INBOX {11}\r\nhello Hello\r\n" {
		t.Fatalf("server got %q; want the first Hello corrupted only", got)
	}
	if p.Corruptions() != 1 {
		t.Fatalf("corruptions %d; want 1", p.Corruptions())
	}
}

// until2 sends a command and reads up to its tagged response.
func (c *client) until2(cmd, tag string) []string {
	c.t.Helper()
	c.send(cmd)
	return c.until(tag)
}

func TestReplyUnavailable(t *testing.T) {
	srv := startServer(t)
	p := Start(t, srv.Addr)
	c := dial(t, p.Addr)
	p.ReplyUnavailable([]byte("FETCH"), 2)

	if r := c.until2("a1 FETCH 1 BODY[]\r\n", "a1"); len(r) != 1 || r[0] != "a1"+UnavailableText {
		t.Fatalf("a1: %q", r)
	}
	if r := c.until2("a2 NOOP\r\n", "a2"); r[0] != "a2 OK done\r\n" {
		t.Fatalf("a2: %q", r)
	}
	// Two commands in one write: the first is answered by the proxy, the
	// second goes through.
	c.send("a3 UID FETCH 1:* (FLAGS)\r\na4 NOOP\r\n")
	got := map[string]string{}
	for len(got) < 2 {
		r := c.response()
		got[strings.Fields(r)[0]] = r
	}
	if got["a3"] != "a3"+UnavailableText || got["a4"] != "a4 OK done\r\n" {
		t.Fatalf("pipelined: %q", got)
	}
	// The budget of 2 is spent: FETCH goes through again.
	if r := c.until2("a5 FETCH 1 BODY[]\r\n", "a5"); r[len(r)-1] != "a5 OK done\r\n" {
		t.Fatalf("a5 after the budget: %q", r)
	}
	if p.Unavailable() != 2 {
		t.Fatalf("Unavailable() = %d; want 2", p.Unavailable())
	}
	want := []string{"a2 NOOP\r\n", "a4 NOOP\r\n", "a5 FETCH 1 BODY[]\r\n"}
	if got := srv.commands(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("server got %q; want %q", got, want)
	}
}

func TestReplyUnavailableLooksOnlyAtCommands(t *testing.T) {
	srv := startServer(t)
	p := Start(t, srv.Addr)
	c := dial(t, p.Addr)
	p.ReplyUnavailable([]byte("FETCH"), -1)

	// Literal contents that look like FETCH commands pass untouched, with
	// synchronizing and LITERAL+ literals.
	c.send(fmt.Sprintf("b1 APPEND INBOX {%d}\r\n", len(trapBody)))
	if r := c.response(); !strings.HasPrefix(r, "+ ") {
		t.Fatalf("want a continuation, got %q", r)
	}
	c.send(string(trapBody) + "\r\n")
	if r := c.until("b1"); r[0] != "b1 OK done\r\n" {
		t.Fatalf("b1: %q", r)
	}
	c.send(fmt.Sprintf("b2 APPEND INBOX (\\Seen) {%d+}\r\n%s {%d+}\r\n%s\r\n", len(trapBody), trapBody, 3, "abc"))
	if r := c.until("b2"); r[0] != "b2 OK done\r\n" {
		t.Fatalf("b2: %q", r)
	}
	cmds := srv.commands()
	if len(cmds) != 2 || cmds[0] != fmt.Sprintf("b1 APPEND INBOX {%d}\r\n%s\r\n", len(trapBody), trapBody) ||
		!strings.HasSuffix(cmds[1], "{3+}\r\nabc\r\n") {
		t.Fatalf("server got %q", cmds)
	}
	if p.Unavailable() != 0 {
		t.Fatalf("answered %d commands; want none (FETCH appeared only in literals)", p.Unavailable())
	}
}

func TestReplyUnavailableToCommandsWithLiterals(t *testing.T) {
	srv := startServer(t)
	p := Start(t, srv.Addr)
	c := dial(t, p.Addr)
	p.ReplyUnavailable([]byte("APPEND"), 2)

	// Synchronizing: answered at once; the client then sends no literal.
	c.send("c1 APPEND INBOX {5}\r\n")
	if r := c.response(); r != "c1"+UnavailableText {
		t.Fatalf("c1: %q", r)
	}
	// LITERAL+: the literal and the rest of the command are swallowed.
	c.send("c2 APPEND INBOX {13+}\r\nc9 APPEND x\r\n {2+}\r\nxy\r\nc3 NOOP\r\n")
	if r := c.response(); r != "c2"+UnavailableText {
		t.Fatalf("c2: %q", r)
	}
	if r := c.response(); r != "c3 OK done\r\n" {
		t.Fatalf("c3: %q", r)
	}
	if got := srv.commands(); len(got) != 1 || got[0] != "c3 NOOP\r\n" {
		t.Fatalf("server got %q; want only c3", got)
	}
}

func TestInjectedReplyWaitsForResponseBoundary(t *testing.T) {
	srv := startServer(t)
	srv.body = bytes.Repeat(append([]byte("e2 OK not the end\r\n* 2 EXISTS\r\n"), trapBody...), 4000) // ~400 KB
	p := Start(t, srv.Addr)
	c := dial(t, p.Addr)
	p.SetBandwidth(1 << 20) // the body takes ~400ms to pass
	p.ReplyUnavailable([]byte("e2 FETCH"), 1)
	c.send("e1 FETCH 1 BODY[]\r\n")
	head, err := c.r.ReadString('\n') // the body has started to flow
	if err != nil {
		t.Fatal(err)
	}
	c.send("e2 FETCH 1 BODY[]\r\n") // answered by the proxy while the body flows
	n, ok := literalAt([]byte(head))
	if !ok || n != int64(len(srv.body)) {
		t.Fatalf("fetch header %q", head)
	}
	lit := make([]byte, n)
	if _, err := io.ReadFull(c.r, lit); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(lit, srv.body) {
		i := 0
		for i < len(lit) && lit[i] == srv.body[i] {
			i++
		}
		t.Fatalf("body changed at byte %d of %d: %q", i, n, lit[i:min(len(lit), i+80)])
	}
	rest := []string{c.response(), c.response(), c.response()}
	want := []string{")\r\n", "e1 OK done\r\n", "e2" + UnavailableText}
	if rest[0] != want[0] || rest[1]+rest[2] != want[1]+want[2] && rest[2]+rest[1] != want[1]+want[2] {
		t.Fatalf("after the body: %q; want %q", rest, want)
	}
}

func TestLatency(t *testing.T) {
	srv := startServer(t)
	p := Start(t, srv.Addr)
	c := dial(t, p.Addr)
	p.SetLatency(150 * time.Millisecond)
	start := time.Now()
	c.until2("d1 NOOP\r\n", "d1")
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("round trip %v with 150ms latency", el)
	}
	// Pipelined commands: every reply comes back, in order, each delayed.
	var b strings.Builder
	for i := range 10 {
		fmt.Fprintf(&b, "p%d NOOP\r\n", i)
	}
	start = time.Now()
	c.send(b.String())
	for i := range 10 {
		if r := c.response(); r != fmt.Sprintf("p%d OK done\r\n", i) {
			t.Fatalf("pipelined reply %d: %q", i, r)
		}
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("pipelined round trip %v with 150ms latency", el)
	}
	p.SetLatency(0)
	c.until2("d2 NOOP\r\n", "d2")
}

func TestBandwidth(t *testing.T) {
	srv := startServer(t)
	p := Start(t, srv.Addr)
	c := dial(t, p.Addr)
	p.SetBandwidth(400_000)
	start := time.Now()
	rs := c.until2("f1 BIG 200000\r\n", "f1")
	el := time.Since(start)
	if len(rs[0]) < 200000 {
		t.Fatalf("short response: %d bytes", len(rs[0]))
	}
	// 200 kB at 400 kB/s, less one burst: at least ~0.45s.
	if el < 450*time.Millisecond {
		t.Fatalf("200 kB in %v under a 400 kB/s cap", el)
	}
	p.SetBandwidth(0)
	c.until2("f2 BIG 100000\r\n", "f2")
}

func TestStall(t *testing.T) {
	srv := startServer(t)
	p := Start(t, srv.Addr)
	c := dial(t, p.Addr)
	p.Stall(true)
	c.send("g1 NOOP\r\n")
	waitFor(t, "the proxy to hold g1", func() bool { return p.heldChunks() == 1 })
	if got := srv.commands(); len(got) != 0 {
		t.Fatalf("server got %q during a stall", got)
	}
	if open, _ := p.Conns(); open != 1 {
		t.Fatalf("%d connections open during a stall; want 1", open)
	}
	p.Stall(false)
	if r := c.until("g1"); r[0] != "g1 OK done\r\n" {
		t.Fatalf("g1 after the stall: %q", r)
	}

	// A stall also holds the server's replies.
	c.send("g2 NOOP\r\n")
	waitFor(t, "the server to get g2", func() bool { return len(srv.commands()) == 2 })
	p.Stall(true)
	c.send("g3 NOOP\r\n") // held upstream
	waitFor(t, "the proxy to hold g3", func() bool { return p.heldChunks() >= 1 })
	p.Stall(false)
	c.until("g3")
}

func TestDropAllAndConns(t *testing.T) {
	srv := startServer(t)
	p := Start(t, srv.Addr)
	a, b := dial(t, p.Addr), dial(t, p.Addr)
	if open, peak := p.Conns(); open != 2 || peak != 2 {
		t.Fatalf("conns %d, peak %d; want 2, 2", open, peak)
	}
	p.DropAll()
	for _, c := range []*client{a, b} {
		if _, err := c.r.ReadByte(); err == nil {
			t.Fatal("read from a dropped connection succeeded")
		}
	}
	waitFor(t, "no open connections", func() bool { open, _ := p.Conns(); return open == 0 })
	if _, peak := p.Conns(); peak != 2 {
		t.Fatalf("peak %d after drop; want 2", peak)
	}
	c := dial(t, p.Addr)
	c.until2("h1 NOOP\r\n", "h1")
}

func TestStalledProxyCloses(t *testing.T) {
	srv := startServer(t)
	p := Start(t, srv.Addr)
	c := dial(t, p.Addr)
	p.Stall(true)
	p.SetLatency(time.Hour)
	c.send("i1 NOOP\r\n")
	waitFor(t, "the proxy to hold i1", func() bool { return p.heldChunks() == 1 })
	done := make(chan struct{})
	go func() { p.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs on a stalled connection")
	}
}
