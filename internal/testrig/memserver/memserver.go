// Package memserver runs the go-imap in-memory IMAP server on a loopback
// port, for fast unit tests and the demo. It is not byte-exact for
// malformed mail and lacks CONDSTORE and SPECIAL-USE: fidelity is judged on
// real Dovecot servers (package dovecot), never here.
package memserver

import (
	"fmt"
	"io"
	"log"
	"net"
	"sync"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// Server is one in-memory IMAP server listening on 127.0.0.1.
type Server struct {
	Addr string

	mem  *imapmemserver.Server
	srv  *imapserver.Server
	ln   net.Listener
	done chan struct{}

	mu    sync.Mutex
	quota map[string]int64 // account -> bytes its APPENDs may store (SetQuota)
	used  map[string]int64 // account -> bytes its APPENDs stored
}

// Start listens on a free loopback port and serves until Close.
func Start() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	s := &Server{Addr: ln.Addr().String(), mem: imapmemserver.New(), ln: ln,
		done: make(chan struct{})}
	s.srv = imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return &session{Session: s.mem.NewSession(), s: s}, nil, nil
		},
		Caps: imap.CapSet{
			imap.CapIMAP4rev1: {}, imap.CapNamespace: {}, imap.CapUIDPlus: {}, imap.CapESearch: {},
			imap.CapListExtended: {}, imap.CapListStatus: {}, imap.CapStatusSize: {}, imap.CapMove: {},
		},
		InsecureAuth: true,
		Logger:       log.New(io.Discard, "", 0),
	})
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// User is one account of the server (the library's in-memory user), so
// callers need not import the IMAP server library themselves.
type User = imapmemserver.User

// AddUser creates an account with an INBOX and returns it for seeding.
func (s *Server) AddUser(name, password string) *User {
	u := imapmemserver.NewUser(name, password)
	_ = u.Create("INBOX", nil)
	s.mem.AddUser(u)
	return u
}

// Close stops the server and waits for it.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}

// SetQuota lets the APPENDs of account name (over IMAP; seeding through
// the returned User is not counted) store at most bytes; the APPEND that
// would go beyond is refused with NO [OVERQUOTA], as a full mailbox is.
// The server does not offer the QUOTA extension, so a client cannot see
// the limit coming. 0 removes the limit.
func (s *Server) SetQuota(name string, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.quota == nil {
		s.quota, s.used = map[string]int64{}, map[string]int64{}
	}
	s.quota[name] = bytes
}

// charge books n more bytes to name's account, or refuses them over its
// quota.
func (s *Server) charge(name string, n int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if q := s.quota[name]; q > 0 && s.used[name]+n > q {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeOverQuota,
			Text: fmt.Sprintf("Quota exceeded (mailbox for user is full): %d of %d bytes used", s.used[name], q)}
	}
	if s.used != nil {
		s.used[name] += n
	}
	return nil
}

// session is the in-memory server's session, counting APPENDs against
// the account's quota.
type session struct {
	imapserver.Session
	s    *Server
	user string
}

func (c *session) Login(username, password string) error {
	if err := c.Session.Login(username, password); err != nil {
		return err
	}
	c.user = username
	return nil
}

func (c *session) Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	n := r.Size()
	if err := c.s.charge(c.user, n); err != nil {
		return nil, err
	}
	data, err := c.Session.Append(mailbox, r, options)
	if err != nil {
		_ = c.s.charge(c.user, -n) // nothing stored
	}
	return data, err
}

func (c *session) Namespace() (*imap.NamespaceData, error) {
	return c.Session.(imapserver.SessionNamespace).Namespace()
}

func (c *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	return c.Session.(imapserver.SessionMove).Move(w, numSet, dest)
}
