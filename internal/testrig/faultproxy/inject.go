package faultproxy

import (
	"bytes"
	"io"
	"net"
	"sync"
)

// Injector is a loopback proxy for plaintext IMAP that adds server
// responses a real server cannot be made to send (unknown untagged
// responses, folder names in invalid modified UTF-7): after each server
// response whose last line contains a chosen pattern, it sends the chosen
// bytes. It follows lines and literals, so a pattern inside a message body
// never matches. Client bytes pass untouched.
type Injector struct {
	Addr     string
	upstream string
	ln       net.Listener
	mu       sync.Mutex
	rules    []injectRule
	conns    []net.Conn
	wg       sync.WaitGroup
}

type injectRule struct {
	after, insert []byte
}

// StartInjector listens on a free loopback port and forwards to upstream
// until the test ends.
func StartInjector(t TB, upstream string) *Injector {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("injector: %v", err)
	}
	in := &Injector{Addr: ln.Addr().String(), upstream: upstream, ln: ln}
	in.wg.Add(1)
	go in.accept()
	t.Cleanup(in.Close)
	return in
}

// InjectAfter sends insert (whole response lines with CRLF) after every
// server response whose last line contains after.
func (in *Injector) InjectAfter(after, insert []byte) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.rules = append(in.rules, injectRule{after: append([]byte(nil), after...), insert: append([]byte(nil), insert...)})
}

// Close stops accepting and closes every connection.
func (in *Injector) Close() {
	in.ln.Close()
	in.mu.Lock()
	for _, c := range in.conns {
		c.Close()
	}
	in.mu.Unlock()
	in.wg.Wait()
}

func (in *Injector) accept() {
	defer in.wg.Done()
	for {
		client, err := in.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", in.upstream)
		if err != nil {
			client.Close()
			continue
		}
		in.mu.Lock()
		in.conns = append(in.conns, client, server)
		in.mu.Unlock()
		in.wg.Add(2)
		go func() {
			defer in.wg.Done()
			_, _ = io.Copy(server, client)
			server.Close()
		}()
		go func() {
			defer in.wg.Done()
			in.fromServer(client, server)
			client.Close()
		}()
	}
}

// fromServer forwards the server's bytes, inserting after matching
// responses.
func (in *Injector) fromServer(client, server net.Conn) {
	var s scanner
	buf := make([]byte, 32<<10)
	for {
		n, err := server.Read(buf)
		data := buf[:n]
		for len(data) > 0 {
			k, ev := s.advance(data)
			if _, werr := client.Write(data[:k]); werr != nil {
				return
			}
			data = data[k:]
			if ev == evBoundary {
				in.mu.Lock()
				for _, r := range in.rules {
					if bytes.Contains(s.line, r.after) {
						if _, werr := client.Write(r.insert); werr != nil {
							in.mu.Unlock()
							return
						}
					}
				}
				in.mu.Unlock()
			}
		}
		if err != nil {
			return
		}
	}
}
