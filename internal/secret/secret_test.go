package secret

import (
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"imap://alice@h:143", "imap://alice@h:143"},
		{"imap://alice:s3cret@h:143", "imap://alice:xxxxx@h:143"},
		{"imap://alice:s3cret@h:bad", "imap://alice:xxxxx@h:bad"},
		{"imap://alice:s3:cr@et@h", "imap://alice:xxxxx@h"},
		{"alice:s3cret@h", "alice:xxxxx@h"},
		{"imap://alice:s3cr%zzet@h/x", "imap://alice:xxxxx@h/x"},
		{"postgres://u:s3cret@db/x?sslmode=disable&password=s3cret", "postgres://u:xxxxx@db/x?sslmode=disable&password=xxxxx"},
		{"postgres://db/x?password=s3cret", "postgres://db/x?password=xxxxx"},
		{"host:993", "host:993"},
	}
	for _, tt := range tests {
		got := RedactURL(tt.in)
		if got != tt.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(got, "s3") || strings.Contains(got, "cret") {
			t.Errorf("RedactURL(%q) leaks: %q", tt.in, got)
		}
	}
}
