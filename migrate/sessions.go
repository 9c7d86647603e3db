package migrate

import (
	"context"
	"sync"

	"mailferry/internal/imapconn"
)

// Sessions keeps one move's logged-in connections open between its passes,
// so that a delta pass or the final delta does not log in again (each
// login costs the servers a process and an authentication). Each pair
// keeps its places under the clusters' connection caps while it waits.
// Use one Sessions per mailbox; Close it when the move ends.
type Sessions struct {
	mu    sync.Mutex
	pairs []session
}

// session is a source and a target connection of the same copy.
type session struct {
	src, dst *imapconn.Conn
	rel      [2]func()
}

func (s session) alive() bool { return !isClosed(s.src) && !isClosed(s.dst) }

func (s session) close() {
	s.src.Logout()
	s.dst.Logout()
	s.rel[0]()
	s.rel[1]()
}

// take returns a kept pair whose connections are both alive.
func (s *Sessions) take() (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.pairs) > 0 {
		p := s.pairs[len(s.pairs)-1]
		s.pairs = s.pairs[:len(s.pairs)-1]
		if p.alive() {
			return p, true
		}
		p.close()
	}
	return session{}, false
}

// keep stores a pair for the next pass, or closes it if it is not alive.
func (s *Sessions) keep(p session) {
	if !p.alive() {
		p.close()
		return
	}
	s.mu.Lock()
	s.pairs = append(s.pairs, p)
	s.mu.Unlock()
}

// Close logs out every kept connection.
func (s *Sessions) Close() {
	s.mu.Lock()
	pairs := s.pairs
	s.pairs = nil
	s.mu.Unlock()
	for _, p := range pairs {
		p.close()
	}
}

// takePair is dialPair, reusing a kept pair when there is one.
func (r *run) takePair(ctx context.Context) (*imapconn.Conn, *imapconn.Conn, [2]func(), error) {
	return r.takePairWaiting(ctx, ctx)
}

// takePairWaiting is takePair that waits for connection places only as
// long as wait lasts.
func (r *run) takePairWaiting(ctx, wait context.Context) (*imapconn.Conn, *imapconn.Conn, [2]func(), error) {
	if r.opts.Sessions != nil {
		if p, ok := r.opts.Sessions.take(); ok {
			return p.src, p.dst, p.rel, nil
		}
	}
	return r.dialPairWaiting(ctx, wait)
}

// release ends a copy's use of a pair: kept for the next pass, or logged
// out.
func (r *run) release(src, dst *imapconn.Conn, rel [2]func()) {
	p := session{src: src, dst: dst, rel: rel}
	if r.opts.Sessions != nil {
		r.opts.Sessions.keep(p)
		return
	}
	p.close()
}
