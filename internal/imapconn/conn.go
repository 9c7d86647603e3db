package imapconn

import (
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
	// address when the server offers no STARTTLS.
	AllowPlaintext bool
	// CAFile, when set, is a PEM bundle of CAs trusted for this server.
	CAFile string
	// InsecureSkipVerify accepts any certificate.
	InsecureSkipVerify bool
	// DialTimeout bounds TCP connect, TLS handshake and login; 0 means 30s.
	DialTimeout time.Duration
	// Debug, when set, receives the protocol trace with credentials redacted.
	Debug io.Writer
}

// Features is the subset of server capabilities mailferry acts on, recorded
// once per connection.
type Features struct {
	UIDPlus, CondStore, SpecialUse, ListStatus, StatusSize, Namespace,
	LiteralPlus, ESearch, Move, ListExtended bool
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
	}
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
}

// Close closes the connection at once without LOGOUT. It is safe to call
// more than once and from any goroutine.
func (c *Conn) Close() error {
	var err error
	c.once.Do(func() {
		c.stop()
		err = c.client.Close()
	})
	return err
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

// Dial opens, secures and authenticates a connection. Until the returned
// Conn is closed, cancelling ctx closes it, which aborts any command blocked
// on it. Errors name the side and the server and never contain the password.
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

	client, raw, err := cfg.connect(ctx, timeout, opts)
	if err != nil {
		return nil, err
	}
	c := &Conn{client: client, Side: cfg.Side, Endpoint: ep}
	c.stop = context.AfterFunc(ctx, func() { _ = client.Close() })
	deadline := time.AfterFunc(timeout, func() { _ = client.Close() })
	defer deadline.Stop()

	if err := cfg.login(c, raw); err != nil {
		_ = c.Close()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if !deadline.Stop() {
		_ = c.Close()
		return nil, fmt.Errorf("%s: login on %s timed out after %s", cfg.Side, ep.Addr(), timeout)
	}
	caps := client.Caps()
	if caps == nil {
		_ = c.Close()
		return nil, fmt.Errorf("%s: %s sent no capabilities", cfg.Side, ep.Addr())
	}
	c.Features = featuresOf(caps)
	return c, nil
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

// connect returns a client past the greeting (and TLS, when used) and the
// raw TCP connection (to check where credentials go).
func (cfg Config) connect(ctx context.Context, timeout time.Duration, opts *imapclient.Options) (*imapclient.Client, net.Conn, error) {
	ep := cfg.Endpoint
	raw, err := cfg.dial(ctx, timeout)
	if err != nil {
		return nil, nil, err
	}
	_ = raw.SetDeadline(time.Now().Add(timeout))
	defer func() { _ = raw.SetDeadline(time.Time{}) }()
	switch ep.TLS {
	case TLSImplicit:
		tc := tls.Client(raw, opts.TLSConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, nil, cfg.tlsError(err)
		}
		c := imapclient.New(tc, opts)
		if err := c.WaitGreeting(); err != nil {
			c.Close()
			return nil, nil, fmt.Errorf("%s: no IMAP greeting from %s: %w", cfg.Side, ep.Addr(), err)
		}
		return c, raw, nil
	case TLSStartTLS:
		c, err := imapclient.NewStartTLS(raw, opts)
		if err == nil {
			return c, raw, nil
		}
		var ie *imap.Error
		if !errors.As(err, &ie) {
			return nil, nil, cfg.tlsError(err)
		}
		// The server answered STARTTLS with NO or BAD: it offers none.
		raw, err = cfg.dial(ctx, timeout)
		if err != nil {
			return nil, nil, err
		}
		fallthrough
	default:
		c := imapclient.New(raw, opts)
		if err := c.WaitGreeting(); err != nil {
			c.Close()
			return nil, nil, fmt.Errorf("%s: no IMAP greeting from %s: %w", cfg.Side, ep.Addr(), err)
		}
		if !cfg.AllowPlaintext && !isLoopbackAddr(raw.RemoteAddr()) {
			c.Close()
			return nil, nil, fmt.Errorf("%s: %s offers no TLS; refusing to send credentials in clear text to a non-loopback address (use imaps://, or --allow-plaintext)", cfg.Side, ep.Addr())
		}
		return c, raw, nil
	}
}

func (cfg Config) tlsError(err error) error {
	hint := ""
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	if errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) {
		hint = " (trust its CA with --ca-file, or --insecure-skip-verify)"
	}
	return fmt.Errorf("%s: TLS with %s failed: %w%s", cfg.Side, cfg.Endpoint.Addr(), unwrapOp(err), hint)
}

func (cfg Config) login(c *Conn, raw net.Conn) error {
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
)
