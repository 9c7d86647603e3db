package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/inventory"
)

// discover on real Dovecot: master-user and SASL PLAIN logins, sizes from
// STATUS SIZE (one cluster) and from summed RFC822.SIZE (the other hides
// STATUS=SIZE), load kept, a mailbox that cannot log in fails alone.
func TestDiscoverOnDovecot(t *testing.T) {
	dovecot.Require(t)
	one := dovecot.Start(t, dovecot.Options{Name: "one"})
	two := dovecot.Start(t, dovecot.Options{Name: "two", Separator: "/", Extra: []string{
		"imap_capability = IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE SPECIAL-USE NAMESPACE UIDPLUS",
	}})
	want := map[string][2]int64{} // mailbox -> bytes, messages
	seed := func(s *dovecot.Server, user string, n uint64) {
		m := corpus.Generate(corpus.Options{Seed: n, Folders: 4, MessagesPerFolder: 5, MaxSize: 64 << 10, Odd: true})
		corpus.Seed(t, s.Addr, user, s.Users[user], m)
		var b, c int64
		for _, f := range corpus.Expect(m).Folders {
			for _, msg := range f.Messages {
				b += msg.Size
				c++
			}
		}
		want[user] = [2]int64{b, c}
	}
	seed(one, "alice", 1)
	seed(one, "bob", 2)
	seed(two, "carol", 3)

	dir := t.TempDir()
	pw1 := filepath.Join(dir, "one.pw")
	os.WriteFile(pw1, []byte(one.MasterPassword+"\n"), 0o600)
	t.Setenv("MF_TEST_TWO_PW", two.MasterPassword)
	yaml := fmt.Sprintf(`clusters:
  - name: one
    url: imap://%s
    tls: none
    auth: {method: master, user: %s, password_file: %s}
    capacity: {bytes: 1GiB, load: 100}
    limits: {connections: 2}
  - name: two
    url: imap://%s
    tls: none
    auth: {method: sasl-plain, user: %s, password_env: MF_TEST_TWO_PW}
    capacity: {bytes: 1GiB, load: 100}
mailboxes_csv: mailboxes.csv
`, one.Addr, one.MasterUser, pw1, two.Addr, two.MasterUser)
	invPath := filepath.Join(dir, "inv.yaml")
	os.WriteFile(invPath, []byte(yaml), 0o600)
	os.WriteFile(filepath.Join(dir, "mailboxes.csv"), []byte("alice,one,1,1.5\nbob,one,1,2.5\nnobody,one,1,0.5\ncarol,two,1,3.5\n"), 0o600)

	out := filepath.Join(dir, "measured.csv")
	code, stdout, stderr := runCLI(t, nil, "discover", "-i", invPath, "-o", out)
	if code != exitPartial {
		t.Fatalf("exit %d, want %d (nobody cannot log in); stderr %q stdout %q", code, exitPartial, stderr, stdout)
	}
	if !strings.Contains(stderr, "nobody") || !strings.Contains(stderr, "1 of 4 mailboxes") {
		t.Errorf("stderr does not name the failed mailbox: %q", stderr)
	}
	if strings.Contains(stderr, one.MasterPassword) || strings.Contains(stderr, two.MasterPassword) {
		t.Errorf("stderr leaks a password: %q", stderr)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mbs, err := inventory.ReadCSV(out, f)
	if err != nil {
		t.Fatal(err)
	}
	loads := map[string]float64{"alice": 1.5, "bob": 2.5, "nobody": 0.5, "carol": 3.5}
	for _, m := range mbs {
		if m.Load != loads[m.Name] {
			t.Errorf("%s: load %v, want %v kept", m.Name, m.Load, loads[m.Name])
		}
		if m.Name == "nobody" {
			if m.Bytes != 1 {
				t.Errorf("nobody: bytes %d, want the old value 1", m.Bytes)
			}
			continue
		}
		if w := want[m.Name]; m.Bytes != w[0] || m.Messages != w[1] {
			t.Errorf("%s: measured %d bytes %d messages, want %d and %d", m.Name, m.Bytes, m.Messages, w[0], w[1])
		}
	}
	if len(mbs) != 4 {
		t.Errorf("CSV has %d rows, want 4", len(mbs))
	}
}
