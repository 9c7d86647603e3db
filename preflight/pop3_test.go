package preflight

import (
	"testing"

	"github.com/emersion/go-imap/v2"

	"mailferry/internal/pop3"
)

// TestUIDLFormat: the source's UIDLs are recognised as Dovecot's UID or
// UID+UIDVALIDITY formats, in either case, and as unknown otherwise
// (another scheme, or the INBOX changed between the POP3 and IMAP reads).
func TestUIDLFormat(t *testing.T) {
	l := func(uidls ...string) *pop3.Listing {
		out := &pop3.Listing{}
		for i, u := range uidls {
			out.Messages = append(out.Messages, pop3.Message{Num: i + 1, UIDL: u})
		}
		return out
	}
	uids := []imap.UID{1, 2, 10}
	tests := []struct {
		name    string
		listing *pop3.Listing
		uids    []imap.UID
		want    string
	}{
		{"uid", l("00000001", "00000002", "0000000a"), uids, FormatUID},
		{"uid upper case", l("00000001", "00000002", "0000000A"), uids, FormatUID},
		{"uid and uidvalidity", l("00000001665f1a2b", "00000002665f1a2b", "0000000a665f1a2b"), uids, FormatUIDUIDValidity},
		{"other uidvalidity", l("00000001665f1a2b", "00000002665f1a2c", "0000000a665f1a2b"), uids, FormatUnknown},
		{"md5-like", l("1c5bd6f1e8a9b2c3", "77aa", "ffee"), uids, FormatUnknown},
		{"counts differ", l("00000001", "00000002"), uids, FormatUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := uidlFormat(tt.listing, tt.uids, 0x665f1a2b); got != tt.want {
				t.Fatalf("format %q, want %q", got, tt.want)
			}
		})
	}
}
