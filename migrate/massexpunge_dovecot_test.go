package migrate_test

import (
	"context"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailferry/internal/testrig/dovecot"
	"mailferry/migrate"
	"mailferry/state/statetest"
)

// A source folder that suddenly looks empty (or is gone) is not mirrored
// as a mass expunge: that folder stops with a message naming what it
// would have expunged, the target keeps every copy, and the rest of the
// mailbox goes on. A few deletions are mirrored as before, and
// AllowMassExpunge mirrors the rest.
func TestMassExpungeIsRefused(t *testing.T) {
	r := newStateRig(t, statetest.SQLite(t), dovecot.Options{}, smallCorpus(91))
	r.copy(migrate.Options{}, nil)
	emptied := plainFolder(t, r.m)
	name := strings.Join(emptied.Path, ".")
	var other string // a second folder, from which two messages go
	for _, f := range r.m.Folders {
		if k := strings.Join(f.Path, "."); k != name && f.SpecialUse == "" && len(f.Messages) >= 6 && !strings.EqualFold(k, "INBOX") {
			other = k
			break
		}
	}
	if other == "" {
		t.Fatal("corpus has no second plain folder")
	}
	expunge := func(folder string, uids imap.UIDSet) {
		on(t, r.src, func(c *imapclient.Client) {
			_, err := c.Select(folder, nil).Wait()
			must(t, err)
			must(t, c.Store(uids, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close())
			must(t, c.UIDExpunge(uids).Close())
		})
	}
	var all, two imap.UIDSet
	all.AddRange(1, 0)
	two.AddNum(1, 2)
	expunge(name, all)
	expunge(other, two)
	targetCount := func(folder string) uint32 {
		var n uint32
		on(t, r.dst, func(c *imapclient.Client) {
			d, err := c.Status(strings.ReplaceAll(folder, ".", "/"), &imap.StatusOptions{NumMessages: true}).Wait()
			must(t, err)
			n = *d.NumMessages
		})
		return n
	}

	rep, err := migrate.Copy(context.Background(), userCfg(t, "source", r.src, "alice"), userCfg(t, "target", r.dst, "alice"),
		migrate.Options{State: r.lease})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failures) != 1 || rep.Failures[0].Folder != name || !strings.Contains(rep.Failures[0].Reason, "--allow-mass-expunge") {
		t.Fatalf("failures %+v; want only %q, naming --allow-mass-expunge", rep.Failures, name)
	}
	if rep.Expunged != 2 {
		t.Errorf("expunged %d, want the 2 of %q", rep.Expunged, other)
	}
	if got := targetCount(name); int(got) != len(emptied.Messages) {
		t.Errorf("target %q holds %d, want all %d copies kept", name, got, len(emptied.Messages))
	}
	t.Logf("refused: %s", rep.Failures[0].Reason)

	// The operator means it.
	rep = r.copy(migrate.Options{AllowMassExpunge: true}, nil)
	if rep.Expunged != len(emptied.Messages) {
		t.Errorf("with AllowMassExpunge: expunged %d, want %d", rep.Expunged, len(emptied.Messages))
	}
	r.exact()

	// A whole folder gone from the source: its copies stay, and it says so.
	gone := other
	on(t, r.src, func(c *imapclient.Client) { must(t, c.Delete(gone).Wait()) })
	before := targetCount(gone)
	rep, err = migrate.Copy(context.Background(), userCfg(t, "source", r.src, "alice"), userCfg(t, "target", r.dst, "alice"),
		migrate.Options{State: r.lease})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failures) != 1 || rep.Failures[0].Folder != gone || rep.Expunged != 0 {
		t.Errorf("deleted folder: failures %+v, expunged %d; want one failure for %q, nothing expunged", rep.Failures, rep.Expunged, gone)
	}
	if got := targetCount(gone); got != before {
		t.Errorf("target %q holds %d, want its %d copies kept", gone, got, before)
	}
}
