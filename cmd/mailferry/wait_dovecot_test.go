package main

import (
	"os/exec"
	"testing"
	"time"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/internal/testrig/faultproxy"
)

// Ctrl-C ends migrate while a large message's literal is stalled mid-way
// (the source stops sending) and while it crawls under a 16 KiB/s limit:
// two SIGINTs, exit 130 at once, whatever --io-timeout says.
func TestSIGINTWhileStalledOrThrottled(t *testing.T) {
	dovecot.Require(t)
	bin := mailferryBinary(t)
	for _, tc := range []struct {
		name  string
		stall bool
		args  []string
	}{
		{"stalled mid-literal", true, nil},
		{"16 KiB/s on a 5 MB message", false, []string{"--max-bytes-per-second", "16KiB"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := dovecot.Start(t, dovecot.Options{Name: "src"})
			dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/"})
			m := &corpus.Mailbox{Folders: []corpus.Folder{{Path: []string{"INBOX"}, Subscribed: true,
				Messages: []corpus.Message{corpus.Big(5<<20, 91)}}}}
			corpus.Seed(t, src.Addr, "alice", src.Users["alice"], m)
			proxy := faultproxy.Start(t, src.Addr)
			if tc.stall {
				proxy.SetBandwidth(1 << 20) // slow enough to stall it mid-literal
			}
			args := append([]string{"migrate", "--from-tls", "none", "--to-tls", "none", "--from", "imap://alice@" + proxy.Addr, "--to", "imap://alice@" + dst.Addr,
				"--state", "none", "--io-timeout", "1m"}, tc.args...)
			cmd := exec.Command(bin, args...)
			cmd.Env = append(crashEnviron(), "MAILFERRY_FROM_PASSWORD="+src.Users["alice"], "MAILFERRY_TO_PASSWORD="+dst.Users["alice"])
			var stderr syncBuf
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			// Wait until the big literal is on its way (then stall it).
			want := int64(1 << 20)
			if !tc.stall {
				want = 32 << 10
			}
			deadline := time.Now().Add(20 * time.Second)
			for proxy.Sent() < want {
				select {
				case err := <-done:
					t.Fatalf("exited before the literal was under way: %v\n%s", err, stderr.String())
				case <-time.After(10 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					_ = cmd.Process.Kill()
					t.Fatalf("the literal never got going (%d bytes sent)", proxy.Sent())
				}
			}
			if tc.stall {
				proxy.Stall(true)
				t.Cleanup(func() { proxy.Stall(false) })
			}
			interruptTwice(t, cmd, done, &stderr)
		})
	}
}
