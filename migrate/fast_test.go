package migrate_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/memserver"
	"mailferry/migrate"
	"mailferry/state"
	"mailferry/state/statetest"
)

// The engine's fast suite: the copy, resume and late-commit handling on
// in-memory servers, no Dovecot needed (go test ./migrate/ -run Fast).
// Fidelity is judged on Dovecot elsewhere; these check the engine's
// decisions end to end in well under a second.

type fastRig struct {
	t        *testing.T
	src, dst *memserver.Server
	lease    *state.Lease
	m        *corpus.Mailbox
}

func newFastRig(t *testing.T, m *corpus.Mailbox) *fastRig {
	t.Helper()
	r := &fastRig{t: t, m: m}
	var err error
	if r.src, err = memserver.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.src.Close() })
	if r.dst, err = memserver.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.dst.Close() })
	r.src.AddUser("alice", "pw")
	r.dst.AddUser("alice", "pw")
	corpus.Seed(t, r.src.Addr, "alice", "pw", m)
	ctx := context.Background()
	st, err := state.Open(ctx, statetest.SQLite(t))
	must(t, err)
	t.Cleanup(func() { st.Close() })
	r.lease, err = st.Acquire(ctx, state.Key{Source: "mem-src", Target: "mem-dst"}, "test", time.Hour)
	must(t, err)
	return r
}

func (r *fastRig) copy() *migrate.Report {
	r.t.Helper()
	rep, err := migrate.Copy(context.Background(),
		endpoint(r.t, "source", r.src.Addr, "alice", "pw"),
		endpoint(r.t, "target", r.dst.Addr, "alice", "pw"),
		migrate.Options{State: r.lease, Connections: 2})
	if err != nil || rep.Failed != 0 {
		r.t.Fatalf("copy: %v %v", err, failures(rep))
	}
	return rep
}

func (r *fastRig) exact() {
	r.t.Helper()
	src := corpus.TakeSnapshot(r.t, r.src.Addr, "alice", "pw")
	dst := corpus.TakeSnapshot(r.t, r.dst.Addr, "alice", "pw")
	if diff := corpus.Compare(src, dst, nil); len(diff) > 0 {
		r.t.Fatalf("target differs from source:\n%s", strings.Join(diff, "\n"))
	}
}

// onMem runs f with a logged-in client of an in-memory server.
func onMem(t *testing.T, s *memserver.Server, f func(c *imapclient.Client)) {
	t.Helper()
	c, err := imapclient.DialInsecure(s.Addr, nil)
	must(t, err)
	defer c.Close()
	must(t, c.Login("alice", "pw").Wait())
	f(c)
	_ = c.Logout().Wait()
}

func fastCorpus(seed uint64) *corpus.Mailbox {
	return corpus.Generate(corpus.Options{Seed: seed, Folders: 4, MessagesPerFolder: 15, MaxSize: 16 << 10})
}

func TestFastCopyAndRerun(t *testing.T) {
	r := newFastRig(t, fastCorpus(81))
	first := r.copy()
	if first.Copied != r.m.TotalMessages() {
		t.Errorf("copied %d of %d", first.Copied, r.m.TotalMessages())
	}
	r.exact()
	again := r.copy()
	if again.Copied != 0 || again.BodiesFetched != 0 || again.Adopted != 0 || again.DuplicatesRemoved != 0 {
		t.Errorf("rerun: copied %d, bodies %d, adopted %d, removed %d; want all 0",
			again.Copied, again.BodiesFetched, again.Adopted, again.DuplicatesRemoved)
	}
	r.exact()
}

// What a crash leaves, built by hand: a run appended the last messages of
// INBOX but died before recording them (their suspects recorded, as
// before every batch), and one of its APPENDs of an already recorded
// message was committed late, a second time. Meanwhile mail the tool never
// sent reached the target folder. The resume adopts the unrecorded copies,
// removes the late duplicate, and leaves the target's own mail alone.
func TestFastResumeAfterLateCommits(t *testing.T) {
	r := newFastRig(t, fastCorpus(82))
	r.copy()
	ctx := context.Background()
	rec, err := r.lease.Folder(ctx, "INBOX")
	must(t, err)
	msgs, err := r.lease.Messages(ctx, rec.ID)
	must(t, err)
	if len(msgs) < 8 {
		t.Fatalf("INBOX has %d messages", len(msgs))
	}
	lost := msgs[len(msgs)-4:]
	var src []uint32
	var suspects imap.UIDSet
	mark := lost[0].DstUID
	for _, k := range lost {
		src = append(src, k.SrcUID)
		suspects.AddNum(imap.UID(k.SrcUID))
		mark = min(mark, k.DstUID)
	}
	late := msgs[0] // recorded, and sent once more
	suspects.AddNum(imap.UID(late.SrcUID))
	must(t, r.lease.DeleteMessages(ctx, rec.ID, src))
	must(t, r.lease.PutBatch(ctx, rec.ID, nil, mark, suspects.String()))

	// The late copy of the recorded message, and the target's own mail.
	var body []byte
	onMem(t, r.src, func(c *imapclient.Client) {
		_, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
		must(t, err)
		got, err := c.Fetch(imap.UIDSetNum(imap.UID(late.SrcUID)), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		must(t, err)
		if len(got) != 1 || len(got[0].BodySection) != 1 {
			t.Fatalf("fetch the late message: %d results", len(got))
		}
		for _, b := range got[0].BodySection {
			body = b.Bytes
		}
	})
	own := []byte("From: someone@example.org\r\nSubject: delivered to the target\r\n\r\nnot from the source\r\n")
	onMem(t, r.dst, func(c *imapclient.Client) {
		for _, b := range [][]byte{body, own} {
			cmd := c.Append("INBOX", int64(len(b)), nil)
			_, err := cmd.Write(b)
			must(t, err)
			must(t, cmd.Close())
			_, err = cmd.Wait()
			must(t, err)
		}
	})

	rep := r.copy()
	// Adopted copies count as copied by this run; none was appended.
	if rep.Adopted != len(lost) || rep.DuplicatesRemoved != 1 || rep.TargetOnly != 1 || rep.Copied != len(lost) || rep.BodiesFetched != len(lost) {
		t.Errorf("resume: adopted %d, removed %d, target-only %d, copied %d, source bodies %d; want %d, 1, 1, %d, %d (the unrecorded suspects only)",
			rep.Adopted, rep.DuplicatesRemoved, rep.TargetOnly, rep.Copied, rep.BodiesFetched, len(lost), len(lost), len(lost))
	}
	// The target holds the source plus its own message, once.
	src2 := corpus.TakeSnapshot(t, r.src.Addr, "alice", "pw")
	dst := corpus.TakeSnapshot(t, r.dst.Addr, "alice", "pw")
	inbox := dst.Folders["INBOX"]
	kept := inbox.Messages[:0]
	ownSeen := 0
	for _, m := range inbox.Messages {
		if m.Size == int64(len(own)) && m.SHA256 == sha(own) {
			ownSeen++
			continue
		}
		kept = append(kept, m)
	}
	inbox.Messages = kept
	if ownSeen != 1 {
		t.Errorf("the target's own message is there %d times, want 1", ownSeen)
	}
	if diff := corpus.Compare(src2, dst, nil); len(diff) > 0 {
		t.Fatalf("target differs from source:\n%s", strings.Join(diff, "\n"))
	}
	// Nothing is left to do, and the foreign message is not looked at
	// again: it is below the mark now.
	if again := r.copy(); again.Copied+again.Adopted+again.DuplicatesRemoved+again.TargetOnly != 0 {
		t.Errorf("next pass: copied %d, adopted %d, removed %d, target-only %d",
			again.Copied, again.Adopted, again.DuplicatesRemoved, again.TargetOnly)
	}
}

// Without suspects, a stranger above the mark is never read or touched,
// even when its bytes equal a source message's: the target's own mail
// (after the cutover, say) is not mailferry's to judge.
func TestFastStrangersWithoutSuspectsAreLeftAlone(t *testing.T) {
	r := newFastRig(t, fastCorpus(83))
	r.copy()
	var body []byte
	onMem(t, r.dst, func(c *imapclient.Client) {
		_, err := c.Select("INBOX", nil).Wait()
		must(t, err)
		got, err := c.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
		must(t, err)
		for _, b := range got[0].BodySection {
			body = b.Bytes
		}
		cmd := c.Append("INBOX", int64(len(body)), nil)
		_, err = cmd.Write(body)
		must(t, err)
		must(t, cmd.Close())
		_, err = cmd.Wait()
		must(t, err)
	})
	rep := r.copy()
	if rep.TargetOnly != 1 || rep.DuplicatesRemoved != 0 || rep.Adopted != 0 || rep.Copied != 0 {
		t.Errorf("pass: target-only %d, removed %d, adopted %d, copied %d; want 1, 0, 0, 0",
			rep.TargetOnly, rep.DuplicatesRemoved, rep.Adopted, rep.Copied)
	}
	n := 0
	onMem(t, r.dst, func(c *imapclient.Client) {
		d, err := c.Status("INBOX", &imap.StatusOptions{NumMessages: true}).Wait()
		must(t, err)
		n = int(*d.NumMessages)
	})
	if want := len(r.m.Folder("INBOX").Messages) + 1; n != want {
		t.Errorf("target INBOX holds %d messages, want %d (the identical one kept)", n, want)
	}
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
