package imapconn

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// Credentials sent as literals (go-imap's form for a password that is not
// plain ASCII) are hidden like quoted ones, whatever the literal's form and
// however the trace is cut into writes; what follows is shown again.
func TestRedactorHidesLiteralCredentials(t *testing.T) {
	const pw = "pässwörd\r\n{3}x"
	lit := func(s, plus string) string { return "{" + strconv.Itoa(len(s)) + plus + "}" }
	tests := []struct {
		name, trace string
		secrets     []string
	}{
		{"literal+ password", "T1 LOGIN alice " + lit(pw, "+") + "\r\n" + pw + "\r\nT1 OK in\r\n", []string{"pässwörd", "{3}x"}},
		{"synchronizing password", "T1 LOGIN alice " + lit(pw, "") + "\r\n+ Ready\r\n" + pw + "\r\nT1 OK in\r\n", []string{"pässwörd", "{3}x"}},
		{"user and password literals", "T1 LOGIN " + lit("älice", "+") + "\r\nälice " + lit(pw, "+") + "\r\n" + pw + "\r\nT1 OK in\r\n", []string{"älice", "pässwörd"}},
		{"literal user, quoted password", "T1 LOGIN " + lit("älice", "") + "\r\n+ go\r\nälice \"s3cr3t\"\r\nT1 OK in\r\n", []string{"älice", "s3cr3t"}},
		{"refused literal", "T1 LOGIN alice {9000}\r\nT1 BAD too big\r\n", nil},
		{"sasl answer starting with +", "T3 AUTHENTICATE PLAIN\r\n+ \r\n+Y3JldA==\r\nT3 OK done\r\n", []string{"+Y3JldA=="}},
	}
	for _, tt := range tests {
		for _, chunk := range []int{1, 5, 1 << 20} {
			var out bytes.Buffer
			r := NewRedactor(&out)
			trace := tt.trace + "T9 SELECT INBOX\r\n"
			for i := 0; i < len(trace); i += chunk {
				if _, err := r.Write([]byte(trace[i:min(i+chunk, len(trace))])); err != nil {
					t.Fatal(err)
				}
			}
			got := out.String()
			for _, s := range tt.secrets {
				if strings.Contains(got, s) {
					t.Errorf("%s (chunks of %d): trace leaks %q:\n%s", tt.name, chunk, s, got)
				}
			}
			for _, kept := range []string{"T9 SELECT INBOX\r\n", "T1 LOGIN <redacted>", "T3 AUTHENTICATE PLAIN\r\n"} {
				if strings.Contains(tt.trace, kept[:8]) && !strings.Contains(got, kept) {
					t.Errorf("%s (chunks of %d): trace lost %q:\n%s", tt.name, chunk, kept, got)
				}
			}
			if strings.Contains(tt.trace, "+ Ready") && !strings.Contains(got, "+ Ready") {
				t.Errorf("%s: the server's continuation request is gone:\n%s", tt.name, got)
			}
		}
	}
}
