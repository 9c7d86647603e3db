package dovecot_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"mailferry/internal/testrig/dovecot"
)

func dial(t *testing.T, addr string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func login(t *testing.T, addr, user, pass string) *imapclient.Client {
	t.Helper()
	c := dial(t, addr)
	if err := c.Login(user, pass).Wait(); err != nil {
		t.Fatalf("login %q at %s: %v", user, addr, err)
	}
	return c
}

func list(t *testing.T, c *imapclient.Client) map[string]*imap.ListData {
	t.Helper()
	data, err := c.List("", "*", &imap.ListOptions{ReturnSubscribed: true, ReturnSpecialUse: true}).Collect()
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	out := make(map[string]*imap.ListData)
	for _, d := range data {
		out[d.Mailbox] = d
	}
	return out
}

func TestSeparatorsAndCapabilities(t *testing.T) {
	dovecot.Require(t)
	t.Parallel()
	for _, sep := range []string{".", "/"} {
		t.Run(sep, func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			s := dovecot.Start(t, dovecot.Options{Separator: sep, Name: "sep" + sep})
			t.Logf("%v started in %v", s, time.Since(start))
			if s.Separator != sep {
				t.Errorf("Separator = %q, want %q", s.Separator, sep)
			}
			c := login(t, s.Addr, "alice", "alice-pw")

			root, err := c.List("", "", nil).Collect()
			if err != nil || len(root) != 1 {
				t.Fatalf(`LIST "" "": %v, %v`, root, err)
			}
			if got := string(root[0].Delim); got != sep {
				t.Errorf(`LIST "" "" delimiter = %q, want %q`, got, sep)
			}

			for _, cap := range []imap.Cap{imap.CapUIDPlus, imap.CapCondStore, imap.CapSpecialUse, imap.CapStatusSize, imap.CapLiteralPlus} {
				if !c.Caps().Has(cap) {
					t.Errorf("capability %s not offered", cap)
				}
			}

			nested := "Archive" + sep + "2019" + sep + "Überweisungen & Co"
			if err := c.Create(nested, nil).Wait(); err != nil {
				t.Fatalf("create %q: %v", nested, err)
			}
			boxes := list(t, c)
			d, ok := boxes[nested]
			if !ok {
				t.Fatalf("LIST lacks %q: %v", nested, slices.Collect(mapKeys(boxes)))
			}
			if string(d.Delim) != sep {
				t.Errorf("LIST %q delimiter = %q, want %q", nested, string(d.Delim), sep)
			}
			for use, name := range dovecot.DefaultSpecialUse {
				d, ok := boxes[name]
				if !ok {
					t.Errorf("special-use folder %q missing", name)
					continue
				}
				if !slices.Contains(d.Attrs, imap.MailboxAttr(use)) || !slices.Contains(d.Attrs, imap.MailboxAttrSubscribed) {
					t.Errorf("folder %q attrs %v, want %s and \\Subscribed", name, d.Attrs, use)
				}
			}
			if _, ok := boxes["INBOX"]; !ok {
				t.Errorf("INBOX missing")
			}
		})
	}
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestMasterUserLogin(t *testing.T) {
	dovecot.Require(t)
	t.Parallel()
	s := dovecot.Start(t, dovecot.Options{Name: "master"})

	// alice creates a folder; the master user must see alice's mailbox.
	if err := login(t, s.Addr, "alice", "alice-pw").Create("Private", nil).Wait(); err != nil {
		t.Fatal(err)
	}

	t.Run("LOGIN user*master", func(t *testing.T) {
		c := login(t, s.Addr, s.MasterLogin("alice"), s.MasterPassword)
		if _, ok := list(t, c)["Private"]; !ok {
			t.Errorf("master login as alice does not see alice's folder")
		}
	})
	t.Run("SASL PLAIN authzid", func(t *testing.T) {
		c := dial(t, s.Addr)
		if err := c.Authenticate(sasl.NewPlainClient("alice", s.MasterUser, s.MasterPassword)); err != nil {
			t.Fatalf("authenticate: %v", err)
		}
		if _, ok := list(t, c)["Private"]; !ok {
			t.Errorf("PLAIN authzid=alice does not see alice's folder")
		}
	})
	t.Run("other user is separate", func(t *testing.T) {
		c := login(t, s.Addr, s.MasterLogin("bob"), s.MasterPassword)
		if _, ok := list(t, c)["Private"]; ok {
			t.Errorf("bob sees alice's folder")
		}
	})
	t.Run("wrong password fails fast", func(t *testing.T) {
		c := dial(t, s.Addr)
		start := time.Now()
		err := c.Login("alice", "wrong").Wait()
		var imapErr *imap.Error
		if !errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodeAuthenticationFailed {
			t.Errorf("login with wrong password: %v, want AUTHENTICATIONFAILED", err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("failed login took %v, want fast (auth_failure_delay = 0)", d)
		}
		if err := c.Login(s.MasterLogin("alice"), "wrong").Wait(); err == nil {
			t.Errorf("master login with wrong password succeeded")
		}
	})
}

func TestTLS(t *testing.T) {
	dovecot.Require(t)
	t.Parallel()
	s := dovecot.Start(t, dovecot.Options{TLS: true, Name: "tls", Separator: "/"})
	if s.TLSAddr == "" || s.CAFile == "" {
		t.Fatalf("TLSAddr %q, CAFile %q: want both set", s.TLSAddr, s.CAFile)
	}
	pemData, err := os.ReadFile(s.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemData) {
		t.Fatalf("CAFile %s holds no certificate", s.CAFile)
	}
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}

	check := func(t *testing.T, c *imapclient.Client, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.Close()
		if err := c.Login("alice", "alice-pw").Wait(); err != nil {
			t.Fatalf("login over TLS: %v", err)
		}
		if err := c.Noop().Wait(); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("implicit", func(t *testing.T) {
		c, err := imapclient.DialTLS(s.TLSAddr, &imapclient.Options{TLSConfig: cfg})
		check(t, c, err)
	})
	t.Run("STARTTLS", func(t *testing.T) {
		c, err := imapclient.DialStartTLS(s.Addr, &imapclient.Options{TLSConfig: cfg})
		check(t, c, err)
	})
	t.Run("TLSConfig helper", func(t *testing.T) {
		c, err := imapclient.DialTLS(s.TLSAddr, &imapclient.Options{TLSConfig: s.TLSConfig()})
		check(t, c, err)
	})
	t.Run("untrusted CA is refused", func(t *testing.T) {
		c, err := imapclient.DialTLS(s.TLSAddr, &imapclient.Options{TLSConfig: &tls.Config{RootCAs: x509.NewCertPool()}})
		if err == nil {
			c.Close()
			t.Fatalf("TLS dial with an empty trust store succeeded")
		}
	})
	t.Run("plain LOGIN on loopback", func(t *testing.T) {
		login(t, s.Addr, "bob", "bob-pw")
	})
}

func TestCustomSpecialUseAndUsers(t *testing.T) {
	dovecot.Require(t)
	t.Parallel()
	s := dovecot.Start(t, dovecot.Options{
		Name:       "custom",
		Users:      map[string]string{"dave@example.com": "dave-pw"},
		MasterUser: "root-admin", MasterPassword: "s3cret",
		SpecialUse: map[string]string{`\Sent`: "Sent Messages", `\Trash`: "Deleted Items"},
	})
	login(t, s.Addr, "dave@example.com", "dave-pw")
	c := login(t, s.Addr, s.MasterLogin("dave@example.com"), "s3cret")
	boxes := list(t, c)
	for name, use := range map[string]imap.MailboxAttr{"Sent Messages": imap.MailboxAttrSent, "Deleted Items": imap.MailboxAttrTrash} {
		if d, ok := boxes[name]; !ok || !slices.Contains(d.Attrs, use) {
			t.Errorf("folder %q with %s missing: %v", name, use, boxes[name])
		}
	}
	if _, ok := boxes["Sent"]; ok {
		t.Errorf("default Sent folder present although SpecialUse was given")
	}
	if err := dial(t, s.Addr).Login("alice", "alice-pw").Wait(); err == nil {
		t.Errorf("default user alice exists although Users was given")
	}
}

func TestStopIsIdempotent(t *testing.T) {
	dovecot.Require(t)
	t.Parallel()
	s := dovecot.Start(t, dovecot.Options{Name: "stop"})
	s.Stop()
	s.Stop()
	if c, err := imapclient.DialInsecure(s.Addr, &imapclient.Options{}); err == nil {
		err = c.Noop().Wait()
		c.Close()
		if err == nil {
			t.Errorf("server still answers after Stop")
		}
	}
}
