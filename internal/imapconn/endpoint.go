// Package imapconn owns every IMAP connection mailferry opens: it parses
// endpoint URLs, dials with a context, negotiates TLS, authenticates (LOGIN,
// master-user logins, SASL PLAIN with an authorization identity), records the
// server's capabilities as a typed feature set, and classifies errors by what
// the caller should do next. No other package imports imapclient.
package imapconn

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"mailferry/internal/secret"
)

// TLSMode says how a connection is protected.
type TLSMode int

const (
	// TLSStartTLS connects in clear text and upgrades with STARTTLS
	// (imap://). STARTTLS is required: a server that refuses it is an
	// error, never a fall back to clear text.
	TLSStartTLS TLSMode = iota
	// TLSImplicit speaks TLS from the first byte (imaps://).
	TLSImplicit
	// TLSNone never negotiates TLS (imap:// with an explicit "tls: none"
	// or --from-tls/--to-tls none).
	TLSNone
)

func (m TLSMode) String() string {
	switch m {
	case TLSImplicit:
		return "implicit TLS"
	case TLSNone:
		return "no TLS"
	default:
		return "STARTTLS"
	}
}

// Endpoint is where and as whom to log in. It never holds a secret.
type Endpoint struct {
	Host string // host name or address, without port
	Port int
	TLS  TLSMode
	// Mailbox is the account whose mail is read or written.
	Mailbox string
	// Login is the user name sent to LOGIN. It equals Mailbox unless the URL
	// names a Dovecot-style master login such as "alice*admin".
	Login string
	// Admin, when set, logs in with SASL PLAIN as Admin acting for Mailbox
	// (authorization identity Mailbox, authentication identity Admin).
	Admin string
}

// Addr is host:port.
func (e Endpoint) Addr() string { return net.JoinHostPort(e.Host, strconv.Itoa(e.Port)) }

// String renders the endpoint as a URL without any secret.
func (e Endpoint) String() string {
	scheme := "imap"
	if e.TLS == TLSImplicit {
		scheme = "imaps"
	}
	return fmt.Sprintf("%s://%s@%s", scheme, url.PathEscape(e.Login), e.Addr())
}

// Key names the mailbox this endpoint reaches, for the state: the server
// (host lower-cased, localhost as 127.0.0.1, and port) and the mailbox,
// never the login, an admin name or the TLS mode, which change how
// mailferry gets there, not where the mail is.
func (e Endpoint) Key() string {
	host := strings.ToLower(e.Host)
	if host == "localhost" {
		host = "127.0.0.1"
	}
	return fmt.Sprintf("imap://%s/%s", net.JoinHostPort(host, strconv.Itoa(e.Port)), url.PathEscape(e.Mailbox))
}

// ParseEndpoint parses imap://user@host[:port] or imaps://user@host[:port].
// The user part names the mailbox; "alice*admin" is a Dovecot master login
// acting for alice. A password in the URL is refused: secrets are passed by
// reference only.
//
// Errors quote the URL with any password masked, also when it does not
// parse.
func ParseEndpoint(rawURL string) (Endpoint, error) {
	raw := secret.RedactURL(rawURL) // for messages
	u, err := url.Parse(rawURL)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, password and all
		}
		return Endpoint{}, fmt.Errorf("parse URL %q: %w", raw, err)
	}
	var e Endpoint
	switch strings.ToLower(u.Scheme) {
	case "imap":
		e.TLS, e.Port = TLSStartTLS, 143
	case "imaps":
		e.TLS, e.Port = TLSImplicit, 993
	case "":
		return Endpoint{}, fmt.Errorf("URL %q has no scheme: write imap://user@host or imaps://user@host", raw)
	default:
		return Endpoint{}, fmt.Errorf("URL %q: scheme %q is not imap or imaps", raw, u.Scheme)
	}
	if u.User == nil || u.User.Username() == "" {
		return Endpoint{}, fmt.Errorf("URL %q names no mailbox: write %s://USER@%s", raw, u.Scheme, u.Host)
	}
	if _, has := u.User.Password(); has {
		return Endpoint{}, errors.New("a password inside the URL is not accepted: pass it by file or environment variable")
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return Endpoint{}, fmt.Errorf("URL %q: only scheme://user@host[:port] is understood", raw)
	}
	e.Host = u.Hostname()
	if e.Host == "" {
		return Endpoint{}, fmt.Errorf("URL %q names no host", raw)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Endpoint{}, fmt.Errorf("URL %q: bad port %q", raw, p)
		}
		e.Port = n
	}
	e.Login = u.User.Username()
	e.Mailbox = e.Login
	if i := strings.IndexByte(e.Login, '*'); i > 0 {
		e.Mailbox = e.Login[:i]
	}
	return e, nil
}
