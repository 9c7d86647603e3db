package faultproxy

import (
	"bytes"
	"context"
	"io"
	"net"
	"sync"
)

// Counter is a loopback proxy that counts the client's commands whose
// first line matches, and holds them (and what follows on their
// connection) while Hold is on, so a test can pin a copy at a known
// point. It follows the command stream's lines and literals, so it needs
// plaintext IMAP. Its methods are safe for concurrent use.
type Counter struct {
	Addr     string
	upstream string
	match    func(line []byte) bool
	ln       net.Listener
	wg       sync.WaitGroup
	ctx      context.Context
	cancel   context.CancelFunc

	mu      sync.Mutex
	matched int
	held    int           // matching commands waiting for Release
	hold    chan struct{} // non-nil while holding; closed by Release
	conns   map[net.Conn]struct{}
}

// IsBodyFetch matches a FETCH (or UID FETCH) command that asks for a
// whole message body: BODY[] or BODY.PEEK[].
func IsBodyFetch(line []byte) bool {
	u := bytes.ToUpper(line)
	return bytes.Contains(u, []byte(" FETCH ")) && (bytes.Contains(u, []byte("BODY.PEEK[]")) || bytes.Contains(u, []byte("BODY[]")))
}

// StartCounter listens on a free loopback port and forwards to upstream
// until the test ends, counting the commands match selects.
func StartCounter(t TB, upstream string, match func(line []byte) bool) *Counter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultproxy: listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Counter{Addr: ln.Addr().String(), upstream: upstream, match: match, ln: ln, ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Matched is how many matching commands the proxy received so far
// (forwarded or held).
func (p *Counter) Matched() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.matched
}

// Held is how many matching commands wait for Release now.
func (p *Counter) Held() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

// Hold makes matching commands from now on wait in the proxy, not
// forwarded, until Release.
func (p *Counter) Hold() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold == nil {
		p.hold = make(chan struct{})
	}
}

// Release forwards the held commands and stops holding.
func (p *Counter) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hold != nil {
		close(p.hold)
		p.hold = nil
	}
}

// Close stops listening, closes every connection and waits.
func (p *Counter) Close() {
	p.cancel()
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Counter) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.upstream)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns[client], p.conns[server] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			p.fromClient(client, server)
			p.drop(client, server)
		}()
		go func() {
			defer p.wg.Done()
			_, _ = io.Copy(client, server)
			p.drop(client, server)
		}()
	}
}

func (p *Counter) drop(conns ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range conns {
		c.Close()
		delete(p.conns, c)
	}
}

// fromClient forwards the client's bytes, each command's first line only
// once it is complete, so that a matching one is counted (and held)
// before the server sees it.
func (p *Counter) fromClient(client, server net.Conn) {
	var s scanner
	var first []byte // the current command's first line, while incomplete
	collecting := false
	buf := make([]byte, 32<<10)
	for {
		n, err := client.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			if s.atStart() {
				collecting, first = true, first[:0]
			}
			m, ev := s.advance(data)
			seg := data[:m]
			data = data[m:]
			if collecting {
				first = append(first, seg...)
				if ev == evNone {
					continue
				}
				collecting, seg = false, first
				if !p.admit(seg) {
					return
				}
			}
			if _, werr := server.Write(seg); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// admit counts a command's first line if it matches and waits while the
// proxy holds; false means the proxy closed meanwhile.
func (p *Counter) admit(line []byte) bool {
	if !p.match(line) {
		return true
	}
	p.mu.Lock()
	p.matched++
	hold := p.hold
	if hold != nil {
		p.held++
	}
	p.mu.Unlock()
	if hold == nil {
		return true
	}
	defer func() {
		p.mu.Lock()
		p.held--
		p.mu.Unlock()
	}()
	select {
	case <-hold:
		return true
	case <-p.ctx.Done():
		return false
	}
}
