package faultproxy

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// The counter counts body FETCH commands only (not other FETCHes, not
// text inside an APPEND's literal), and while holding keeps them, and
// what follows on their connection, from the server until Release.
func TestCounterCountsAndHolds(t *testing.T) {
	srv := startServer(t)
	p := StartCounter(t, srv.Addr, IsBodyFetch)
	c := dial(t, p.Addr)
	c.until2("a1 UID FETCH 1:* (UID FLAGS RFC822.SIZE)\r\n", "a1")
	lit := "x9 UID FETCH 1 BODY.PEEK[]\r\n"
	c.send(fmt.Sprintf("a2 APPEND INBOX {%d}\r\n", len(lit)))
	if r := c.response(); !strings.HasPrefix(r, "+ ") {
		t.Fatalf("want a continuation, got %q", r)
	}
	c.send(lit + "\r\n")
	c.until("a2")
	c.until2("a3 UID FETCH 1:4 (UID BODY.PEEK[])\r\n", "a3")
	if n := p.Matched(); n != 1 {
		t.Fatalf("matched %d commands, want 1", n)
	}

	p.Hold()
	c.send("a4 FETCH 1 BODY[]\r\na5 NOOP\r\n")
	waitFor(t, "the held FETCH", func() bool { return p.Held() == 1 })
	time.Sleep(50 * time.Millisecond)
	for _, cmd := range srv.commands() {
		if strings.HasPrefix(cmd, "a4 ") || strings.HasPrefix(cmd, "a5 ") {
			t.Fatalf("the server got %q while held", cmd)
		}
	}
	p.Release()
	c.until("a4")
	c.until("a5")
	if n, h := p.Matched(), p.Held(); n != 2 || h != 0 {
		t.Fatalf("after release: matched %d, held %d", n, h)
	}
}
