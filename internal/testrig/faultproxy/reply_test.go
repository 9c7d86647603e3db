package faultproxy

import "testing"

// ReplyText answers with the text given, plain commands and those with
// synchronizing or LITERAL+ literals alike, and ReplyUnavailable brings
// the [UNAVAILABLE] text back.
func TestReplyText(t *testing.T) {
	srv := startServer(t)
	p := Start(t, srv.Addr)
	c := dial(t, p.Addr)
	const busy = "NO Server busy, try again in 1 seconds"
	p.ReplyText([]byte("FETCH"), 1, busy)
	if r := c.until2("d1 FETCH 1 BODY[]\r\n", "d1"); len(r) != 1 || r[0] != "d1 "+busy+"\r\n" {
		t.Fatalf("d1: %q", r)
	}
	if r := c.until2("d2 FETCH 1 BODY[]\r\n", "d2"); r[len(r)-1] != "d2 OK done\r\n" {
		t.Fatalf("d2 after the budget: %q", r)
	}

	p.ReplyText([]byte("APPEND"), 2, "  "+busy+"\r\n")
	c.send("d3 APPEND INBOX {5}\r\n")
	if r := c.response(); r != "d3 "+busy+"\r\n" {
		t.Fatalf("d3 (synchronizing literal): %q", r)
	}
	c.send("d4 APPEND INBOX {3+}\r\nabc\r\nd5 NOOP\r\n")
	if r := c.response(); r != "d4 "+busy+"\r\n" {
		t.Fatalf("d4 (LITERAL+): %q", r)
	}
	if r := c.response(); r != "d5 OK done\r\n" {
		t.Fatalf("d5: %q", r)
	}

	p.ReplyUnavailable([]byte("NOOP"), 1)
	if r := c.until2("d6 NOOP\r\n", "d6"); len(r) != 1 || r[0] != "d6"+UnavailableText {
		t.Fatalf("d6: %q", r)
	}
	if n := p.Unavailable(); n != 4 {
		t.Fatalf("Unavailable() = %d; want 4", n)
	}
	if got := srv.commands(); len(got) != 2 || got[0] != "d2 FETCH 1 BODY[]\r\n" || got[1] != "d5 NOOP\r\n" {
		t.Fatalf("server got %q; want d2 and d5 only", got)
	}
}
