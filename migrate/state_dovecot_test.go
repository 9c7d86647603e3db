package migrate_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
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

// stateRig is a source and a target Dovecot, a seeded corpus, and a state
// store whose lease the test holds and hands to each Copy.
type stateRig struct {
	t        *testing.T
	src, dst *dovecot.Server
	m        *corpus.Mailbox
	lease    *state.Lease
	store    *state.Store
}

func newStateRig(t *testing.T, url string, srcOpts dovecot.Options, m *corpus.Mailbox) *stateRig {
	t.Helper()
	dovecot.Require(t)
	srcOpts.Name = "src"
	r := &stateRig{t: t, m: m,
		src: dovecot.Start(t, srcOpts),
		dst: dovecot.Start(t, dovecot.Options{Name: "dst", Separator: "/"}),
	}
	corpus.Seed(t, r.src.Addr, "alice", r.src.Users["alice"], m)
	ctx := context.Background()
	st, err := state.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	r.store = st
	r.lease, err = st.Acquire(ctx, state.Key{Source: "imap://alice@" + r.src.Addr, Target: "imap://alice@" + r.dst.Addr}, "test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// syncBuffer is a bytes.Buffer that several connections may trace into.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// copy runs one pass with the state and fails the test on an error or a
// failed message.
func (r *stateRig) copy(opts migrate.Options, srcTrace *syncBuffer) *migrate.Report {
	r.t.Helper()
	opts.State = r.lease
	srcCfg := userCfg(r.t, "source", r.src, "alice")
	if srcTrace != nil {
		srcCfg.Debug = srcTrace
	}
	rep, err := migrate.Copy(context.Background(), srcCfg, userCfg(r.t, "target", r.dst, "alice"), opts)
	if err != nil {
		r.t.Fatalf("copy: %v", err)
	}
	if rep.Failed != 0 {
		r.t.Fatalf("copy: %d failed: %v", rep.Failed, rep.Failures)
	}
	return rep
}

// exact asserts that the target holds exactly the source's messages.
func (r *stateRig) exact() {
	r.t.Helper()
	src := corpus.TakeSnapshot(r.t, r.src.Addr, "alice", r.src.Users["alice"])
	dst := corpus.TakeSnapshot(r.t, r.dst.Addr, "alice", r.dst.Users["alice"])
	if diff := corpus.Compare(src, dst, nil); len(diff) > 0 {
		r.t.Fatalf("target differs from source:\n%s", strings.Join(diff, "\n"))
	}
}

// on runs f with a logged-in client of server s.
func on(t *testing.T, s *dovecot.Server, f func(c *imapclient.Client)) {
	t.Helper()
	c, err := imapclient.DialInsecure(s.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("alice", s.Users["alice"]).Wait(); err != nil {
		t.Fatal(err)
	}
	f(c)
	_ = c.Logout().Wait()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// plainFolder is the corpus's first folder that is neither INBOX nor
// special-use and has messages.
func plainFolder(t *testing.T, m *corpus.Mailbox) *corpus.Folder {
	for i := range m.Folders {
		f := &m.Folders[i]
		if f.SpecialUse == "" && !strings.EqualFold(f.Key(), "INBOX") && len(f.Messages) >= 6 {
			return f
		}
	}
	t.Fatal("corpus has no plain folder with 6 messages")
	return nil
}

func smallCorpus(seed uint64) *corpus.Mailbox {
	return corpus.Generate(corpus.Options{Seed: seed, Folders: 8, MessagesPerFolder: 12, MaxSize: 256 << 10})
}

// A finished migration rerun copies nothing and reads no message body from
// the source: only UIDs, flags and modseqs.
func TestStateRerunIsNoop(t *testing.T) {
	statetest.EachDriver(t, func(t *testing.T, url string) {
		r := newStateRig(t, url, dovecot.Options{}, smallCorpus(31))
		first := r.copy(migrate.Options{}, nil)
		n := r.m.TotalMessages()
		if first.Copied != n || first.Done != 0 {
			t.Fatalf("first pass: copied %d, already %d; want %d, 0", first.Copied, first.Done, n)
		}
		var trace syncBuffer
		again := r.copy(migrate.Options{}, &trace)
		if again.Copied != 0 || again.Done != n || again.Verified != n || again.BodiesFetched != 0 {
			t.Errorf("rerun: copied %d, already %d, verified %d, bodies %d; want 0, %d, %d, 0",
				again.Copied, again.Done, again.Verified, again.BodiesFetched, n, n)
		}
		if c := strings.Count(trace.String(), "BODY.PEEK["); c != 0 {
			t.Errorf("rerun sent %d body fetches to the source", c)
		}
		r.exact()
		// A change on the source opens that folder, and its delta asks
		// CONDSTORE for what changed only.
		f := plainFolder(t, r.m)
		on(t, r.src, func(c *imapclient.Client) {
			_, err := c.Select(strings.Join(f.Path, "."), nil).Wait()
			must(t, err)
			var set imap.UIDSet
			set.AddNum(1)
			must(t, c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{"$Changed"}}, nil).Close())
		})
		trace = syncBuffer{}
		if rep := r.copy(migrate.Options{}, &trace); rep.FlagsUpdated != 1 {
			t.Errorf("delta after a flag change: %d flags updated, want 1", rep.FlagsUpdated)
		}
		if !strings.Contains(trace.String(), "CHANGEDSINCE") {
			t.Errorf("the delta did not use CONDSTORE on a source that offers it")
		}
		r.exact()
	})
}

// Copies appended by a run that died before recording them are found on
// the target (at or above the recorded mark, by size and SHA-256) and
// adopted, not appended again.
func TestStateAdoptsUnrecordedCopies(t *testing.T) {
	r := newStateRig(t, statetest.SQLite(t), dovecot.Options{}, smallCorpus(32))
	r.copy(migrate.Options{}, nil)
	ctx := context.Background()
	f := plainFolder(t, r.m)
	rec, err := r.lease.Folder(ctx, strings.Join(f.Path, "."))
	must(t, err)
	msgs, err := r.lease.Messages(ctx, rec.ID)
	must(t, err)
	// Forget the last five copies as a crash before their commit would.
	lost := msgs[len(msgs)-5:]
	var uids []uint32
	mark := lost[0].DstUID
	for _, m := range lost {
		uids = append(uids, m.SrcUID)
		mark = min(mark, m.DstUID)
	}
	must(t, r.lease.DeleteMessages(ctx, rec.ID, uids))
	must(t, r.lease.SetMark(ctx, rec.ID, mark))
	// They were announced before their APPENDs were sent.
	var suspects imap.UIDSet
	for _, u := range uids {
		suspects.AddNum(imap.UID(u))
	}
	must(t, r.lease.SetSuspects(ctx, rec.ID, suspects.String()))
	// The source changes a flag of one of them before the resume.
	on(t, r.src, func(c *imapclient.Client) {
		_, err := c.Select(strings.Join(f.Path, "."), nil).Wait()
		must(t, err)
		var set imap.UIDSet
		set.AddNum(imap.UID(lost[2].SrcUID))
		must(t, c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsSet, Silent: true, Flags: []imap.Flag{"$WhileDown"}}, nil).Close())
	})

	rep := r.copy(migrate.Options{}, nil)
	if rep.Adopted != 5 || rep.Copied != 5 || rep.Done != r.m.TotalMessages()-5 {
		t.Errorf("resume: adopted %d, copied %d, already %d; want 5, 5, %d", rep.Adopted, rep.Copied, rep.Done, r.m.TotalMessages()-5)
	}
	if rep.BodiesFetched != 5 {
		t.Errorf("resume read %d source bodies, want only the 5 candidates", rep.BodiesFetched)
	}
	r.exact()
	again, _ := r.lease.Messages(ctx, rec.ID)
	if len(again) != len(msgs) {
		t.Errorf("map has %d records after adoption, want %d", len(again), len(msgs))
	}
}

// recreate gives a folder a new UIDVALIDITY with the same messages, flags
// and dates (copy out, delete, copy back), as a restore would.
func recreate(t *testing.T, s *dovecot.Server, name, tmp string) {
	on(t, s, func(c *imapclient.Client) {
		must(t, c.Create(tmp, nil).Wait())
		_, err := c.Select(name, nil).Wait()
		must(t, err)
		_, err = c.Copy(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, tmp).Wait()
		must(t, err)
		must(t, c.Unselect().Wait())
		must(t, c.Delete(name).Wait())
		must(t, c.Rename(tmp, name, nil).Wait())
	})
}

func numMessages(t *testing.T, s *dovecot.Server, name string) int {
	var n int
	on(t, s, func(c *imapclient.Client) {
		d, err := c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait()
		must(t, err)
		n = int(*d.NumMessages)
	})
	return n
}

func uidValidity(t *testing.T, s *dovecot.Server, name string) uint32 {
	var v uint32
	on(t, s, func(c *imapclient.Client) {
		d, err := c.Status(name, &imap.StatusOptions{UIDValidity: true}).Wait()
		must(t, err)
		v = d.UIDValidity
	})
	return v
}

// A UIDVALIDITY change on either side (or both) is met with a rescan by
// SHA-256: nothing is copied twice, nothing is lost, and a message deleted
// from the recreated source folder is expunged from the target.
func TestStateUIDValidityChange(t *testing.T) {
	for _, side := range []string{"source", "target", "both"} {
		t.Run(side, func(t *testing.T) {
			m := smallCorpus(33)
			r := newStateRig(t, statetest.SQLite(t), dovecot.Options{}, m)
			r.copy(migrate.Options{}, nil)
			f := plainFolder(t, m)
			srcName, dstName := strings.Join(f.Path, "."), strings.Join(f.Path, "/")
			expunged := 0
			if side != "target" {
				before := uidValidity(t, r.src, srcName)
				recreate(t, r.src, srcName, "Restored")
				if uidValidity(t, r.src, srcName) == before {
					t.Fatal("the source folder kept its UIDVALIDITY")
				}
				n := numMessages(t, r.src, srcName)
				on(t, r.src, func(c *imapclient.Client) {
					_, err := c.Select(srcName, nil).Wait()
					must(t, err)
					must(t, c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close())
					must(t, c.Expunge().Close()) // also any message the corpus flagged \Deleted
					// A flag change after the restore must reach the target too.
					must(t, c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsSet, Silent: true, Flags: []imap.Flag{"$AfterRestore"}}, nil).Close())
				})
				expunged = n - numMessages(t, r.src, srcName)
			}
			if side != "source" {
				before := uidValidity(t, r.dst, dstName)
				recreate(t, r.dst, dstName, "Restored")
				if uidValidity(t, r.dst, dstName) == before {
					t.Fatal("the target folder kept its UIDVALIDITY")
				}
			}
			rep := r.copy(migrate.Options{}, nil)
			if rep.Copied != 0 || rep.Expunged != expunged {
				t.Errorf("after the change: copied %d, expunged %d; want 0, %d", rep.Copied, rep.Expunged, expunged)
			}
			if len(rep.Warnings) == 0 || !strings.Contains(strings.Join(rep.Warnings, "\n"), "UIDVALIDITY changed") {
				t.Errorf("no warning about the UIDVALIDITY change: %q", rep.Warnings)
			}
			r.exact()
			// And the pass after that is a plain no-op again.
			if again := r.copy(migrate.Options{}, nil); again.Copied != 0 || again.BodiesFetched != 0 {
				t.Errorf("next pass: copied %d, bodies %d", again.Copied, again.BodiesFetched)
			}
		})
	}
}

// A delta pass carries new messages, flag changes and expunges, with
// CONDSTORE and, on a source without it, by a FLAGS diff. With
// KeepDeleted the expunged messages stay on the target.
func TestStateDelta(t *testing.T) {
	noCondstore := dovecot.Options{Extra: []string{
		"imap_capability = IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE SPECIAL-USE NAMESPACE LIST-EXTENDED LIST-STATUS STATUS=SIZE UIDPLUS ESEARCH",
	}}
	for _, tc := range []struct {
		name string
		opts dovecot.Options
		keep bool
	}{{"condstore", dovecot.Options{}, false}, {"flags-diff", noCondstore, false}, {"keep-deleted", dovecot.Options{}, true}} {
		t.Run(tc.name, func(t *testing.T) {
			m := smallCorpus(34)
			r := newStateRig(t, statetest.SQLite(t), tc.opts, m)
			r.copy(migrate.Options{}, nil)
			f := plainFolder(t, m)
			name := strings.Join(f.Path, ".")
			n := numMessages(t, r.src, name)
			more := smallCorpus(35)
			corpus.Seed(t, r.src.Addr, "alice", r.src.Users["alice"], &corpus.Mailbox{Folders: []corpus.Folder{
				{Path: f.Path, Subscribed: f.Subscribed, Messages: more.Folders[1].Messages[:3]},
			}})
			on(t, r.src, func(c *imapclient.Client) {
				_, err := c.Select(name, nil).Wait()
				must(t, err)
				must(t, c.Store(imap.SeqSetNum(1, 2), &imap.StoreFlags{Op: imap.StoreFlagsSet, Silent: true,
					Flags: []imap.Flag{imap.FlagFlagged, "$Delta"}}, nil).Close())
				must(t, c.Store(imap.SeqSetNum(3, 4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close())
				must(t, c.Expunge().Close())
			})
			var trace syncBuffer
			rep := r.copy(migrate.Options{KeepDeleted: tc.keep}, &trace)
			gone := n + 3 - numMessages(t, r.src, name) // 2, and any the corpus flagged \Deleted
			wantExp := gone
			if tc.keep {
				wantExp = 0
			}
			if rep.Copied != 3 || rep.FlagsUpdated != 2 || rep.Expunged != wantExp {
				t.Errorf("delta: copied %d, flags %d, expunged %d; want 3, 2, %d", rep.Copied, rep.FlagsUpdated, rep.Expunged, wantExp)
			}
			if got := strings.Count(trace.String(), "BODY.PEEK["); got != 1 {
				t.Errorf("delta sent %d body fetches, want 1 (the new messages)", got)
			}
			if tc.keep {
				dst := corpus.TakeSnapshot(t, r.dst.Addr, "alice", r.dst.Users["alice"])
				src := corpus.TakeSnapshot(t, r.src.Addr, "alice", r.src.Users["alice"])
				if d, s := len(dst.Folders[f.Key()].Messages), len(src.Folders[f.Key()].Messages); d != s+gone {
					t.Errorf("keep-deleted: target has %d messages, source %d; want %d more", d, s, gone)
				}
				return
			}
			r.exact()
		})
	}
}

// Mail delivered to the source while a pass runs is on the target after
// the next pass, exactly once.
func TestStateDeltaWithMailArrivingMidRun(t *testing.T) {
	m := corpus.Generate(corpus.Options{Seed: 36, Folders: 7, MessagesPerFolder: 40, MaxSize: 1 << 20})
	r := newStateRig(t, statetest.SQLite(t), dovecot.Options{}, m)
	f := plainFolder(t, m)
	more := corpus.Generate(corpus.Options{Seed: 37, Folders: 2, MessagesPerFolder: 30, MaxSize: 64 << 10})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for _, msg := range more.Folders[0].Messages[:20] {
			corpus.Seed(t, r.src.Addr, "alice", r.src.Users["alice"], &corpus.Mailbox{Folders: []corpus.Folder{
				{Path: f.Path, Subscribed: f.Subscribed, Messages: []corpus.Message{msg}},
			}})
			time.Sleep(20 * time.Millisecond)
		}
	}()
	r.copy(migrate.Options{BatchMessages: 16}, nil)
	wg.Wait()
	r.copy(migrate.Options{}, nil)
	r.exact()
}

// A folder renamed on the source is renamed on the target (nothing copied
// again); a folder deleted on the source loses its copies and, empty, is
// deleted on the target too; with KeepDeleted it stays.
func TestStateFolderRenameAndDelete(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "mirror", true: "keep-deleted"}[keep], func(t *testing.T) {
			m := corpus.Generate(corpus.Options{Seed: 38, Folders: 14, MessagesPerFolder: 8, MaxSize: 128 << 10})
			var renamed, deleted *corpus.Folder
			isParent := func(f *corpus.Folder) bool {
				for _, g := range m.Folders {
					if strings.HasPrefix(g.Key(), f.Key()+"/") {
						return true
					}
				}
				return false
			}
			for i := range m.Folders {
				f := &m.Folders[i]
				if f.SpecialUse != "" || strings.EqualFold(f.Key(), "INBOX") || len(f.Messages) == 0 {
					continue
				}
				switch {
				case renamed == nil && len(f.Path) == 1:
					renamed = f
				case deleted == nil && !isParent(f) && !strings.HasPrefix(f.Key(), renamed.Key()+"/"):
					deleted = f
				}
			}
			if renamed == nil || deleted == nil {
				t.Fatalf("corpus lacks a folder to rename or delete")
			}
			t.Logf("rename %q (parent: %v), delete %q", renamed.Key(), isParent(renamed), deleted.Key())
			r := newStateRig(t, statetest.SQLite(t), dovecot.Options{}, m)
			r.copy(migrate.Options{}, nil)
			on(t, r.src, func(c *imapclient.Client) {
				must(t, c.Rename(renamed.Key(), "Renamed "+renamed.Key(), nil).Wait())
				must(t, c.Delete(strings.Join(deleted.Path, ".")).Wait())
			})
			rep := r.copy(migrate.Options{KeepDeleted: keep, AllowMassExpunge: true}, nil)
			if rep.Copied != 0 || rep.BodiesFetched != 0 {
				t.Errorf("after rename/delete: copied %d, bodies %d; want 0, 0", rep.Copied, rep.BodiesFetched)
			}
			dst := corpus.TakeSnapshot(t, r.dst.Addr, "alice", r.dst.Users["alice"])
			if dst.Folders[renamed.Key()] != nil || dst.Folders["Renamed "+renamed.Key()] == nil {
				t.Errorf("target folders after the rename: %v", keys(dst.Folders))
			}
			if keep {
				if f := dst.Folders[deleted.Key()]; f == nil || len(f.Messages) != len(deleted.Messages) {
					t.Errorf("keep-deleted: the deleted folder's copies are gone from the target")
				}
				return
			}
			if rep.Expunged != len(deleted.Messages) {
				t.Errorf("expunged %d, want %d", rep.Expunged, len(deleted.Messages))
			}
			r.exact()
		})
	}
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Stop (the first Ctrl-C) finishes and records the batches in flight and
// starts nothing new: the copy says what remains, fails nothing, and the
// next run has nothing to adopt.
func TestStateStopIsGraceful(t *testing.T) {
	m := corpus.Generate(corpus.Options{Seed: 39, Folders: 6, MessagesPerFolder: 40, MaxSize: 256 << 10})
	r := newStateRig(t, statetest.SQLite(t), dovecot.Options{}, m)
	stop := make(chan struct{})
	var once sync.Once
	opts := migrate.Options{State: r.lease, Stop: stop, BatchMessages: 8, Connections: 2,
		Observer: migrate.ObserverFunc(func(e migrate.Event) {
			if e.Kind == migrate.EventMessageCopied {
				once.Do(func() { close(stop) })
			}
		})}
	rep, err := migrate.Copy(context.Background(), userCfg(t, "source", r.src, "alice"), userCfg(t, "target", r.dst, "alice"), opts)
	if !errors.Is(err, migrate.ErrInterrupted) {
		t.Fatalf("stopped copy: err = %v, want ErrInterrupted", err)
	}
	if rep.Failed != 0 || rep.Remaining == 0 || rep.Copied+rep.Remaining != m.TotalMessages() {
		t.Fatalf("stopped copy: copied %d, remaining %d, failed %d (%v); want copied+remaining = %d, none failed",
			rep.Copied, rep.Remaining, rep.Failed, rep.Failures, m.TotalMessages())
	}
	again := r.copy(migrate.Options{}, nil)
	if again.Adopted != 0 || again.Done != rep.Copied || again.Copied != rep.Remaining {
		t.Errorf("resume: adopted %d, already %d, copied %d; want 0, %d, %d", again.Adopted, again.Done, again.Copied, rep.Copied, rep.Remaining)
	}
	r.exact()
}

// A first pass commits each folder's record once: created with its mark
// (before the first APPEND), and, once the last batch is checked, the
// source's HIGHESTMODSEQ goes in that batch's own transaction instead of a
// further write. An empty folder has no batch and takes two. Looking the
// folder up before (worker.unchanged, prepare) writes nothing: with every
// folder of this corpus in one batch, a folder costs two commits in all,
// besides the mailbox's own writes (progress, history), which the rerun
// makes too. The next pass finds every folder unchanged, so the
// HIGHESTMODSEQ was recorded, and writes no folder.
func TestFreshFolderIsRecordedOnce(t *testing.T) {
	r := newStateRig(t, statetest.SQLite(t), dovecot.Options{}, smallCorpus(53))
	rep := r.copy(migrate.Options{}, nil)
	r.exact()
	folders, empty := int64(0), int64(0)
	for _, f := range r.m.Folders {
		folders++
		if len(f.Messages) == 0 {
			empty++
		}
	}
	if want := folders + empty; r.store.FolderPuts() != want {
		t.Errorf("a first pass over %d folders (%d empty) made %d folder writes, want %d", folders, empty, r.store.FolderPuts(), want)
	}
	before, first, firstCommits := r.store.FolderPuts(), r.store.Writes(), r.store.Commits()
	var trace syncBuffer
	again := r.copy(migrate.Options{}, &trace)
	if n := strings.Count(trace.String(), " EXAMINE "); n != 0 {
		t.Errorf("the rerun opened %d source folders, want none (HIGHESTMODSEQ not recorded?)", n)
	}
	if r.store.FolderPuts() != before || again.Copied != 0 || again.Done != rep.Messages {
		t.Errorf("rerun: %d folder writes, %d copied, %d done; want none, 0, %d", r.store.FolderPuts()-before, again.Copied, again.Done, rep.Messages)
	}
	mailbox := r.store.Writes() - first // the rerun's: the mailbox's own
	if got, want := first-mailbox, 2*folders; got != want {
		t.Errorf("a first pass over %d one-batch folders made %d writes besides the mailbox's %d, want %d (two a folder)", folders, got, mailbox, want)
	}
	// A folder's last batch is deferred into the next folder's first
	// write (and the last one's into the pass's record): one commit,
	// one fsync, a folder (two for an empty one, which has no batch).
	mailboxCommits := r.store.Commits() - firstCommits
	if got, want := firstCommits-mailboxCommits, folders+empty; got != want {
		t.Errorf("a first pass over %d folders (%d empty) took %d commits besides the mailbox's %d, want %d", folders, empty, got, mailboxCommits, want)
	}
}
