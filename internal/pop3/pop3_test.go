package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// fake is a small POP3 server: enough of RFC 1939 (with CAPA, STLS and
// AUTH PLAIN) to exercise the client, recording every command it got.
type fake struct {
	t        *testing.T
	ln       net.Listener
	users    map[string]string // USER -> PASS
	admin    string            // AUTH PLAIN authcid allowed to act for any user
	adminPW  string
	msgs     []Message
	tls      *tls.Config // offer STLS when set
	noUIDL   bool
	hangOn   string // stop answering (keep the connection open) at this command
	extraTop int    // UIDL lists this many more lines than STAT says

	mu   sync.Mutex
	cmds []string
	wg   sync.WaitGroup
}

func newFake(t *testing.T, f *fake) *fake {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.t, f.ln = t, ln
	t.Cleanup(func() { ln.Close(); f.wg.Wait() })
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				f.serve(c)
			}()
		}
	}()
	return f
}

func (f *fake) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *fake) got() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.cmds...)
}

func (f *fake) serve(c net.Conn) {
	var conn net.Conn = c
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	w := func(s string) { _, _ = fmt.Fprintf(conn, "%s\r\n", s) }
	w("+OK fake POP3 ready")
	user, authed := "", false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		f.mu.Lock()
		f.cmds = append(f.cmds, line)
		f.mu.Unlock()
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		if f.hangOn != "" && verb == f.hangOn {
			_, _ = io_Copy(br) // read until the client goes away
			return
		}
		switch {
		case verb == "CAPA":
			w("+OK")
			w("USER")
			w("UIDL")
			w("SASL PLAIN")
			if f.tls != nil {
				w("STLS")
			}
			w(".")
		case verb == "STLS" && f.tls != nil:
			w("+OK begin TLS")
			tc := tls.Server(c, f.tls)
			if err := tc.Handshake(); err != nil {
				return
			}
			conn, br = tc, bufio.NewReader(tc)
		case verb == "STLS":
			w("-ERR no TLS here")
		case verb == "USER":
			user = arg
			w("+OK")
		case verb == "PASS":
			if pw, ok := f.users[user]; ok && pw == arg && user != "" {
				authed = true
				w("+OK logged in")
			} else {
				w("-ERR [AUTH] Authentication failed.")
			}
		case verb == "AUTH":
			mech, ir, _ := strings.Cut(arg, " ")
			raw, err := base64.StdEncoding.DecodeString(ir)
			parts := strings.Split(string(raw), "\x00")
			if strings.ToUpper(mech) != "PLAIN" || err != nil || len(parts) != 3 {
				w("-ERR bad AUTH")
				continue
			}
			_, okUser := f.users[parts[0]]
			if parts[1] == f.admin && parts[2] == f.adminPW && okUser {
				authed = true
				w("+OK logged in")
			} else {
				w("-ERR [AUTH] Authentication failed.")
			}
		case !authed && verb != "QUIT":
			w("-ERR not logged in")
		case verb == "STAT":
			var n int64
			for _, m := range f.msgs {
				n += m.Size
			}
			w(fmt.Sprintf("+OK %d %d", len(f.msgs), n))
		case verb == "UIDL" && f.noUIDL:
			w("-ERR Unknown command: UIDL")
		case verb == "UIDL":
			w("+OK")
			for i, m := range f.msgs {
				w(fmt.Sprintf("%d %s", i+1, m.UIDL))
			}
			for i := range f.extraTop {
				w(fmt.Sprintf("%d extra%d", len(f.msgs)+i+1, i))
			}
			w(".")
		case verb == "LIST":
			w("+OK")
			for i, m := range f.msgs {
				w(fmt.Sprintf("%d %d", i+1, m.Size))
			}
			w(".")
		case verb == "QUIT":
			w("+OK bye")
			return
		default:
			w("-ERR unknown command")
		}
	}
}

func io_Copy(br *bufio.Reader) (int64, error) {
	var n int64
	buf := make([]byte, 512)
	for {
		k, err := br.Read(buf)
		n += int64(k)
		if err != nil {
			return n, err
		}
	}
}

var threeMessages = []Message{{UIDL: "00000001", Size: 120}, {UIDL: ".dotted", Size: 3400}, {UIDL: "00000003", Size: 56}}

func plainConfig(f *fake) Config {
	return Config{Side: "source", Host: "127.0.0.1", Port: f.port(), TLS: TLSNone, Login: "alice", Password: "s3cret-pw",
		IOTimeout: 5 * time.Second, DialTimeout: 5 * time.Second}
}

// TestReadUserPass: USER/PASS, then STAT, UIDL, LIST and QUIT; the
// listing is in message order with dot-unstuffed UIDLs, and the trace
// never shows the password.
func TestReadUserPass(t *testing.T) {
	f := newFake(t, &fake{users: map[string]string{"alice": "s3cret-pw"}, msgs: threeMessages})
	var trace bytes.Buffer
	cfg := plainConfig(f)
	cfg.Debug = &trace
	l, err := Read(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []Message{{1, "00000001", 120}, {2, ".dotted", 3400}, {3, "00000003", 56}}
	if fmt.Sprint(l.Messages) != fmt.Sprint(want) || l.Octets != 3576 {
		t.Fatalf("listing %+v octets %d, want %+v", l.Messages, l.Octets, want)
	}
	cmds := strings.Join(f.got(), "|")
	if cmds != "CAPA|USER alice|PASS s3cret-pw|STAT|UIDL|LIST|QUIT" {
		t.Fatalf("commands %s", cmds)
	}
	for _, c := range f.got() {
		for _, bad := range []string{"RETR", "TOP", "DELE"} {
			if strings.HasPrefix(c, bad) {
				t.Fatalf("sent %s: a POP3 check must change nothing", c)
			}
		}
	}
	if strings.Contains(trace.String(), "s3cret") || !strings.Contains(trace.String(), "PASS xxxxx") {
		t.Fatalf("trace:\n%s", trace.String())
	}
}

func TestReadEmpty(t *testing.T) {
	f := newFake(t, &fake{users: map[string]string{"alice": "s3cret-pw"}})
	l, err := Read(context.Background(), plainConfig(f))
	if err != nil || len(l.Messages) != 0 {
		t.Fatalf("empty maildrop: %+v, %v", l, err)
	}
	if cmds := strings.Join(f.got(), "|"); cmds != "CAPA|USER alice|PASS s3cret-pw|STAT|QUIT" {
		t.Fatalf("commands %s", cmds)
	}
}

// TestAuthPlainAdmin: an admin acting for a mailbox logs in with AUTH
// PLAIN (authzid the mailbox), and the trace masks the response.
func TestAuthPlainAdmin(t *testing.T) {
	f := newFake(t, &fake{users: map[string]string{"alice": "x"}, admin: "ferry", adminPW: "admin-s3cret", msgs: threeMessages[:1]})
	var trace bytes.Buffer
	cfg := Config{Side: "target", Host: "127.0.0.1", Port: f.port(), TLS: TLSNone, Admin: "ferry", Mailbox: "alice",
		Password: "admin-s3cret", Debug: &trace}
	l, err := Read(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Messages) != 1 {
		t.Fatalf("listing %+v", l.Messages)
	}
	ir := base64.StdEncoding.EncodeToString([]byte("alice\x00ferry\x00admin-s3cret"))
	if got := f.got(); len(got) < 2 || got[1] != "AUTH PLAIN "+ir {
		t.Fatalf("commands %q", got)
	}
	if strings.Contains(trace.String(), ir) || strings.Contains(trace.String(), "admin-s3cret") {
		t.Fatalf("trace shows the secret:\n%s", trace.String())
	}
}

// TestLoginRefused: a wrong password is an AuthError naming the login and
// the server, never the password.
func TestLoginRefused(t *testing.T) {
	f := newFake(t, &fake{users: map[string]string{"alice": "right"}})
	cfg := plainConfig(f)
	cfg.Password = "wrong-s3cret"
	_, err := Read(context.Background(), cfg)
	var ae *AuthError
	if !errors.As(err, &ae) {
		t.Fatalf("want *AuthError, got %T %v", err, err)
	}
	if msg := err.Error(); strings.Contains(msg, "s3cret") || !strings.Contains(msg, "alice") || !strings.Contains(msg, "Authentication failed") {
		t.Fatalf("error %q", msg)
	}
}

// TestNoUIDL: a server without UIDL is an error: nothing to compare.
func TestNoUIDL(t *testing.T) {
	f := newFake(t, &fake{users: map[string]string{"alice": "s3cret-pw"}, msgs: threeMessages, noUIDL: true})
	_, err := Read(context.Background(), plainConfig(f))
	var se *ServerError
	if !errors.As(err, &se) || se.Cmd != "UIDL" {
		t.Fatalf("want a ServerError of UIDL, got %v", err)
	}
}

// TestTooManyLines: an answer longer than STAT said is refused, not
// taken in without bound.
func TestTooManyLines(t *testing.T) {
	f := newFake(t, &fake{users: map[string]string{"alice": "s3cret-pw"}, msgs: threeMessages, extraTop: 5})
	_, err := Read(context.Background(), plainConfig(f))
	if err == nil || !strings.Contains(err.Error(), "more than 3 lines") {
		t.Fatalf("want a protocol error, got %v", err)
	}
}

// TestIOTimeout: a server that stops answering is given up after the IO
// timeout, with an error naming side and server.
func TestIOTimeout(t *testing.T) {
	f := newFake(t, &fake{users: map[string]string{"alice": "s3cret-pw"}, msgs: threeMessages, hangOn: "UIDL"})
	cfg := plainConfig(f)
	cfg.IOTimeout = 200 * time.Millisecond
	t0 := time.Now()
	_, err := Read(context.Background(), cfg)
	var te *TimeoutError
	if !errors.As(err, &te) || te.Side != "source" {
		t.Fatalf("want a TimeoutError, got %v", err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
}

// TestContextCancel: cancelling the context ends a command blocked on the
// server at once.
func TestContextCancel(t *testing.T) {
	f := newFake(t, &fake{users: map[string]string{"alice": "s3cret-pw"}, msgs: threeMessages, hangOn: "STAT"})
	cfg := plainConfig(f)
	cfg.IOTimeout = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(150*time.Millisecond, cancel)
	t0 := time.Now()
	_, err := Read(ctx, cfg)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("want context.Canceled, got %v", err)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("took %v", d)
	}
}

// TestDialTimeout: a login that does not finish within the dial timeout
// is given up.
func TestDialTimeout(t *testing.T) {
	f := newFake(t, &fake{users: map[string]string{"alice": "s3cret-pw"}, hangOn: "PASS"})
	cfg := plainConfig(f)
	cfg.IOTimeout, cfg.DialTimeout = time.Minute, 200*time.Millisecond
	_, err := Read(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "timed out after 200ms") {
		t.Fatalf("want a dial timeout, got %v", err)
	}
}

// TestSTLS: pop3:// upgrades with STLS and checks the certificate
// against the CA file; a server refusing STLS is a SetupError, never a
// fall back to clear text; an untrusted certificate is a SetupError with
// the advice.
func TestSTLS(t *testing.T) {
	caFile, serverTLS := testCerts(t)
	f := newFake(t, &fake{users: map[string]string{"alice": "s3cret-pw"}, msgs: threeMessages, tls: serverTLS})
	cfg := plainConfig(f)
	cfg.TLS, cfg.CAFile = TLSStartTLS, caFile
	l, err := Read(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Messages) != 3 {
		t.Fatalf("listing %+v", l.Messages)
	}
	if got := f.got(); len(got) < 3 || got[1] != "STLS" || got[2] != "CAPA" {
		t.Fatalf("commands %q: want CAPA, STLS, CAPA before the login", got)
	}

	t.Run("untrusted", func(t *testing.T) {
		cfg := cfg
		cfg.CAFile, cfg.TrustAdvice = "", "cluster a: trust its CA"
		_, err := Read(context.Background(), cfg)
		var se *SetupError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "cluster a: trust its CA") {
			t.Fatalf("want a SetupError with the advice, got %v", err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		f := newFake(t, &fake{users: map[string]string{"alice": "s3cret-pw"}})
		cfg := plainConfig(f)
		cfg.TLS, cfg.NoSTLSAdvice = TLSStartTLS, "use pop3s://"
		_, err := Read(context.Background(), cfg)
		var se *SetupError
		if !errors.As(err, &se) || !strings.Contains(err.Error(), "offers no STLS") {
			t.Fatalf("want a SetupError, got %v", err)
		}
		for _, c := range f.got() {
			if strings.HasPrefix(c, "USER") || strings.HasPrefix(c, "PASS") {
				t.Fatalf("sent %q after STLS was refused", c)
			}
		}
	})
}

func TestCompare(t *testing.T) {
	l := func(uidls ...string) *Listing {
		out := &Listing{}
		for i, u := range uidls {
			out.Messages = append(out.Messages, Message{Num: i + 1, UIDL: u, Size: int64(100 + i)})
		}
		return out
	}
	tests := []struct {
		name     string
		src, dst *Listing
		want     Comparison
	}{
		{"same", l("a", "b", "c"), l("a", "b", "c"), Comparison{SourceMessages: 3, TargetMessages: 3, Match: true, OrderMatch: true}},
		{"pending", l("a", "b", "c"), l("a", "b"), Comparison{SourceMessages: 3, TargetMessages: 2, Match: true, OrderMatch: true, Pending: 1}},
		{"all new", l("a", "b"), l("x", "y"), Comparison{SourceMessages: 2, TargetMessages: 2, OrderMatch: true, Refetch: 2,
			FirstDifference: `message 1: source UIDL "a", target "x"`}},
		{"gap", l("1", "3", "4"), l("1", "2", "3"), Comparison{SourceMessages: 3, TargetMessages: 3, OrderMatch: true, Refetch: 1,
			FirstDifference: `message 2: source UIDL "3", target "2"`}},
		{"extra on target", l("a"), l("a", "z"), Comparison{SourceMessages: 1, TargetMessages: 2, OrderMatch: true, Refetch: 1,
			FirstDifference: `message 2: the target has it (UIDL "z"), the source does not`}},
		{"empty", l(), l(), Comparison{Match: true, OrderMatch: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Compare(tt.src, tt.dst); got != tt.want {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
	// Another order: the sizes tell.
	src, dst := l("a", "b"), l("a", "b")
	dst.Messages[0].Size, dst.Messages[1].Size = src.Messages[1].Size, src.Messages[0].Size
	if c := Compare(src, dst); c.OrderMatch {
		t.Fatalf("swapped sizes: %+v", c)
	}
}

// testCerts writes a CA and returns its file and a server TLS config
// with a certificate for 127.0.0.1 it signed.
func testCerts(t *testing.T) (string, *tls.Config) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}
}
