package imapconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
)

// Config is everything needed to open an authenticated connection.
type Config struct {
	// Side names the connection in errors: "source" or "target".
	Side     string
	Endpoint Endpoint
	// Password is the secret for Endpoint.Login (or Endpoint.Admin). It is
	// never logged or put into an error.
	Password string
	// AllowPlaintext permits credentials in clear text to a non-loopback
	// address on a TLSNone endpoint (imap:// with STARTTLS never falls
	// back to clear text).
	AllowPlaintext bool
	// CAFile, when set, is a PEM bundle of CAs trusted for this server.
	CAFile string
	// InsecureSkipVerify accepts any certificate.
	InsecureSkipVerify bool
	// TrustAdvice and NoStartTLSAdvice say, in the caller's terms (flags,
	// an inventory's fields), how to fix a certificate that is not
	// trusted and a server that offers no STARTTLS on imap://; "" means
	// the migrate flags' and a generic advice.
	TrustAdvice, NoStartTLSAdvice string
	// DialTimeout bounds TCP connect, TLS handshake and login together;
	// 0 means 30s.
	DialTimeout time.Duration
	// IdleTimeout bounds every wait on the server by progress: when
	// mailferry waits for it (a command outstanding, or a write blocked)
	// and no byte moves for this long, the connection is closed with a
	// *TimeoutError naming the side. A slow but moving transfer is never
	// cut, and an idle connection with nothing outstanding is kept. 0
	// means DefaultIdleTimeout (120s).
	IdleTimeout time.Duration
	// Debug, when set, receives the protocol trace with credentials redacted.
	Debug io.Writer
}

// Features is the subset of server capabilities mailferry acts on, recorded
// once per connection.
type Features struct {
	UIDPlus, CondStore, SpecialUse, ListStatus, StatusSize, Namespace,
	LiteralPlus, ESearch, Move, ListExtended bool
	// LiteralMinus: non-synchronising literals up to 4096 bytes (RFC 7888;
	// LITERAL+ implies it). MultiAppend: several messages in one APPEND
	// (RFC 3502). AppendLimit: the largest message the server accepts (RFC
	// 7889), 0 if it names none.
	LiteralMinus, MultiAppend bool
	AppendLimit               int64
	// QResync: quick resynchronisation (RFC 7162). Quota: GETQUOTAROOT and
	// friends (RFC 9208 or 2087).
	QResync, Quota bool
}

// Names lists the capabilities mailferry acts on or reports, in a fixed
// order, as the server spells them: the ones offered (APPENDLIMIT with its
// value when it names one) and, separately, the ones missing.
func (f Features) Names() (offered, missing []string) {
	for _, c := range []struct {
		name string
		has  bool
	}{
		{"UIDPLUS", f.UIDPlus}, {"MULTIAPPEND", f.MultiAppend}, {"CONDSTORE", f.CondStore}, {"QRESYNC", f.QResync},
		{"LITERAL+", f.LiteralPlus}, {"LITERAL-", f.LiteralMinus && !f.LiteralPlus}, {"APPENDLIMIT", f.AppendLimit > 0},
		{"STATUS=SIZE", f.StatusSize}, {"SPECIAL-USE", f.SpecialUse}, {"QUOTA", f.Quota},
	} {
		switch {
		case c.has && c.name == "APPENDLIMIT":
			offered = append(offered, fmt.Sprintf("APPENDLIMIT=%d", f.AppendLimit))
		case c.has:
			offered = append(offered, c.name)
		case c.name == "LITERAL-" && f.LiteralPlus:
			// LITERAL+ implies LITERAL-: not missing.
		default:
			missing = append(missing, c.name)
		}
	}
	return offered, missing
}

func featuresOf(caps imap.CapSet) Features {
	return Features{
		UIDPlus:      caps.Has(imap.CapUIDPlus) || caps.Has(imap.CapIMAP4rev2),
		CondStore:    caps.Has(imap.CapCondStore),
		SpecialUse:   caps.Has(imap.CapSpecialUse) || caps.Has(imap.CapIMAP4rev2),
		ListStatus:   caps.Has(imap.CapListStatus) || caps.Has(imap.CapIMAP4rev2),
		StatusSize:   caps.Has(imap.CapStatusSize) || caps.Has(imap.CapIMAP4rev2),
		Namespace:    caps.Has(imap.CapNamespace) || caps.Has(imap.CapIMAP4rev2),
		LiteralPlus:  caps.Has(imap.CapLiteralPlus),
		ESearch:      caps.Has(imap.CapESearch) || caps.Has(imap.CapIMAP4rev2),
		Move:         caps.Has(imap.CapMove) || caps.Has(imap.CapIMAP4rev2),
		ListExtended: caps.Has(imap.CapListExtended) || caps.Has(imap.CapIMAP4rev2),
		LiteralMinus: caps.Has(imap.CapLiteralMinus),
		MultiAppend:  caps.Has(imap.CapMultiAppend),
		AppendLimit:  appendLimit(caps),
		QResync:      caps.Has(imap.CapQResync),
		Quota:        caps.Has(imap.CapQuota),
	}
}

// appendLimit is the server's APPENDLIMIT (RFC 7889), 0 if none is given.
func appendLimit(caps imap.CapSet) int64 {
	if n, ok := caps.AppendLimit(); ok && n != nil {
		return int64(*n)
	}
	return 0
}

// Conn is one authenticated IMAP connection. Commands go through a
// Session (NewSession), which owns it: the raw client is not reachable
// from outside this package.
type Conn struct {
	client   *imapclient.Client
	Features Features
	Side     string
	Endpoint Endpoint
	stop     func() bool
	once     sync.Once
	watch    *watchConn
	closed   atomic.Bool // Close was called
}

// BadNames returns the raw names (as the server sent them) of mailboxes
// that LIST or STATUS responses named in invalid modified UTF-7; those
// responses were dropped, so the folders are missing from what List
// returned. The list grows over the connection's life, without repeats.
func (c *Conn) BadNames() []string {
	if c.watch == nil {
		return nil
	}
	return c.watch.badNames()
}

// Close closes the connection at once without LOGOUT. It is safe to call
// more than once and from any goroutine.
func (c *Conn) Close() error {
	c.once.Do(func() {
		c.closed.Store(true)
		c.stop()
		// The socket first: that ends every read and write at once.
		// go-imap (v2.0.0-beta.8) then waits in Close for its reader
		// goroutine, which waits for whoever holds a FETCH literal to
		// finish reading it; a copy stopped mid-literal (interrupted,
		// throttled, cancelled) never will, so that wait is bounded and
		// the reader is left to end with the process.
		if c.watch != nil {
			_ = c.watch.Close()
		}
		done := make(chan struct{})
		go func() {
			_ = c.client.Close()
			close(done)
		}()
		select {
		case <-done:
		case <-time.After(500 * time.Millisecond):
		}
	})
	return nil
}

// Dead reports whether the connection is closed, by either end.
func (c *Conn) Dead() bool {
	if c.closed.Load() {
		return true
	}
	select {
	case <-c.client.Closed():
		return true
	default:
		return false
	}
}

// Logout says goodbye politely (bounded by a short timeout) and closes.
func (c *Conn) Logout() {
	done := make(chan struct{})
	go func() {
		_ = c.client.Logout().Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
	}
	_ = c.Close()
}

// Dial opens, secures and authenticates a connection. Cancelling ctx
// aborts it at every stage (TCP connect, TLS or STARTTLS handshake,
// greeting, login) and, until the returned Conn is closed, closes it, which
// aborts any command blocked on it. Every wait on the server is bounded by
// Config.IdleTimeout without progress (see IdleTimeout), the whole Dial also
// by Config.DialTimeout. Errors name the side and the server and never
// contain the password.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	ep := cfg.Endpoint
	timeout := cfg.DialTimeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	tlsConfig, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	opts := &imapclient.Options{TLSConfig: tlsConfig}
	if cfg.Debug != nil {
		opts.DebugWriter = NewRedactor(cfg.Debug)
	}

	raw, err := cfg.dial(ctx, timeout)
	if err != nil {
		return nil, err
	}
	// Until login is done, cancelling ctx or the dial timeout closes the
	// TCP connection, which ends whatever stage is blocked on it.
	var timedOut atomic.Bool
	cur := &current{conn: raw}
	stopCtx := context.AfterFunc(ctx, cur.close)
	deadline := time.AfterFunc(timeout, func() { timedOut.Store(true); cur.close() })
	fail := func(client *imapclient.Client, err error) (*Conn, error) {
		stopCtx()
		deadline.Stop()
		if client != nil {
			_ = client.Close()
		}
		cur.close()
		switch {
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case timedOut.Load():
			return nil, fmt.Errorf("%s: connecting and logging in to %s timed out after %s", cfg.Side, ep.Addr(), timeout)
		}
		return nil, err
	}

	wc, plaintext, err := cfg.secure(ctx, raw, opts)
	if errors.Is(err, errNoStartTLS) {
		// imap:// means STARTTLS, required: no silent fall back to clear
		// text. Only an explicit TLSNone connects without TLS.
		advice := cfg.NoStartTLSAdvice
		if advice == "" {
			advice = "use imaps://, or say tls none to connect without TLS"
		}
		err = &SetupError{cfg.Side, fmt.Errorf("%s: %s offers no STARTTLS (it refused the command); refusing to go on without TLS: %s", cfg.Side, ep.Addr(), advice)}
	}
	if err != nil {
		return fail(nil, err)
	}
	client := imapclient.New(wc, opts)
	if err := client.WaitGreeting(); err != nil {
		return fail(client, fmt.Errorf("%s: no IMAP greeting from %s: %w", cfg.Side, ep.Addr(), err))
	}
	if plaintext && !cfg.AllowPlaintext && !isLoopbackAddr(raw.RemoteAddr()) {
		return fail(client, fmt.Errorf("%s: %s offers no TLS; refusing to send credentials in clear text to a non-loopback address (use imaps://, or --allow-plaintext)", cfg.Side, ep.Addr()))
	}
	c := &Conn{client: client, Side: cfg.Side, Endpoint: ep, watch: wc}
	if err := cfg.login(c); err != nil {
		return fail(client, err)
	}
	if !deadline.Stop() {
		return fail(client, nil)
	}
	stopCtx()
	c.stop = context.AfterFunc(ctx, func() { _ = client.Close() })
	caps := client.Caps()
	if caps == nil {
		_ = c.Close()
		return nil, fmt.Errorf("%s: %s sent no capabilities", cfg.Side, ep.Addr())
	}
	c.Features = featuresOf(caps)
	return c, nil
}

func (cfg Config) idleTimeout() time.Duration {
	if cfg.IdleTimeout > 0 {
		return cfg.IdleTimeout
	}
	return DefaultIdleTimeout
}

func (cfg Config) tlsConfig() (*tls.Config, error) {
	tc := &tls.Config{ServerName: cfg.Endpoint.Host, MinVersion: tls.VersionTLS12}
	if cfg.InsecureSkipVerify {
		tc.InsecureSkipVerify = true
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s: read CA file: %w", cfg.Side, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: CA file %q holds no PEM certificate", cfg.Side, cfg.CAFile)
		}
		tc.RootCAs = pool
	}
	return tc, nil
}

func (cfg Config) dial(ctx context.Context, timeout time.Duration) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", cfg.Endpoint.Addr())
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%s: cannot connect to %s: %w", cfg.Side, cfg.Endpoint.Addr(), unwrapOp(err))
	}
	return conn, nil
}

// secure negotiates TLS as the endpoint says and returns the connection to
// hand to the IMAP library, and whether it is in clear text. STARTTLS is
// spoken here rather than by the library (imapclient.NewStartTLS), whose
// exchange and handshake take no context and run on the library's fixed
// deadlines; the library then gets the TLS connection with the greeting
// replayed (its capabilities dropped, as they must be asked again).
func (cfg Config) secure(ctx context.Context, raw net.Conn, opts *imapclient.Options) (*watchConn, bool, error) {
	ep := cfg.Endpoint
	idle := cfg.idleTimeout()
	switch ep.TLS {
	case TLSImplicit:
		tc, err := cfg.handshake(ctx, raw, opts.TLSConfig)
		if err != nil {
			return nil, false, err
		}
		return newWatchConn(tc, raw, cfg.Side, ep.Addr(), idle, nil), false, nil
	case TLSStartTLS:
		s := &startTLS{cfg: cfg, raw: raw, br: bufio.NewReaderSize(raw, 4096), debug: opts.DebugWriter}
		greeting, err := s.line()
		if err != nil {
			return nil, false, fmt.Errorf("%s: no IMAP greeting from %s: %w", cfg.Side, ep.Addr(), err)
		}
		status, text := greetingStatus(greeting)
		switch status {
		case "OK":
		case "PREAUTH":
			return nil, false, fmt.Errorf("%s: %s sent PREAUTH on an unencrypted connection; refusing it", cfg.Side, ep.Addr())
		default:
			return nil, false, fmt.Errorf("%s: %s refused the connection: %s", cfg.Side, ep.Addr(), strings.TrimSpace(greeting))
		}
		ok, err := s.command("M0 STARTTLS")
		if err != nil {
			return nil, false, err
		}
		if !ok {
			return nil, false, errNoStartTLS
		}
		if s.br.Buffered() > 0 {
			return nil, false, fmt.Errorf("%s: %s sent data after its STARTTLS answer, before TLS; refusing it", cfg.Side, ep.Addr())
		}
		tc, err := cfg.handshake(ctx, raw, opts.TLSConfig)
		if err != nil {
			return nil, false, err
		}
		return newWatchConn(tc, raw, cfg.Side, ep.Addr(), idle, []byte("* OK "+text+"\r\n")), false, nil
	default:
		return newWatchConn(raw, raw, cfg.Side, ep.Addr(), idle, nil), true, nil
	}
}

// errNoStartTLS: the server answered STARTTLS with NO or BAD: it offers
// none.
var errNoStartTLS = errors.New("STARTTLS refused")

// current is the TCP connection a Dial is working on, closed by
// cancellation and the dial timeout.
type current struct {
	mu     sync.Mutex
	conn   net.Conn
	closed bool
}

func (c *current) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	_ = c.conn.Close()
}

// handshake runs the TLS handshake, aborted by ctx and bounded by the idle
// timeout (a handshake is a few round trips).
func (cfg Config) handshake(ctx context.Context, raw net.Conn, tlsConfig *tls.Config) (*tls.Conn, error) {
	idle := cfg.idleTimeout()
	_ = raw.SetDeadline(time.Now().Add(idle))
	tc := tls.Client(raw, tlsConfig)
	if err := tc.HandshakeContext(ctx); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("%s: TLS with %s failed: %w", cfg.Side, cfg.Endpoint.Addr(),
				&TimeoutError{Side: cfg.Side, Addr: cfg.Endpoint.Addr(), After: idle})
		}
		return nil, cfg.tlsError(err)
	}
	_ = raw.SetDeadline(time.Time{})
	return tc, nil
}

// startTLS speaks the clear-text part of a STARTTLS connection: the
// greeting and the STARTTLS command, each line bounded by the idle timeout.
type startTLS struct {
	cfg   Config
	raw   net.Conn
	br    *bufio.Reader
	debug io.Writer
}

const maxStartTLSLine = 16 << 10

// line reads one response line (with its CRLF).
func (s *startTLS) line() (string, error) {
	idle := s.cfg.idleTimeout()
	_ = s.raw.SetReadDeadline(time.Now().Add(idle))
	defer func() { _ = s.raw.SetReadDeadline(time.Time{}) }()
	var b []byte
	for {
		chunk, err := s.br.ReadSlice('\n')
		b = append(b, chunk...)
		if len(b) > maxStartTLSLine {
			return "", fmt.Errorf("response line longer than %d bytes", maxStartTLSLine)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return "", &TimeoutError{Side: s.cfg.Side, Addr: s.cfg.Endpoint.Addr(), After: idle}
			}
			return "", unwrapOp(err)
		}
		if s.debug != nil {
			_, _ = s.debug.Write(b)
		}
		return string(b), nil
	}
}

// command sends one command and reads until its tagged answer: true for OK,
// false for NO or BAD.
func (s *startTLS) command(cmd string) (bool, error) {
	addr := s.cfg.Endpoint.Addr()
	_ = s.raw.SetWriteDeadline(time.Now().Add(s.cfg.idleTimeout()))
	if s.debug != nil {
		_, _ = io.WriteString(s.debug, cmd+"\r\n")
	}
	_, err := io.WriteString(s.raw, cmd+"\r\n")
	_ = s.raw.SetWriteDeadline(time.Time{})
	if err != nil {
		return false, fmt.Errorf("%s: STARTTLS with %s: %w", s.cfg.Side, addr, unwrapOp(err))
	}
	tag, _, _ := strings.Cut(cmd, " ")
	for {
		l, err := s.line()
		if err != nil {
			return false, fmt.Errorf("%s: STARTTLS with %s: %w", s.cfg.Side, addr, err)
		}
		t, rest, _ := strings.Cut(l, " ")
		if t != tag {
			continue // untagged data
		}
		status, _, _ := strings.Cut(strings.TrimSpace(rest), " ")
		switch strings.ToUpper(status) {
		case "OK":
			return true, nil
		case "NO", "BAD":
			return false, nil
		}
		return false, fmt.Errorf("%s: STARTTLS with %s: unexpected answer %q", s.cfg.Side, addr, strings.TrimSpace(l))
	}
}

// greetingStatus splits "* OK [CODE ...] text" into "OK" and "text".
func greetingStatus(line string) (status, text string) {
	line = strings.TrimRight(line, "\r\n")
	rest, ok := strings.CutPrefix(line, "* ")
	if !ok {
		return "", ""
	}
	status, text, _ = strings.Cut(rest, " ")
	if strings.HasPrefix(text, "[") {
		if i := strings.IndexByte(text, ']'); i >= 0 {
			text = strings.TrimSpace(text[i+1:])
		}
	}
	if text == "" {
		text = "ready"
	}
	return strings.ToUpper(status), text
}

func (cfg Config) tlsError(err error) error {
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	if errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) {
		advice := cfg.TrustAdvice
		if advice == "" {
			advice = "trust its CA with --ca-file, or --insecure-skip-verify"
		}
		return &SetupError{cfg.Side, fmt.Errorf("%s: TLS with %s failed: %w (%s)", cfg.Side, cfg.Endpoint.Addr(), unwrapOp(err), advice)}
	}
	return fmt.Errorf("%s: TLS with %s failed: %w", cfg.Side, cfg.Endpoint.Addr(), unwrapOp(err))
}

func (cfg Config) login(c *Conn) error {
	ep := cfg.Endpoint
	var err error
	login := ep.Login
	if ep.Admin != "" {
		login = ep.Admin + " for " + ep.Mailbox
		err = c.client.Authenticate(sasl.NewPlainClient(ep.Mailbox, ep.Admin, cfg.Password))
	} else {
		err = c.client.Login(ep.Login, cfg.Password).Wait()
	}
	if err == nil {
		return nil
	}
	var ie *imap.Error
	if errors.As(err, &ie) {
		return &AuthError{Side: cfg.Side, Login: login, Addr: ep.Addr(), Err: err}
	}
	return fmt.Errorf("%s: login on %s: connection lost: %w", cfg.Side, ep.Addr(), err)
}

// ReadSecret reads a password by reference: from file (trailing newline
// removed) when one is named, else from the environment variable env. The
// error names the file or variable, never the secret.
func ReadSecret(file, env string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("read password file: %w", err)
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			return "", fmt.Errorf("password file %q is empty", file)
		}
		return s, nil
	}
	if s, ok := os.LookupEnv(env); ok && s != "" {
		return s, nil
	}
	return "", fmt.Errorf("none given: use a password file or set $%s", env)
}

// isLoopbackAddr decides whether clear-text credentials may go to a; a
// variable so tests can pretend a loopback server is remote.
var isLoopbackAddr = isLoopback

func isLoopback(a net.Addr) bool {
	ta, ok := a.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// unwrapOp drops the *net.OpError wrapping that repeats addresses already
// named by the caller.
func unwrapOp(err error) error {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Err
	}
	return err
}

// Names of the IMAP library's command and FETCH item types, so that callers
// need not import it.
type (
	AppendCommand  = imapclient.AppendCommand
	FetchCommand   = imapclient.FetchCommand
	FetchItemUID   = imapclient.FetchItemDataUID
	FetchItemBody  = imapclient.FetchItemDataBodySection
	FetchItemSize  = imapclient.FetchItemDataRFC822Size
	FetchItemFlags = imapclient.FetchItemDataFlags
	FetchItemDate  = imapclient.FetchItemDataInternalDate
)
