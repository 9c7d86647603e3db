package migrate_test

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"mailferry/internal/testrig/dovecot"
	"mailferry/migrate"
	"mailferry/state/statetest"
)

// A pass over folders that cannot have changed (the source's HIGHESTMODSEQ
// and UIDVALIDITY as recorded, the target's UIDNEXT at the mark, every
// message copied and verified) opens none of them on either side: a
// converging pass, a cron rerun or a final delta of a quiet mailbox costs a
// LIST per side. A folder changed on the source, or one where something
// reached the target, is opened and handled as before.
func TestUnchangedFoldersAreNotOpened(t *testing.T) {
	r := newStateRig(t, statetest.SQLite(t), dovecot.Options{}, smallCorpus(97))
	r.copy(migrate.Options{}, nil)
	opened := regexp.MustCompile(`(?m)^[A-Za-z0-9]+ (SELECT|EXAMINE) `)
	list := regexp.MustCompile(`(?m)^[A-Za-z0-9]+ LIST .*$`)
	total := r.m.TotalMessages()
	// pass copies once and returns the folders each side opened.
	pass := func() (rep *migrate.Report, src, dst []string) {
		t.Helper()
		var st, dt syncBuffer
		srcCfg, dstCfg := userCfg(t, "source", r.src, "alice"), userCfg(t, "target", r.dst, "alice")
		srcCfg.Debug, dstCfg.Debug = &st, &dt
		rep, err := migrate.Copy(context.Background(), srcCfg, dstCfg, migrate.Options{State: r.lease})
		if err != nil || rep.Failed != 0 {
			t.Fatalf("copy: %v, %d failed: %v", err, failed(rep), failures(rep))
		}
		// The source's LIST plans the copy; the target's asks only what
		// finds the unchanged folders (its SIZE costs a Dovecot target).
		if got := list.FindString(st.String()); !strings.Contains(got, "SIZE") || !strings.Contains(got, "HIGHESTMODSEQ") {
			t.Errorf("the source's LIST: %q, want its folders' SIZE and HIGHESTMODSEQ", got)
		}
		if got := list.FindString(dt.String()); !strings.Contains(got, "STATUS (UIDVALIDITY UIDNEXT)") && !strings.Contains(got, "STATUS (UIDNEXT UIDVALIDITY)") {
			t.Errorf("the target's LIST: %q, want STATUS (UIDVALIDITY UIDNEXT) only", got)
		}
		return rep, opened.FindAllString(st.String(), -1), opened.FindAllString(dt.String(), -1)
	}

	rep, src, dst := pass()
	if len(src)+len(dst) != 0 {
		t.Errorf("a rerun of a finished migration opened %d source and %d target folders, want none", len(src), len(dst))
	}
	if rep.Done != total || rep.Verified != total || rep.Copied != 0 || rep.Messages != total {
		t.Errorf("rerun: done %d, verified %d, copied %d, messages %d; want %d done and verified", rep.Done, rep.Verified, rep.Copied, rep.Messages, total)
	}

	// One flag changes on the source, and a message of the target's own
	// arrives in another folder: those two folders are opened.
	f := plainFolder(t, r.m)
	srcName := strings.Join(f.Path, ".")
	on(t, r.src, func(c *imapclient.Client) {
		_, err := c.Select(srcName, nil).Wait()
		must(t, err)
		var set imap.UIDSet
		set.AddNum(1)
		must(t, c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close())
	})
	body := "From: x@example.org\r\nSubject: delivered to the target\r\n\r\nhi\r\n"
	on(t, r.dst, func(c *imapclient.Client) {
		cmd := c.Append("INBOX", int64(len(body)), nil)
		_, err := cmd.Write([]byte(body))
		must(t, err)
		must(t, cmd.Close())
		_, err = cmd.Wait()
		must(t, err)
	})
	rep, src, dst = pass()
	if len(src) != 2 || len(dst) != 2 {
		t.Errorf("after one source change and one target arrival: %d source and %d target folders opened (%v, %v), want 2 each", len(src), len(dst), src, dst)
	}
	if rep.FlagsUpdated != 1 || rep.TargetOnly != 1 {
		t.Errorf("flags updated %d, target only %d; want 1 and 1", rep.FlagsUpdated, rep.TargetOnly)
	}
	// And the next pass is quiet again.
	if _, src, dst = pass(); len(src)+len(dst) != 0 {
		t.Errorf("the pass after opened %d source and %d target folders, want none", len(src), len(dst))
	}
}
