package faultproxy

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailferry/internal/imapconn"
	"mailferry/internal/testrig/dovecot"
)

// The proxy in front of real Dovecot: commands with literals pass intact,
// FETCH is answered with [UNAVAILABLE] (with a 1s hint the IMAP layer
// reads), latency delays the real
// replies, and DropAll resets the session.
func TestDovecotBehindProxy(t *testing.T) {
	dovecot.Require(t)
	srv := dovecot.Start(t, dovecot.Options{Name: "faultproxy"})
	p := Start(t, srv.Addr)
	c := dial(t, p.Addr)
	if r := c.until2(fmt.Sprintf("l1 LOGIN alice %s\r\n", strconv.Quote(srv.Users["alice"])), "l1"); !strings.HasPrefix(r[len(r)-1], "l1 OK") {
		t.Fatalf("login: %q", r)
	}
	p.ReplyUnavailable([]byte("FETCH"), 1)
	msg := "From: a@example.org\r\nSubject: trap\r\n\r\nf9 FETCH 1 BODY[]\r\n{3}\r\n"
	c.send(fmt.Sprintf("a1 APPEND INBOX {%d}\r\n", len(msg)))
	if r := c.response(); !strings.HasPrefix(r, "+") {
		t.Fatalf("append: want a continuation, got %q", r)
	}
	c.send(msg + "\r\n")
	if r := c.until("a1"); !strings.HasPrefix(r[len(r)-1], "a1 OK") {
		t.Fatalf("append: %q", r)
	}
	if r := c.until2("s1 SELECT INBOX\r\n", "s1"); !strings.HasPrefix(r[len(r)-1], "s1 OK") {
		t.Fatalf("select: %q", r)
	}

	r := c.until2("f1 FETCH 1 BODY.PEEK[]\r\n", "f1")
	if len(r) != 1 || r[0] != "f1"+UnavailableText {
		t.Fatalf("f1: %q", r)
	}
	if d, ok := imapconn.ParseHint(r[0]); !ok || d != time.Second || !strings.Contains(r[0], " NO [UNAVAILABLE] ") {
		t.Fatalf("the proxy's reply %q asks for %v, want NO [UNAVAILABLE] and 1s", r[0], d)
	}

	p.SetLatency(100 * time.Millisecond)
	start := time.Now()
	r = c.until2("f2 FETCH 1 BODY.PEEK[]\r\n", "f2")
	if el := time.Since(start); el < 100*time.Millisecond {
		t.Fatalf("fetch round trip %v with 100ms latency", el)
	}
	if !strings.Contains(strings.Join(r, ""), msg) || !strings.HasPrefix(r[len(r)-1], "f2 OK") {
		t.Fatalf("f2: %q", r)
	}
	p.SetLatency(0)

	p.DropAll()
	if _, err := c.r.ReadByte(); err == nil {
		t.Fatal("read from a dropped connection succeeded")
	}
	c2 := dial(t, p.Addr)
	c2.until2("n1 NOOP\r\n", "n1")
}
