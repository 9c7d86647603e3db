package imapconn

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseEndpoint(t *testing.T) {
	tests := []struct {
		in      string
		want    Endpoint
		wantErr string
	}{
		{in: "imap://alice@mail.example.net", want: Endpoint{Host: "mail.example.net", Port: 143, TLS: TLSStartTLS, Mailbox: "alice", Login: "alice"}},
		{in: "imaps://alice@mail.example.net", want: Endpoint{Host: "mail.example.net", Port: 993, TLS: TLSImplicit, Mailbox: "alice", Login: "alice"}},
		{in: "IMAPS://bob@10.0.0.1:1993/", want: Endpoint{Host: "10.0.0.1", Port: 1993, TLS: TLSImplicit, Mailbox: "bob", Login: "bob"}},
		{in: "imap://alice*admin@[::1]:1143", want: Endpoint{Host: "::1", Port: 1143, TLS: TLSStartTLS, Mailbox: "alice", Login: "alice*admin"}},
		{in: "imap://alice%40example.com@h", want: Endpoint{Host: "h", Port: 143, TLS: TLSStartTLS, Mailbox: "alice@example.com", Login: "alice@example.com"}},
		{in: "imap://alice:secret@h", wantErr: "password inside the URL"},
		{in: "imap://h:143", wantErr: "names no mailbox"},
		{in: "pop3://alice@h", wantErr: "not imap or imaps"},
		{in: "alice@h", wantErr: "no scheme"},
		{in: "imap://alice@h:99999", wantErr: "bad port"},
		{in: "imap://alice@h/INBOX", wantErr: "only scheme://user@host"},
	}
	for _, tt := range tests {
		got, err := ParseEndpoint(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParseEndpoint(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "secret") {
				t.Errorf("ParseEndpoint(%q) error leaks the password: %v", tt.in, err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseEndpoint(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func FuzzParseEndpoint(f *testing.F) {
	for _, s := range []string{"imap://alice@h", "imaps://a*b@[::1]:993", "imap://:x@h", "imap://%zz@h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEndpoint(s)
		if err != nil {
			return
		}
		if e.Host == "" || e.Login == "" || e.Mailbox == "" || e.Port < 1 || e.Port > 65535 {
			t.Fatalf("ParseEndpoint(%q) = %+v: accepted without host, login or port", s, e)
		}
		if !strings.HasPrefix(e.Login, e.Mailbox) {
			t.Fatalf("mailbox %q is not the start of login %q", e.Mailbox, e.Login)
		}
	})
}

func TestRedactorHidesCredentials(t *testing.T) {
	var out bytes.Buffer
	r := NewRedactor(&out)
	trace := "* OK ready\r\n" +
		"T1 LOGIN \"alice*admin\" \"s3cr3t-pw\"\r\n" +
		"T1 OK logged in\r\n" +
		"T2 AUTHENTICATE PLAIN AGFsaWNlAHMzY3IzdC1wdw==\r\n" +
		"T2 OK done\r\n" +
		"T3 AUTHENTICATE PLAIN\r\n+ \r\nYWxpY2UAYWRtaW4AczNjcjN0LXB3\r\nT3 OK done\r\n" +
		"T4 SELECT INBOX\r\n"
	// Write in awkward chunks: lines split across writes.
	for i := 0; i < len(trace); i += 7 {
		if _, err := r.Write([]byte(trace[i:min(i+7, len(trace))])); err != nil {
			t.Fatal(err)
		}
	}
	got := out.String()
	for _, secret := range []string{"s3cr3t-pw", "AGFsaWNlAHMzY3IzdC1wdw==", "YWxpY2UAYWRtaW4AczNjcjN0LXB3"} {
		if strings.Contains(got, secret) {
			t.Errorf("trace leaks %q:\n%s", secret, got)
		}
	}
	for _, kept := range []string{"T1 LOGIN <redacted>", "T4 SELECT INBOX", "T3 OK done"} {
		if !strings.Contains(got, kept) {
			t.Errorf("trace lost %q:\n%s", kept, got)
		}
	}
}
