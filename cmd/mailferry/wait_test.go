package main

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// stuckServer is a loopback IMAP server that logs in (or accepts
// STARTTLS) and then never answers again; ready is closed when a client
// is stuck on it.
func stuckServer(t *testing.T, startTLS bool) (addr string, ready <-chan struct{}) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stuck := make(chan struct{})
	var once sync.Once
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				_, _ = c.Write([]byte("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] stuck ready\r\n"))
				for {
					l, err := br.ReadString('\n')
					if err != nil {
						return
					}
					tag, rest, _ := strings.Cut(strings.TrimSpace(l), " ")
					switch cmd, _, _ := strings.Cut(strings.ToUpper(rest), " "); {
					case cmd == "STARTTLS" && startTLS:
						_, _ = c.Write([]byte(tag + " OK begin TLS\r\n"))
						once.Do(func() { close(stuck) })
					case cmd == "STARTTLS":
						_, _ = c.Write([]byte(tag + " BAD no TLS here\r\n"))
					case cmd == "LOGIN":
						_, _ = c.Write([]byte(tag + " OK logged in\r\n"))
					case cmd == "CAPABILITY":
						_, _ = c.Write([]byte("* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n" + tag + " OK done\r\n"))
					default:
						once.Do(func() { close(stuck) }) // never answered
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), stuck
}

// Ctrl-C works while migrate is stuck on a server that went silent after
// login, and on one whose STARTTLS handshake never comes: the first
// SIGINT asks to finish what is in flight, the second ends the process at
// once with exit 130 (the idle timeout, one minute here, is not what ends
// it).
func TestSIGINTWhileStuck(t *testing.T) {
	bin := mailferryBinary(t)
	for _, tc := range []struct {
		name     string
		startTLS bool
	}{{"silent after login", false}, {"stalled STARTTLS", true}} {
		t.Run(tc.name, func(t *testing.T) {
			addr, stuck := stuckServer(t, tc.startTLS)
			cmd := exec.Command(bin, "migrate", "--from-tls", "none", "--to-tls", "none", "--from", "imap://alice@"+addr, "--to", "imap://bob@"+addr,
				"--state", "none", "--io-timeout", "1m")
			cmd.Env = append(os.Environ(), "MAILFERRY_FROM_PASSWORD=pw", "MAILFERRY_TO_PASSWORD=pw")
			var stderr syncBuf
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-stuck:
			case err := <-done:
				t.Fatalf("exited before getting stuck: %v\n%s", err, stderr.String())
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatal("never reached the server")
			}
			interruptTwice(t, cmd, done, &stderr)
		})
	}
}

// interruptTwice sends SIGINT, waits for the "interrupt again" hint (or
// the exit), sends the second, and wants exit 130 within 5 s.
func interruptTwice(t *testing.T, cmd *exec.Cmd, done <-chan error, stderr *syncBuf) {
	t.Helper()
	_ = cmd.Process.Signal(syscall.SIGINT)
	start := time.Now()
	for !strings.Contains(stderr.String(), "interrupt again") {
		select {
		case err := <-done:
			checkExit130(t, err, time.Since(start), stderr.String())
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Since(start) > 5*time.Second {
			_ = cmd.Process.Kill()
			t.Fatalf("no answer to SIGINT:\n%s", stderr.String())
		}
	}
	_ = cmd.Process.Signal(syscall.SIGINT)
	select {
	case err := <-done:
		checkExit130(t, err, time.Since(start), stderr.String())
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("still running 5s after the second SIGINT:\n%s", stderr.String())
	}
}

func checkExit130(t *testing.T, err error, took time.Duration, stderr string) {
	t.Helper()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != exitCanceled {
		t.Fatalf("exit %v after SIGINT, want %d:\n%s", err, exitCanceled, stderr)
	}
	t.Logf("exited 130 %s after the first SIGINT", took.Round(time.Millisecond))
}
