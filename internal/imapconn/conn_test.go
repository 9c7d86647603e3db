package imapconn

import (
	"bytes"
	"context"
	"net"
	"strings"
	"testing"

	"mailferry/internal/testrig/memserver"
)

func memConfig(t *testing.T) (*memserver.Server, Config) {
	t.Helper()
	s, err := memserver.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.AddUser("alice", "pw-alice")
	ep, err := ParseEndpoint("imap://alice@" + s.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ep.TLS = TLSNone // the in-memory server offers no STARTTLS
	return s, Config{Side: "source", Endpoint: ep, Password: "pw-alice"}
}

// Without TLS (TLSNone), credentials go in clear text only to loopback or
// when the operator says --allow-plaintext.
func TestPlaintextRefusedToRemote(t *testing.T) {
	_, cfg := memConfig(t)
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("loopback without TLS: %v", err)
	}
	c.Logout()

	isLoopbackAddr = func(net.Addr) bool { return false }
	t.Cleanup(func() { isLoopbackAddr = isLoopback })
	var trace bytes.Buffer
	cfg.Debug = &trace
	_, err = Dial(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "refusing to send credentials in clear text") || !strings.HasPrefix(err.Error(), "source:") {
		t.Fatalf("remote without TLS: err = %v", err)
	}
	if strings.Contains(trace.String(), "LOGIN") {
		t.Fatalf("credentials were sent before refusing:\n%s", trace.String())
	}
	cfg.AllowPlaintext = true
	c, err = Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("remote without TLS, allowed: %v", err)
	}
	c.Logout()
}

func TestDialErrorsNameTheSide(t *testing.T) {
	_, cfg := memConfig(t)
	cfg.Password = "wrong"
	_, err := Dial(context.Background(), cfg)
	if err == nil || !strings.HasPrefix(err.Error(), `source: login as "alice"`) || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong password: %v", err)
	}
	if d := Decide(err); d.Action != FailMailbox || d.Side != Source {
		t.Errorf("wrong password decided %+v", d)
	}

	cfg.Endpoint.Admin = "admin"
	cfg.Side = "target"
	_, err = Dial(context.Background(), cfg)
	if err == nil || !strings.HasPrefix(err.Error(), `target: login as "admin for alice"`) {
		t.Fatalf("admin login refused: %v", err)
	}
}

func TestDialCanceled(t *testing.T) {
	_, cfg := memConfig(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Dial(ctx, cfg); err == nil || Decide(err).Action != Stop {
		t.Fatalf("canceled dial: %v (%+v)", err, Decide(err))
	}
}

// imap:// requires STARTTLS: a server that refuses it ends the Dial with an
// error naming the side and what to do, no credential is sent, and Decide
// fails the mailbox instead of retrying.
func TestStartTLSRequired(t *testing.T) {
	_, cfg := memConfig(t)
	cfg.Endpoint.TLS = TLSStartTLS
	var trace bytes.Buffer
	cfg.Debug = &trace
	cfg.NoStartTLSAdvice = "say tls: none for cluster b"
	_, err := Dial(context.Background(), cfg)
	if err == nil || !strings.HasPrefix(err.Error(), "source: "+cfg.Endpoint.Addr()+" offers no STARTTLS") || !strings.Contains(err.Error(), "say tls: none for cluster b") {
		t.Fatalf("err = %v", err)
	}
	if strings.Contains(trace.String(), "LOGIN") || strings.Contains(trace.String(), "AUTHENTICATE") {
		t.Fatalf("credentials were sent:\n%s", trace.String())
	}
	if d := Decide(err); d.Action != FailMailbox || d.Side != Source {
		t.Fatalf("Decide = %+v, want FailMailbox on the source", d)
	}
}
