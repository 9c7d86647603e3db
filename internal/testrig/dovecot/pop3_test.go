package dovecot_test

import (
	"bufio"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailferry/internal/testrig/dovecot"
)

// TestPOP3Option: POP3 is off by default (no POP3 in the configuration, no
// address); with Options.POP3 the server also greets on a POP3 port of its
// own and the users and the master user log in there.
func TestPOP3Option(t *testing.T) {
	dovecot.Require(t)
	t.Parallel()
	plain := dovecot.Start(t, dovecot.Options{Name: "nopop"})
	if plain.POP3Addr != "" {
		t.Fatalf("POP3Addr %q without Options.POP3", plain.POP3Addr)
	}
	conf, err := os.ReadFile(filepath.Join(plain.Dir, "dovecot.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(conf), "pop3") {
		t.Fatalf("default configuration mentions pop3:\n%s", conf)
	}

	s := dovecot.Start(t, dovecot.Options{Name: "pop", POP3: true, TLS: true})
	if s.POP3Addr == "" || s.POP3Addr == s.Addr || s.POP3Addr == s.TLSAddr {
		t.Fatalf("POP3Addr %q (IMAP %s, IMAPS %s)", s.POP3Addr, s.Addr, s.TLSAddr)
	}
	for _, login := range []struct{ user, pass string }{{"alice", s.Users["alice"]}, {s.MasterLogin("bob"), s.MasterPassword}} {
		c, err := net.DialTimeout("tcp", s.POP3Addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(c)
		say := func(cmd string) string {
			t.Helper()
			if cmd != "" {
				if _, err := c.Write([]byte(cmd + "\r\n")); err != nil {
					t.Fatal(err)
				}
			}
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("after %q: %v", cmd, err)
			}
			return strings.TrimSpace(line)
		}
		for _, step := range []struct{ cmd, want string }{{"", "+OK"}, {"USER " + login.user, "+OK"}, {"PASS " + login.pass, "+OK"}, {"STAT", "+OK 0 0"}, {"QUIT", "+OK"}} {
			if got := say(step.cmd); !strings.HasPrefix(got, step.want) {
				t.Fatalf("%s: %q answered %q, want %q\n%s", login.user, step.cmd, got, step.want, s.LogTail(20))
			}
		}
		c.Close()
	}
}
