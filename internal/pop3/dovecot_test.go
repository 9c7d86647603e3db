package pop3_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailferry/internal/pop3"
	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
)

func addrOf(t *testing.T, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return h, n
}

// TestDovecot: the client against a real Dovecot POP3 server: a user's
// own login, a master login ("alice*admin" as USER), SASL PLAIN as the
// master user acting for the mailbox, over STLS with the server's CA; the
// listing is the INBOX in UID order, UIDLs as pop3_uidl_format says.
func TestDovecot(t *testing.T) {
	dovecot.Require(t)
	t.Parallel()
	s := dovecot.Start(t, dovecot.Options{Name: "pop3c", POP3: true, TLS: true, Extra: []string{"pop3_uidl_format = %08Xu"}})
	m := corpus.Generate(corpus.Options{Seed: 7, Folders: 2, MessagesPerFolder: 5, MaxSize: 8 << 10})
	corpus.Seed(t, s.Addr, "alice", s.Users["alice"], m)
	inbox := m.Folder("INBOX")
	host, port := addrOf(t, s.POP3Addr)
	base := pop3.Config{Side: "source", Host: host, Port: port, TLS: pop3.TLSStartTLS, CAFile: s.CAFile, IOTimeout: 10 * time.Second}
	logins := map[string]pop3.Config{}
	own := base
	own.Login, own.Password = "alice", s.Users["alice"]
	logins["own"] = own
	master := base
	master.Login, master.Password = s.MasterLogin("alice"), s.MasterPassword
	logins["master"] = master
	plain := base
	plain.Admin, plain.Mailbox, plain.Password = s.MasterUser, "alice", s.MasterPassword
	logins["sasl-plain"] = plain
	for name, cfg := range logins {
		t.Run(name, func(t *testing.T) {
			l, err := pop3.Read(context.Background(), cfg)
			if err != nil {
				t.Fatalf("%v\n%s", err, s.LogTail(20))
			}
			if len(l.Messages) != len(inbox.Messages) {
				t.Fatalf("%d messages over POP3, %d in the INBOX", len(l.Messages), len(inbox.Messages))
			}
			for i, msg := range l.Messages {
				if want := fmt.Sprintf("%08X", i+1); !strings.EqualFold(msg.UIDL, want) {
					t.Errorf("message %d: UIDL %q, want %q", msg.Num, msg.UIDL, want)
				}
				if msg.Size <= 0 {
					t.Errorf("message %d: size %d", msg.Num, msg.Size)
				}
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		cfg := master
		cfg.Password = "not-the-pw"
		_, err := pop3.Read(context.Background(), cfg)
		var ae *pop3.AuthError
		if !errors.As(err, &ae) || strings.Contains(err.Error(), "not-the-pw") {
			t.Fatalf("want an AuthError without the password, got %v", err)
		}
	})
}
