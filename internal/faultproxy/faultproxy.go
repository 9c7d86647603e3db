// Package faultproxy is a loopback TCP proxy for tests that sits between
// mailferry and a real IMAP server and misbehaves on command: it corrupts
// chosen bytes on their way to the server and drops connections.
package faultproxy

import (
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
)

// TB is the subset of testing.TB the proxy needs.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
}

// Proxy forwards 127.0.0.1:port to an upstream address.
type Proxy struct {
	Addr     string
	upstream string
	ln       net.Listener

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	pattern []byte
	times   int // corruptions left; <0 means always
	hits    int
	wg      sync.WaitGroup
}

// Start listens on a free loopback port and forwards to upstream until the
// test ends.
func Start(t TB, upstream string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("faultproxy: listen: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), upstream: upstream, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// CorruptUpstream makes the next n occurrences (n < 0: all) of pattern in
// the client-to-server stream arrive with their first byte changed, so
// sizes stay equal and contents differ.
func (p *Proxy) CorruptUpstream(pattern []byte, n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pattern, p.times = append([]byte(nil), pattern...), n
}

// Corruptions is how many occurrences were corrupted so far.
func (p *Proxy) Corruptions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits
}

// DropAll resets every open connection.
func (p *Proxy) DropAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
}

// Close stops accepting and drops every connection.
func (p *Proxy) Close() {
	_ = p.ln.Close()
	p.DropAll()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.upstream)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.track(c, true)
		p.track(u, true)
		p.wg.Add(2)
		go func() {
			defer p.wg.Done()
			p.pipe(u, c, true)
		}()
		go func() {
			defer p.wg.Done()
			p.pipe(c, u, false)
		}()
	}
}

// pipe copies src to dst; upstream traffic passes the corrupter.
func (p *Proxy) pipe(dst, src net.Conn, upstream bool) {
	defer func() {
		_ = dst.Close()
		_ = src.Close()
		p.track(dst, false)
		p.track(src, false)
	}()
	buf := make([]byte, 32<<10)
	var held []byte // a tail that may be the start of the pattern
	for {
		n, err := src.Read(buf)
		if n > 0 {
			data := buf[:n]
			if upstream {
				data = p.corrupt(append(held, data...))
				held = nil
				if k := p.partialSuffix(data); k > 0 {
					held = append([]byte(nil), data[len(data)-k:]...)
					data = data[:len(data)-k]
				}
			}
			if _, werr := dst.Write(data); werr != nil {
				return
			}
		}
		if err != nil {
			if len(held) > 0 {
				_, _ = dst.Write(held)
			}
			if !errors.Is(err, io.EOF) {
				return
			}
			return
		}
	}
}

func (p *Proxy) corrupt(data []byte) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pattern) == 0 {
		return data
	}
	for off := 0; p.times != 0; {
		i := bytes.Index(data[off:], p.pattern)
		if i < 0 {
			break
		}
		data[off+i] ^= 0x20 // flips case of a letter: same size, other bytes
		off += i + len(p.pattern)
		p.hits++
		if p.times > 0 {
			p.times--
		}
	}
	return data
}

// partialSuffix is the length of the longest proper suffix of data that is
// a prefix of the pattern (held back until more bytes arrive).
func (p *Proxy) partialSuffix(data []byte) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.pattern) == 0 || p.times == 0 {
		return 0
	}
	for k := min(len(p.pattern)-1, len(data)); k > 0; k-- {
		if bytes.HasPrefix(p.pattern, data[len(data)-k:]) {
			return k
		}
	}
	return 0
}
