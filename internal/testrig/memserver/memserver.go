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
			return s.mem.NewSession(), nil, nil
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

// AddUser creates an account with an INBOX and returns it for seeding.
func (s *Server) AddUser(name, password string) *imapmemserver.User {
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
