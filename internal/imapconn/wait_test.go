package imapconn

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// A server that logs in and then never answers a SELECT: the command fails
// within the idle timeout, and the error names the side and says so.
func TestSilentAfterLogin(t *testing.T) {
	cfg := startFake(t, func(c *fakeConn) {
		c.send(fakeGreeting)
		c.serve(map[string]responder{
			"EXAMINE": func(c *fakeConn, tag, args string) bool { return true }, // never answered
		})
	})
	cfg.IdleTimeout = 300 * time.Millisecond
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err, took := within(t, 3*time.Second, func() error {
		_, err := c.client.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "source: 127.0.0.1:") || !strings.Contains(err.Error(), "timed out after 300ms without progress") {
		t.Fatalf("select on a silent server: %v", err)
	}
	if took < 250*time.Millisecond {
		t.Errorf("timed out after %s, before the idle timeout", took)
	}
	if Decide(err).Action != Reconnect || !IsConnectionLost(err) {
		t.Errorf("timeout classified %v, connection lost %v", Decide(err).Action, IsConnectionLost(err))
	}
}

// A connection with nothing outstanding is never closed by the watchdog,
// however long it sits.
func TestIdleConnectionKept(t *testing.T) {
	cfg := startFake(t, func(c *fakeConn) {
		c.send(fakeGreeting)
		c.serve(nil)
	})
	// 2 s: the NOOP at the end must be answered within it on a loaded
	// machine (1 s failed under a full test run with other suites).
	cfg.IdleTimeout = 2 * time.Second
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Wait on the watchdog's own clock: several idle timeouts pass.
	deadline := time.NewTimer(3 * cfg.IdleTimeout)
	select {
	case <-c.client.Closed():
		t.Fatal("idle connection closed")
	case <-deadline.C:
	}
	if err := c.client.Noop().Wait(); err != nil {
		t.Fatalf("noop after idling: %v", err)
	}
}

// A server that accepts STARTTLS and then never answers the TLS handshake:
// Dial returns within the idle timeout, and at once when ctx is cancelled.
func TestStartTLSHandshakeStalls(t *testing.T) {
	cfg := startFake(t, func(c *fakeConn) {
		c.send(fakeGreeting)
		tag, _, _ := strings.Cut(c.line(), " ")
		c.send(tag + " OK begin TLS")
		_, _ = io.Copy(io.Discard, c) // the ClientHello, never answered
	})
	cfg.Endpoint.TLS = TLSStartTLS
	cfg.IdleTimeout = 300 * time.Millisecond
	err, _ := within(t, 3*time.Second, func() error {
		_, err := Dial(context.Background(), cfg)
		return err
	})
	if err == nil || !strings.HasPrefix(err.Error(), "source: ") || !strings.Contains(err.Error(), "timed out after 300ms without progress") {
		t.Fatalf("stalled handshake: %v", err)
	}

	cfg.IdleTimeout = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	err, took := within(t, 2*time.Second, func() error {
		_, err := Dial(ctx, cfg)
		return err
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled during the handshake: %v", err)
	}
	if took > time.Second {
		t.Errorf("cancel took %s", took)
	}
}

// Cancelling ctx ends a Dial blocked on a greeting that never comes.
func TestDialCanceledBeforeGreeting(t *testing.T) {
	for _, mode := range []TLSMode{TLSNone, TLSStartTLS, TLSImplicit} {
		cfg := startFake(t, func(c *fakeConn) { _, _ = io.Copy(io.Discard, c) })
		cfg.Endpoint.TLS = mode
		cfg.IdleTimeout = time.Minute
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		err, _ := within(t, 2*time.Second, func() error {
			_, err := Dial(ctx, cfg)
			return err
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%v: %v", mode, err)
		}
	}
}

// A literal that trickles in more slowly than the IMAP library's own rule
// for a response line, but steadily, is never cut: only a stop of all
// progress is. (Here the idle timeout is 300ms and the literal takes 1.5s,
// one small piece every 100ms.)
func TestTrickledLiteralNotCut(t *testing.T) {
	body := strings.Repeat("0123456789", 15) + "\r\n"
	cfg := startFake(t, func(c *fakeConn) {
		c.send(fakeGreeting)
		c.serve(map[string]responder{
			"EXAMINE": func(c *fakeConn, tag, _ string) bool {
				c.send("* 1 EXISTS", "* FLAGS ()", tag+" OK [READ-ONLY] done")
				return true
			},
			"UID FETCH": func(c *fakeConn, tag, _ string) bool {
				_, _ = io.WriteString(c, "* 1 FETCH (UID 1 BODY[] "+literal(body)+"\r\n")
				for i := 0; i < len(body); i += 10 {
					time.Sleep(100 * time.Millisecond) // the server's pace, not a wait for the client
					_, _ = io.WriteString(c, body[i:min(i+10, len(body))])
				}
				c.send(")", tag+" OK done")
				return true
			},
		})
	})
	cfg.IdleTimeout = 600 * time.Millisecond
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.client.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait(); err != nil {
		t.Fatal(err)
	}
	got, took := fetchBodies(t, c, 5*time.Second)
	if len(got) != 1 || got[0] != body {
		t.Fatalf("bodies %q, want one of %d bytes", got, len(body))
	}
	if took < 1200*time.Millisecond {
		t.Fatalf("the trickle took %s: it did not outlast the idle timeout", took)
	}
}

// fetchBodies fetches BODY[] of every message and returns the bodies.
func fetchBodies(t *testing.T, c *Conn, limit time.Duration) ([]string, time.Duration) {
	t.Helper()
	var bodies []string
	err, took := within(t, limit, func() error {
		fetch := c.client.Fetch(imap.UIDSetNum(1, 2), &imap.FetchOptions{UID: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}})
		defer fetch.Close()
		for {
			msg := fetch.Next()
			if msg == nil {
				return fetch.Close()
			}
			for {
				item := msg.Next()
				if item == nil {
					break
				}
				if b, ok := item.(FetchItemBody); ok {
					data, err := io.ReadAll(b.Literal)
					if err != nil {
						return err
					}
					bodies = append(bodies, string(data))
				}
			}
		}
	})
	if err != nil {
		t.Fatalf("fetch: %v", err)
	}
	return bodies, took
}

// recordingConn counts the deadlines set on it.
type recordingConn struct {
	net.Conn
	deadlines atomic.Int32
}

func (r *recordingConn) SetDeadline(t time.Time) error {
	r.deadlines.Add(1)
	return r.Conn.SetDeadline(t)
}

func (r *recordingConn) SetReadDeadline(t time.Time) error {
	r.deadlines.Add(1)
	return r.Conn.SetReadDeadline(t)
}

func (r *recordingConn) SetWriteDeadline(t time.Time) error {
	r.deadlines.Add(1)
	return r.Conn.SetWriteDeadline(t)
}

// The IMAP library sets its own deadlines (30s per response, 5 min per
// literal) on the connection it is given; none of them reaches the socket,
// so a throttled literal that keeps moving is not cut at 5 minutes.
func TestLibraryDeadlinesNeutralised(t *testing.T) {
	cfg := startFake(t, func(c *fakeConn) {
		c.send(fakeGreeting)
		c.serve(map[string]responder{
			"EXAMINE": func(c *fakeConn, tag, _ string) bool {
				c.send("* 1 EXISTS", tag+" OK [READ-ONLY] done")
				return true
			},
			"UID FETCH": func(c *fakeConn, tag, _ string) bool {
				c.send("* 1 FETCH (UID 1 BODY[] {5}", "hello)", tag+" OK done")
				return true
			},
		})
	})
	raw, err := net.Dial("tcp", cfg.Endpoint.Addr())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingConn{Conn: raw}
	wc := newWatchConn(rec, rec, "source", cfg.Endpoint.Addr(), time.Minute, nil)
	client := imapclient.New(wc, nil)
	c := &Conn{client: client, watch: wc, stop: func() bool { return true }}
	defer c.Close()
	if err := client.Login("alice", "pw").Wait(); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if got, _ := fetchBodies(t, c, 5*time.Second); len(got) != 1 || got[0] != "hello" {
		t.Fatalf("bodies %q", got)
	}
	if n := rec.deadlines.Load(); n != 0 {
		t.Fatalf("%d deadlines of the IMAP library reached the socket", n)
	}
	// And a deadline in the past set through the wrapper changes nothing.
	_ = wc.SetReadDeadline(time.Now().Add(-time.Second))
	if err := client.Noop().Wait(); err != nil {
		t.Fatalf("noop after a past deadline: %v", err)
	}
}

// A server that stops reading while a literal goes out (its receive
// buffer full) is a stall too: the blocked write is cut.
func TestBlockedWriteCut(t *testing.T) {
	stop := make(chan struct{})
	cfg := startFake(t, func(c *fakeConn) {
		c.send(fakeGreeting)
		c.serve(map[string]responder{
			"APPEND": func(c *fakeConn, tag, _ string) bool {
				c.send("+ go ahead")
				<-stop // never reads again
				return false
			},
		})
	})
	t.Cleanup(func() { close(stop) })
	cfg.IdleTimeout = 300 * time.Millisecond
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := bytes.Repeat([]byte("x"), 64<<20)
	err, _ = within(t, 5*time.Second, func() error {
		w := c.client.Append("INBOX", int64(len(body)), nil)
		if _, err := w.Write(body); err != nil {
			_ = w.Close()
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		_, err := w.Wait()
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "timed out after 300ms without progress") {
		t.Fatalf("append to a server that stopped reading: %v", err)
	}
}
