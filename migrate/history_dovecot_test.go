package migrate_test

import (
	"context"
	"strings"
	"testing"

	imap "github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/migrate"
	"mailferry/state"
	"mailferry/state/statetest"
)

// Each pass of a copy with a state goes into the migration's history with
// what it changed (copied and their bytes, flags updated, expunged), the
// totals add up over the passes, and a pass that could not log in is
// recorded failed with the refusal in words.
func TestStatePassHistory(t *testing.T) {
	statetest.EachDriver(t, func(t *testing.T, url string) {
		ctx := context.Background()
		m := smallCorpus(41)
		r := newStateRig(t, url, dovecot.Options{}, m)
		first := r.copy(migrate.Options{Phase: migrate.PhaseCopying}, nil)

		f := plainFolder(t, m)
		name := strings.Join(f.Path, ".")
		n := numMessages(t, r.src, name)
		more := smallCorpus(42).Folders[1].Messages[:3]
		corpus.Seed(t, r.src.Addr, "alice", r.src.Users["alice"], &corpus.Mailbox{Folders: []corpus.Folder{
			{Path: f.Path, Subscribed: f.Subscribed, Messages: more}}})
		on(t, r.src, func(c *imapclient.Client) {
			_, err := c.Select(name, nil).Wait()
			must(t, err)
			must(t, c.Store(imap.SeqSetNum(1, 2), &imap.StoreFlags{Op: imap.StoreFlagsSet, Silent: true,
				Flags: []imap.Flag{imap.FlagFlagged, "$Pass"}}, nil).Close())
			must(t, c.Store(imap.SeqSetNum(3, 4), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close())
			must(t, c.Expunge().Close())
		})
		delta := r.copy(migrate.Options{Phase: migrate.PhaseConverging}, nil)
		gone := n + 3 - numMessages(t, r.src, name)

		bad := userCfg(t, "source", r.src, "alice")
		bad.Password = "wrong"
		if _, err := migrate.Copy(ctx, bad, userCfg(t, "target", r.dst, "alice"), migrate.Options{State: r.lease, Phase: migrate.PhaseFinal}); err == nil {
			t.Fatal("a copy with a wrong password succeeded")
		}

		st, err := state.Open(ctx, url)
		must(t, err)
		defer st.Close()
		moves, err := st.Moves(ctx)
		must(t, err)
		if len(moves) != 1 || len(moves[0].Passes) != 3 {
			t.Fatalf("moves %+v; want one with 3 passes", moves)
		}
		mv := moves[0]
		p1, p2, p3 := mv.Passes[0], mv.Passes[1], mv.Passes[2]
		// Bytes as the source serves them (its RFC822.SIZE: the first
		// pass copied every message of the mailbox).
		if p1.Phase != migrate.PhaseCopying || p1.Result != state.PassOK || p1.Copied != int64(first.Copied) || p1.Copied != int64(m.TotalMessages()) || p1.BytesCopied != first.Bytes {
			t.Errorf("first pass %+v; want copying, ok, %d copied, %d bytes", p1, m.TotalMessages(), first.Bytes)
		}
		if p2.Phase != migrate.PhaseConverging || p2.Copied != 3 || p2.BytesCopied <= 0 || p2.FlagsUpdated != 2 || p2.Expunged != int64(gone) ||
			p2.FlagsUpdated != int64(delta.FlagsUpdated) {
			t.Errorf("delta pass %+v; want 3 copied, 2 flags updated, %d expunged", p2, gone)
		}
		if p3.Result != state.PassFailed || !strings.Contains(strings.ToLower(p3.Error), "authenticat") || mv.Result != state.PassFailed || mv.LastError != p3.Error {
			t.Errorf("failed pass %+v, move result %q, last error %q; want failed with the refusal", p3, mv.Result, mv.LastError)
		}
		want := state.Totals{Passes: 3, Changes: state.Changes{Copied: p1.Copied + 3, BytesCopied: p1.BytesCopied + p2.BytesCopied, FlagsUpdated: 2, Expunged: int64(gone)}}
		if mv.Totals != want {
			t.Errorf("totals %+v, want %+v", mv.Totals, want)
		}
	})
}
