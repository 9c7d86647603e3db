package migrate_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/migrate"
	"mailferry/state"
	"mailferry/state/statetest"
)

// A state that does not know the target's copies (the state file was
// lost, the mailbox was reached by another name, or it moves back to a
// cluster that kept its old copy) must not copy them again: what the
// target folder already holds is matched by bytes and date first. Copies
// are adopted, twins by multiplicity; the target's own mail (other bytes,
// or the same bytes filed at another date) is left alone and counted.
func TestNewStateAdoptsWhatTheTargetHas(t *testing.T) {
	m := smallMessages(81, 40) // twins and duplicates among them
	r := newStateRig(t, statetest.SQLite(t), dovecot.Options{}, m)
	r.copy(migrate.Options{}, nil)
	total := m.TotalMessages()

	// The target's own mail in INBOX: two messages nobody copied, and the
	// bytes of a source message filed there at another date.
	inbox := m.Folders[0]
	twin := inbox.Messages[3]
	body := readAll(t, twin)
	own := []struct {
		body string
		date time.Time
	}{
		{"From: x@example.org\r\nSubject: own 1\r\n\r\nmine\r\n", time.Date(2019, 5, 1, 8, 0, 0, 0, time.UTC)},
		{"From: x@example.org\r\nSubject: own 2\r\n\r\nmine too\r\n", time.Date(2019, 5, 2, 8, 0, 0, 0, time.UTC)},
		{body, twin.Date.Add(-48 * time.Hour)},
	}
	on(t, r.dst, func(c *imapclient.Client) {
		for _, o := range own {
			cmd := c.Append("INBOX", int64(len(o.body)), &imap.AppendOptions{Time: o.date})
			if _, err := cmd.Write([]byte(o.body)); err != nil {
				t.Fatal(err)
			}
			must(t, cmd.Close())
			if _, err := cmd.Wait(); err != nil {
				t.Fatal(err)
			}
		}
	})
	// And one copy is gone from the target: that one is copied again.
	var gone imap.UID
	on(t, r.dst, func(c *imapclient.Client) {
		name := strings.Join(m.Folders[1].Path, "/")
		_, err := c.Select(name, nil).Wait()
		must(t, err)
		gone = 2
		var set imap.UIDSet
		set.AddNum(gone)
		must(t, c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close())
		must(t, c.UIDExpunge(set).Close())
	})

	for _, run := range []struct {
		name  string
		state func() *state.Lease
	}{
		{"new state", func() *state.Lease { return freshLease(t, "imap://alice@localhost", "imap://admin@other") }},
		{"no state", func() *state.Lease { return nil }},
	} {
		t.Run(run.name, func(t *testing.T) {
			rep, err := migrate.Copy(context.Background(), userCfg(t, "source", r.src, "alice"),
				userCfg(t, "target", r.dst, "alice"), migrate.Options{State: run.state()})
			if err != nil || rep.Failed != 0 {
				t.Fatalf("copy: %v, %d failed: %v", err, failed(rep), failures(rep))
			}
			// The first of the two runs copies the one that was gone; the
			// second finds it too.
			// (Copied counts the adopted too: every message now on the target.)
			if appended := rep.Copied - rep.Adopted; rep.Copied != total || appended > 1 || rep.TargetOnly != len(own) {
				t.Errorf("adopted %d, appended %d, target only %d; want %d on the target, at most 1 appended, %d target only",
					rep.Adopted, appended, rep.TargetOnly, total, len(own))
			}
			want := corpus.TakeSnapshot(t, r.src.Addr, "alice", r.src.Users["alice"])
			got := corpus.TakeSnapshot(t, r.dst.Addr, "alice", r.dst.Users["alice"])
			// Without the target's own three, the target is the source.
			ownKeys := map[string]bool{}
			for _, o := range own {
				sum := sha256.Sum256([]byte(o.body))
				ownKeys[hex.EncodeToString(sum[:])+o.date.UTC().Format(time.RFC3339)] = true
			}
			g := got.Folders["INBOX"]
			kept := g.Messages[:0]
			for _, msg := range g.Messages {
				if !ownKeys[msg.SHA256+msg.Date.UTC().Format(time.RFC3339)] {
					kept = append(kept, msg)
				}
			}
			if n := len(g.Messages) - len(kept); n != len(own) {
				t.Errorf("the target's own messages: %d left, want %d", n, len(own))
			}
			g.Messages = kept
			if diff := corpus.Compare(want, got, nil); len(diff) > 0 {
				t.Errorf("target differs from source (beside its own mail):\n%s", strings.Join(diff, "\n"))
			}
		})
	}
}

// freshLease is a lease of a new, empty state under another key.
func freshLease(t *testing.T, src, dst string) *state.Lease {
	t.Helper()
	st, err := state.Open(context.Background(), statetest.SQLite(t))
	must(t, err)
	t.Cleanup(func() { st.Close() })
	l, err := st.Acquire(context.Background(), state.Key{Source: src, Target: dst}, "test", time.Hour)
	must(t, err)
	return l
}

func readAll(t *testing.T, m corpus.Message) string {
	t.Helper()
	b, err := io.ReadAll(m.Open())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
