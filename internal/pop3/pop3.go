// Package pop3 is the small POP3 client (RFC 1939, STLS from RFC 2595,
// AUTH PLAIN from RFC 5034) mailferry uses to see a mailbox as a POP3
// client sees it: its message order and UIDLs, so that a move can tell
// whether the POP clients of a mailbox would download everything again
// after the cutover.
//
// It is written by hand rather than taken from a library: no maintained
// Go POP3 client is served by the module proxy this project builds from,
// and mailferry needs only the read-only commands (CAPA, STLS, USER/PASS,
// AUTH PLAIN, STAT, UIDL, LIST, QUIT) with what its IMAP side already has:
// a context that aborts every stage, bounded waits, bounded responses, and
// a password that never reaches a log, a trace or an error. It never sends
// RETR, TOP or DELE: nothing on the server changes (no message is marked
// seen, none is deleted).
package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// TLSMode says how a POP3 connection is protected.
type TLSMode int

const (
	// TLSStartTLS connects in clear text and upgrades with STLS
	// (pop3://). STLS is required: a server that refuses it is an error,
	// never a fall back to clear text.
	TLSStartTLS TLSMode = iota
	// TLSImplicit speaks TLS from the first byte (pop3s://).
	TLSImplicit
	// TLSNone never negotiates TLS (pop3:// with the cluster's tls: none).
	TLSNone
)

func (m TLSMode) String() string {
	switch m {
	case TLSImplicit:
		return "implicit TLS"
	case TLSNone:
		return "no TLS"
	}
	return "STLS"
}

// Defaults of Config's timeouts.
const (
	DefaultDialTimeout = 30 * time.Second
	DefaultIOTimeout   = 60 * time.Second
)

// maxLine bounds one response line (RFC 1939 allows 512 octets; some
// servers send longer greetings or capabilities).
const maxLine = 8 << 10

// Config is everything needed to open an authenticated POP3 session. It
// is built from the same login as the IMAP side (see ForCluster).
type Config struct {
	// Side names the connection in errors: "source", "cluster bravo".
	Side string
	Host string
	Port int
	TLS  TLSMode
	// Login is the USER name (a Dovecot master login "alice*admin" works
	// as it does over IMAP).
	Login string
	// Admin, when set, logs in with AUTH PLAIN as Admin acting for
	// Mailbox (authorization identity Mailbox, authentication identity
	// Admin) instead of USER/PASS.
	Admin, Mailbox string
	// Password is the secret of Login (or of Admin). It is never logged,
	// traced or put into an error.
	Password string
	// AllowPlaintext permits credentials in clear text to a non-loopback
	// address on a TLSNone connection.
	AllowPlaintext bool
	// CAFile, when set, is a PEM bundle of the CAs trusted for this
	// server; InsecureSkipVerify accepts any certificate.
	CAFile             string
	InsecureSkipVerify bool
	// TrustAdvice and NoSTLSAdvice say how to fix an untrusted
	// certificate and a server without STLS, in the caller's terms.
	TrustAdvice, NoSTLSAdvice string
	// DialTimeout bounds connecting, TLS and login together; 0 means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// IOTimeout bounds every wait on the server by progress: no response
	// line for this long closes the connection; 0 means DefaultIOTimeout.
	IOTimeout time.Duration
	// Debug, when set, receives the protocol trace, with the password
	// and the AUTH PLAIN response masked.
	Debug io.Writer
}

// Addr is host:port.
func (c Config) Addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// User is who logs in, for messages: the login, or "admin for mailbox".
func (c Config) User() string {
	if c.Admin != "" {
		return c.Admin + " for " + c.Mailbox
	}
	return c.Login
}

func (c Config) ioTimeout() time.Duration {
	if c.IOTimeout > 0 {
		return c.IOTimeout
	}
	return DefaultIOTimeout
}

// AuthError is a login the server refused.
type AuthError struct {
	Side, Login, Addr string
	Msg               string // the server's -ERR text
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("%s: POP3 login as %s on %s refused: %s", e.Side, e.Login, e.Addr, e.Msg)
}

// SetupError is a connection that cannot work as configured (an untrusted
// certificate, no STLS): retrying does not help.
type SetupError struct{ Err error }

func (e *SetupError) Error() string { return e.Err.Error() }
func (e *SetupError) Unwrap() error { return e.Err }

// ServerError is a command the server answered with -ERR.
type ServerError struct {
	Side, Addr, Cmd string
	Msg             string
}

func (e *ServerError) Error() string {
	return fmt.Sprintf("%s: POP3 %s on %s: -ERR %s", e.Side, e.Cmd, e.Addr, e.Msg)
}

// TimeoutError is a server that sent nothing for the IO timeout.
type TimeoutError struct {
	Side, Addr string
	After      time.Duration
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("%s: POP3 server %s sent nothing for %s", e.Side, e.Addr, e.After)
}

// Client is one authenticated POP3 session. It is not safe for concurrent
// use.
type Client struct {
	cfg    Config
	conn   net.Conn // the TLS connection, or the TCP one
	raw    net.Conn // the TCP connection, for deadlines and Close
	br     *bufio.Reader
	mu     sync.Mutex // guards stop
	stop   func() bool
	once   sync.Once
	closed atomic.Bool
	// Capabilities as CAPA listed them (upper-cased first words), nil
	// when the server has no CAPA.
	Capabilities []string
}

// Dial connects, negotiates TLS as configured, and logs in. Cancelling ctx
// aborts every stage and, until Close, closes the connection, which
// aborts any command blocked on it. The error names the side and the
// server and never holds the password.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	timeout := cfg.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	tc, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	d := net.Dialer{Timeout: timeout}
	raw, err := d.DialContext(ctx, "tcp", cfg.Addr())
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s: cannot connect to POP3 server %s: %w", cfg.Side, cfg.Addr(), unwrapOp(err))
	}
	return start(ctx, cfg, raw, tc, timeout)
}

// start speaks a new connection up to the end of the login: TLS as
// configured, the greeting, CAPA, STLS, USER/PASS or AUTH PLAIN.
func start(ctx context.Context, cfg Config, raw net.Conn, tc *tls.Config, timeout time.Duration) (*Client, error) {
	c := &Client{cfg: cfg, conn: raw, raw: raw}
	c.br = bufio.NewReaderSize(raw, 4096)
	// Until Close, cancelling ctx closes the connection; until the login
	// is done, so does the dial timeout.
	stop := context.AfterFunc(ctx, func() { _ = c.Close() })
	c.mu.Lock()
	c.stop = stop
	c.mu.Unlock()
	var timedOut atomic.Bool
	deadline := time.AfterFunc(timeout, func() { timedOut.Store(true); _ = c.Close() })
	fail := func(err error) (*Client, error) {
		deadline.Stop()
		_ = c.Close()
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case timedOut.Load():
			return nil, fmt.Errorf("%s: connecting and logging in to POP3 server %s timed out after %s", cfg.Side, cfg.Addr(), timeout)
		}
		return nil, err
	}
	if cfg.TLS == TLSImplicit {
		conn, err := c.handshake(ctx, tc)
		if err != nil {
			return fail(err)
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 4096)
	}
	greeting, err := c.line()
	if err != nil {
		return fail(fmt.Errorf("%s: no POP3 greeting from %s: %w", cfg.Side, cfg.Addr(), err))
	}
	if ok, text := status(greeting); !ok {
		return fail(fmt.Errorf("%s: POP3 server %s refused the connection: %s", cfg.Side, cfg.Addr(), text))
	}
	c.Capabilities, _ = c.capa() // optional (RFC 2449); a server without it says -ERR
	if cfg.TLS == TLSStartTLS {
		if _, err := c.cmd("STLS", "STLS"); err != nil {
			var se *ServerError
			if errors.As(err, &se) {
				advice := cfg.NoSTLSAdvice
				if advice == "" {
					advice = "use pop3s://, or connect without TLS"
				}
				err = &SetupError{fmt.Errorf("%s: POP3 server %s offers no STLS (-ERR %s); refusing to go on without TLS: %s", cfg.Side, cfg.Addr(), se.Msg, advice)}
			}
			return fail(err)
		}
		if c.br.Buffered() > 0 {
			return fail(fmt.Errorf("%s: POP3 server %s sent data after its STLS answer, before TLS; refusing it", cfg.Side, cfg.Addr()))
		}
		conn, err := c.handshake(ctx, tc)
		if err != nil {
			return fail(err)
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 4096)
		c.Capabilities, _ = c.capa() // asked again after TLS (RFC 2595)
	}
	if cfg.TLS == TLSNone && !cfg.AllowPlaintext && !isLoopback(raw.RemoteAddr()) {
		return fail(fmt.Errorf("%s: POP3 server %s: no TLS; refusing to send credentials in clear text to a non-loopback address", cfg.Side, cfg.Addr()))
	}
	if err := c.login(); err != nil {
		return fail(err)
	}
	if !deadline.Stop() {
		return fail(nil)
	}
	return c, nil
}

func (c *Client) login() error {
	cfg := c.cfg
	refused := func(err error) error {
		var se *ServerError
		if errors.As(err, &se) {
			return &AuthError{Side: cfg.Side, Login: cfg.User(), Addr: cfg.Addr(), Msg: se.Msg}
		}
		return err
	}
	if cfg.Admin != "" {
		ir := base64.StdEncoding.EncodeToString([]byte(cfg.Mailbox + "\x00" + cfg.Admin + "\x00" + cfg.Password))
		if _, err := c.cmd("AUTH PLAIN "+ir, "AUTH PLAIN"); err != nil {
			return refused(err)
		}
		return nil
	}
	if strings.ContainsAny(cfg.Login, "\r\n") || strings.ContainsAny(cfg.Password, "\r\n") {
		return fmt.Errorf("%s: POP3 login or password holds a line break", cfg.Side)
	}
	if _, err := c.cmd("USER "+cfg.Login, "USER"); err != nil {
		return refused(err)
	}
	if _, err := c.cmd("PASS "+cfg.Password, "PASS"); err != nil {
		return refused(err)
	}
	return nil
}

// capa asks for the capabilities; an -ERR is no error worth reporting.
func (c *Client) capa() ([]string, error) {
	lines, err := c.multi("CAPA", "CAPA", 1000)
	if err != nil {
		return nil, err
	}
	caps := make([]string, 0, len(lines))
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 0 {
			caps = append(caps, strings.ToUpper(f[0]))
		}
	}
	return caps, nil
}

func (c *Client) handshake(ctx context.Context, tc *tls.Config) (*tls.Conn, error) {
	idle := c.cfg.ioTimeout()
	_ = c.raw.SetDeadline(time.Now().Add(idle))
	conn := tls.Client(c.raw, tc)
	if err := conn.HandshakeContext(ctx); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, &TimeoutError{Side: c.cfg.Side, Addr: c.cfg.Addr(), After: idle}
		}
		return nil, c.cfg.tlsError(err)
	}
	_ = c.raw.SetDeadline(time.Time{})
	return conn, nil
}

// Stat is the STAT answer: the number of messages and their octets.
func (c *Client) Stat() (count int, octets int64, err error) {
	text, err := c.cmd("STAT", "STAT")
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(text)
	if len(f) < 2 {
		return 0, 0, c.protocolf("STAT", "answer %q", text)
	}
	n, err1 := strconv.Atoi(f[0])
	o, err2 := strconv.ParseInt(f[1], 10, 64)
	if err1 != nil || err2 != nil || n < 0 || o < 0 {
		return 0, 0, c.protocolf("STAT", "answer %q", text)
	}
	return n, o, nil
}

// Entry is one line of a UIDL or LIST answer.
type Entry struct {
	Num  int    // message number, from 1
	UIDL string // UIDL only
	Size int64  // LIST only
}

// UIDL lists every message's unique id in message order. max bounds the
// entries accepted (the STAT count); 0 means no bound beyond memory.
func (c *Client) UIDL(max int) ([]Entry, error) {
	lines, err := c.multi("UIDL", "UIDL", max)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(lines))
	for _, l := range lines {
		num, rest, ok := strings.Cut(strings.TrimSpace(l), " ")
		n, err := strconv.Atoi(num)
		rest = strings.TrimSpace(rest)
		if !ok || err != nil || n < 1 || rest == "" || len(rest) > 70 {
			return nil, c.protocolf("UIDL", "line %q", l)
		}
		out = append(out, Entry{Num: n, UIDL: rest})
	}
	return out, nil
}

// List lists every message's size in octets, in message order; max as
// for UIDL.
func (c *Client) List(max int) ([]Entry, error) {
	lines, err := c.multi("LIST", "LIST", max)
	if err != nil {
		return nil, err
	}
	out := make([]Entry, 0, len(lines))
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) < 2 {
			return nil, c.protocolf("LIST", "line %q", l)
		}
		n, err1 := strconv.Atoi(f[0])
		s, err2 := strconv.ParseInt(f[1], 10, 64)
		if err1 != nil || err2 != nil || n < 1 || s < 0 {
			return nil, c.protocolf("LIST", "line %q", l)
		}
		out = append(out, Entry{Num: n, Size: s})
	}
	return out, nil
}

// Quit ends the session politely (nothing was marked for deletion, so
// the server changes nothing) and closes the connection.
func (c *Client) Quit() error {
	_, err := c.cmd("QUIT", "QUIT")
	_ = c.Close()
	return err
}

// Close closes the connection at once. It is safe to call more than once
// and from any goroutine.
func (c *Client) Close() error {
	c.once.Do(func() {
		c.closed.Store(true)
		c.mu.Lock()
		stop := c.stop
		c.mu.Unlock()
		if stop != nil {
			stop()
		}
		_ = c.raw.Close()
	})
	return nil
}

// cmd sends one command and reads its status line; the text after +OK is
// returned. name is the command as errors and the trace show it (never
// the argument of PASS or AUTH).
func (c *Client) cmd(line, name string) (string, error) {
	if err := c.send(line, name); err != nil {
		return "", err
	}
	resp, err := c.line()
	if err != nil {
		return "", c.lost(name, err)
	}
	ok, text := status(resp)
	if !ok {
		if strings.HasPrefix(resp, "+ ") || resp == "+" {
			// A SASL challenge to the initial response: cancel it.
			_ = c.send("*", "*")
			_, _ = c.line()
			return "", &ServerError{Side: c.cfg.Side, Addr: c.cfg.Addr(), Cmd: name, Msg: "the server did not take the initial response"}
		}
		return "", &ServerError{Side: c.cfg.Side, Addr: c.cfg.Addr(), Cmd: name, Msg: text}
	}
	return text, nil
}

// multi sends a command with a multi-line answer and returns its lines,
// dot-unstuffed, without the terminating ".". More than max lines (when
// max > 0) is a protocol error.
func (c *Client) multi(line, name string, max int) ([]string, error) {
	if _, err := c.cmd(line, name); err != nil {
		return nil, err
	}
	var out []string
	for {
		l, err := c.line()
		if err != nil {
			return nil, c.lost(name, err)
		}
		if l == "." {
			return out, nil
		}
		if strings.HasPrefix(l, ".") {
			l = l[1:]
		}
		if max > 0 && len(out) >= max {
			return nil, c.protocolf(name, "more than %d lines", max)
		}
		out = append(out, l)
	}
}

func (c *Client) send(line, name string) error {
	if c.cfg.Debug != nil {
		shown := line
		switch {
		case strings.HasPrefix(line, "PASS "):
			shown = "PASS " + mask
		case strings.HasPrefix(line, "AUTH PLAIN "):
			shown = "AUTH PLAIN " + mask
		}
		fmt.Fprintf(c.cfg.Debug, "C: %s\r\n", shown)
	}
	_ = c.raw.SetWriteDeadline(time.Now().Add(c.cfg.ioTimeout()))
	_, err := io.WriteString(c.conn, line+"\r\n")
	_ = c.raw.SetWriteDeadline(time.Time{})
	if err != nil {
		return c.lost(name, err)
	}
	return nil
}

const mask = "xxxxx"

// line reads one line (without CRLF), waiting at most the IO timeout.
func (c *Client) line() (string, error) {
	idle := c.cfg.ioTimeout()
	_ = c.raw.SetReadDeadline(time.Now().Add(idle))
	defer func() { _ = c.raw.SetReadDeadline(time.Time{}) }()
	var b []byte
	for {
		chunk, err := c.br.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > maxLine {
			return "", fmt.Errorf("response line longer than %d bytes", maxLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return "", &TimeoutError{Side: c.cfg.Side, Addr: c.cfg.Addr(), After: idle}
			}
			return "", unwrapOp(err)
		}
		s := strings.TrimRight(string(b), "\r\n")
		if c.cfg.Debug != nil {
			fmt.Fprintf(c.cfg.Debug, "S: %s\r\n", s)
		}
		return s, nil
	}
}

// lost wraps an error of the connection itself.
func (c *Client) lost(name string, err error) error {
	var te *TimeoutError
	if errors.As(err, &te) {
		return err
	}
	if c.closed.Load() {
		return fmt.Errorf("%s: POP3 %s on %s: connection closed", c.cfg.Side, name, c.cfg.Addr())
	}
	return fmt.Errorf("%s: POP3 %s on %s: %w", c.cfg.Side, name, c.cfg.Addr(), err)
}

func (c *Client) protocolf(name, format string, args ...any) error {
	return fmt.Errorf("%s: POP3 %s on %s: unexpected %s", c.cfg.Side, name, c.cfg.Addr(), fmt.Sprintf(format, args...))
}

// status splits "+OK text" or "-ERR text".
func status(line string) (ok bool, text string) {
	word, text, _ := strings.Cut(line, " ")
	switch strings.ToUpper(word) {
	case "+OK":
		return true, text
	case "-ERR":
		return false, text
	}
	return false, line
}

func (c Config) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{ServerName: c.Host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.InsecureSkipVerify}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s: read CA file: %w", c.Side, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: CA file %q holds no PEM certificate", c.Side, c.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

func (c Config) tlsError(err error) error {
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	if errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) {
		advice := c.TrustAdvice
		if advice == "" {
			advice = "trust its CA"
		}
		return &SetupError{fmt.Errorf("%s: TLS with POP3 server %s failed: %w (%s)", c.Side, c.Addr(), unwrapOp(err), advice)}
	}
	return fmt.Errorf("%s: TLS with POP3 server %s failed: %w", c.Side, c.Addr(), unwrapOp(err))
}

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}
