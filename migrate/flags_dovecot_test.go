package migrate_test

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"mailferry/internal/testrig/corpus"
	"mailferry/internal/testrig/dovecot"
	"mailferry/migrate"
)

// A target that refuses some keywords (here: longer than its
// mail_max_keyword_length) answers the APPEND with NO [CANNOT]: the message
// must still be copied, without the keywords, and the operator warned.
func TestKeywordsTheTargetRefuses(t *testing.T) {
	dovecot.Require(t)
	src := dovecot.Start(t, dovecot.Options{Name: "src", Separator: "/"})
	dst := dovecot.Start(t, dovecot.Options{Name: "dst", Separator: ".", Extra: []string{"mail_max_keyword_length = 5"}})
	var msgs []corpus.Message
	for i := 0; i < 40; i++ {
		body := fmt.Sprintf("From: a@example.net\r\nSubject: keyword %d\r\nMessage-ID: <kw%d@example.net>\r\n\r\nbody %d\r\n", i, i, i)
		if i%8 == 0 {
			// Over 4 KiB: a synchronizing literal, refused before it is
			// sent, and the library drops the connection.
			body += strings.Repeat("a longer body line\r\n", 2000)
		}
		msgs = append(msgs, corpus.Message{Size: int64(len(body)), Flags: []string{`\Seen`, fmt.Sprintf("Label%02d", i)},
			Date: time.Date(2020, 1, 1, 0, 0, i, 0, time.UTC), Open: func() io.Reader { return strings.NewReader(body) }})
	}
	m := &corpus.Mailbox{Folders: []corpus.Folder{{Path: []string{"INBOX"}}, {Path: []string{"Labels"}, Subscribed: true, Messages: msgs}}}
	m.Folders[0].Messages = msgs[:20]
	m.Folders[1].Messages = msgs[20:]
	corpus.Seed(t, src.Addr, "alice", src.Users["alice"], m)
	// The target refuses keywords longer than 5 characters.
	rep, err := migrate.Copy(context.Background(), userCfg(t, "source", src, "alice"), userCfg(t, "target", dst, "alice"),
		migrate.Options{FolderMap: map[string]string{"INBOX": "Labels"}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed != 0 || rep.Verified != 40 {
		t.Fatalf("copied %d verified %d failed %d: %v", rep.Copied, rep.Verified, rep.Failed, rep.Failures)
	}
	warnings := strings.Join(rep.Warnings, "\n")
	if !strings.Contains(warnings, "refused") || !strings.Contains(warnings, "copied without their keywords") || strings.Contains(warnings, `\Recent`) {
		t.Errorf("warnings do not say keywords were dropped (or mention \\Recent): %q", rep.Warnings)
	}
	// Every body arrived exactly once, with its system flags.
	want := map[string]int{}
	for _, msg := range msgs {
		want[msg.SHA256()]++
	}
	dstSnap := corpus.TakeSnapshot(t, dst.Addr, "alice", dst.Users["alice"])
	for _, msg := range dstSnap.Folders["Labels"].Messages {
		want[msg.SHA256]--
		if !slices.Contains(msg.Flags, `\Seen`) {
			t.Errorf("uid %d lost \\Seen: %v", msg.UID, msg.Flags)
		}
	}
	for sha, n := range want {
		if n != 0 {
			t.Errorf("message %.12s: %d more on the source than on the target", sha, n)
		}
	}
}
