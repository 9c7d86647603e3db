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
	pairs []pair
}

// pair is a copy's source and target sessions and the places they hold
// under the clusters' connection caps (rel gives them back).
type pair struct {
	src, dst *imapconn.Session
	rel      [2]func()
}

func (p pair) alive() bool { return p.src != nil && p.dst != nil && !p.src.Dead() && !p.dst.Dead() }

// close logs out what the pair holds and gives its places back.
func (p pair) close() {
	if p.src != nil {
		p.src.Logout()
		p.rel[0]()
	}
	if p.dst != nil {
		p.dst.Logout()
		p.rel[1]()
	}
}

// take returns a kept pair whose connections are both alive.
func (s *Sessions) take() (pair, bool) {
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
	return pair{}, false
}

// keep stores a pair for the next pass, or closes it if it is not alive.
func (s *Sessions) keep(p pair) {
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
func (r *run) takePair(ctx context.Context) (pair, error) {
	return r.takePairWaiting(ctx, ctx)
}

// takePairWaiting is takePair that waits for connection places only as
// long as wait lasts.
func (r *run) takePairWaiting(ctx, wait context.Context) (pair, error) {
	if r.opts.Sessions != nil {
		if p, ok := r.opts.Sessions.take(); ok {
			return p, nil
		}
	}
	return r.dialPairWaiting(ctx, wait)
}

// release ends a copy's use of a pair: kept for the next pass, or logged
// out.
func (r *run) release(p pair) {
	if r.opts.Sessions != nil {
		r.opts.Sessions.keep(p)
		return
	}
	p.close()
}
