package imapconn

import (
	"bufio"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeConn is one connection of a hand-written loopback IMAP server: the
// tests script exactly what the server says, including what real servers
// cannot be made to say.
type fakeConn struct {
	net.Conn
	br *bufio.Reader
}

// line reads one client line without its CRLF ("" at EOF).
func (c *fakeConn) line() string {
	l, err := c.br.ReadString('\n')
	if err != nil {
		return ""
	}
	return strings.TrimRight(l, "\r\n")
}

func (c *fakeConn) send(lines ...string) {
	for _, l := range lines {
		_, _ = c.Write([]byte(l + "\r\n"))
	}
}

// responder answers one command; it returns false to stop serving.
type responder func(c *fakeConn, tag, args string) bool

// serve answers commands until the client goes or a responder says stop.
// CAPABILITY, LOGIN, NOOP and LOGOUT have default answers.
func (c *fakeConn) serve(answers map[string]responder) {
	for {
		l := c.line()
		if l == "" {
			return
		}
		tag, rest, _ := strings.Cut(l, " ")
		name, args, _ := strings.Cut(rest, " ")
		name = strings.ToUpper(name)
		if name == "UID" {
			sub, more, _ := strings.Cut(args, " ")
			name, args = "UID "+strings.ToUpper(sub), more
		}
		if r, ok := answers[name]; ok {
			if !r(c, tag, args) {
				return
			}
			continue
		}
		switch name {
		case "CAPABILITY":
			c.send("* CAPABILITY IMAP4rev1 AUTH=PLAIN", tag+" OK done")
		case "LOGOUT":
			c.send("* BYE bye", tag+" OK done")
			return
		default:
			c.send(tag + " OK done")
		}
	}
}

const fakeGreeting = "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake ready"

// startFake runs handle for every connection to a loopback listener and
// returns a Config for it (no TLS unless the test changes it).
func startFake(t *testing.T, handle func(c *fakeConn)) Config {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				handle(&fakeConn{Conn: nc, br: bufio.NewReader(nc)})
			}()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	return Config{
		Side:     "source",
		Endpoint: Endpoint{Host: "127.0.0.1", Port: port, TLS: TLSNone, Mailbox: "alice", Login: "alice"},
		Password: "pw",
	}
}

// within runs f and fails the test if it takes longer than limit; it
// returns f's error and how long it took.
func within(t *testing.T, limit time.Duration, f func() error) (error, time.Duration) {
	t.Helper()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err, time.Since(start)
	case <-time.After(limit):
		t.Fatalf("still blocked after %s", limit)
		return nil, 0
	}
}

func literal(s string) string { return "{" + strconv.Itoa(len(s)) + "}" }
