package migrate_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailferry/internal/testrig/dovecot"
	"mailferry/migrate"
	"mailferry/state/statetest"
)

// After the cutover the target is the user's: flags the user changed on a
// copy are never undone by a later pass; the source's own changes to other
// flags still arrive. (Today's failure: `\Flagged $UserLabel` set on the
// target became `\Seen` after the source's message was read.)
func TestTargetFlagChangesAreKept(t *testing.T) {
	r := newStateRig(t, statetest.SQLite(t), dovecot.Options{}, smallCorpus(95))
	r.copy(migrate.Options{}, nil)
	f := plainFolder(t, r.m)
	srcName, dstName := strings.Join(f.Path, "."), strings.Join(f.Path, "/")
	store := func(s *dovecot.Server, folder string, uid imap.UID, op imap.StoreFlagsOp, flags ...imap.Flag) {
		on(t, s, func(c *imapclient.Client) {
			_, err := c.Select(folder, nil).Wait()
			must(t, err)
			var set imap.UIDSet
			set.AddNum(uid)
			must(t, c.Store(set, &imap.StoreFlags{Op: op, Silent: true, Flags: flags}, nil).Close())
		})
	}
	flagsOf := func(s *dovecot.Server, folder string, uid imap.UID) []string {
		var out []string
		on(t, s, func(c *imapclient.Client) {
			_, err := c.Select(folder, &imap.SelectOptions{ReadOnly: true}).Wait()
			must(t, err)
			var set imap.UIDSet
			set.AddNum(uid)
			msgs, err := c.Fetch(set, &imap.FetchOptions{Flags: true}).Collect()
			must(t, err)
			if len(msgs) != 1 {
				t.Fatalf("uid %d of %q: %d messages", uid, folder, len(msgs))
			}
			for _, fl := range msgs[0].Flags {
				if fl != `\Recent` {
					out = append(out, string(fl))
				}
			}
		})
		slices.Sort(out)
		return out
	}
	// Copies got target UIDs 1.. in source order (a fresh target).
	// The user, on the target, flags and labels message 1 and clears
	// \Seen on message 2 if it had it; the source marks both answered,
	// and message 3 flagged.
	store(r.dst, dstName, 1, imap.StoreFlagsAdd, imap.FlagFlagged, "$UserLabel")
	store(r.dst, dstName, 2, imap.StoreFlagsSet)
	before2 := flagsOf(r.src, srcName, 2)
	for _, uid := range []imap.UID{1, 2} {
		store(r.src, srcName, uid, imap.StoreFlagsAdd, imap.FlagAnswered)
	}
	store(r.src, srcName, 3, imap.StoreFlagsAdd, imap.FlagFlagged)

	t.Logf("before the pass: target uid 1 %v, uid 2 %v; source uid 1 %v", flagsOf(r.dst, dstName, 1), flagsOf(r.dst, dstName, 2), flagsOf(r.src, srcName, 1))
	rep := r.copy(migrate.Options{}, nil)
	t.Logf("flags updated %d, warnings %v", rep.FlagsUpdated, rep.Warnings)
	if got := flagsOf(r.dst, dstName, 1); !slices.Contains(got, `\Flagged`) || !slices.Contains(got, "$UserLabel") || !slices.Contains(got, `\Answered`) {
		t.Errorf("target uid 1 has %v: want the user's \\Flagged $UserLabel kept, and the source's \\Answered", got)
	}
	got2 := flagsOf(r.dst, dstName, 2)
	for _, fl := range before2 {
		if slices.Contains(got2, fl) {
			t.Errorf("target uid 2 has %v: the user cleared %s there, the source brought it back", got2, fl)
		}
	}
	if !slices.Contains(got2, `\Answered`) {
		t.Errorf("target uid 2 has %v: want the source's \\Answered", got2)
	}
	if got, want := flagsOf(r.dst, dstName, 3), flagsOf(r.src, srcName, 3); !slices.Equal(got, want) {
		t.Errorf("target uid 3 has %v, want the source's %v", got, want)
	}
	// Nothing changes on a rerun.
	if rep := r.copy(migrate.Options{}, nil); rep.FlagsUpdated != 0 {
		t.Errorf("rerun updated %d flags", rep.FlagsUpdated)
	}
}
