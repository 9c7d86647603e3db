package corpus_test

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"slices"
	"strings"
	"testing"

	"mailferry/internal/testrig/corpus"
)

func TestGenerateRealisticIsDeterministic(t *testing.T) {
	t.Parallel()
	opts := corpus.RealisticOptions{Seed: 7, Messages: 120}
	a, b := mailboxDigest(t, corpus.GenerateRealistic(opts)), mailboxDigest(t, corpus.GenerateRealistic(opts))
	if a != b {
		t.Errorf("same seed, different mailboxes")
	}
	opts.Seed = 8
	if c := mailboxDigest(t, corpus.GenerateRealistic(opts)); c == a {
		t.Errorf("different seeds, same mailbox")
	}
}

// TestRealisticSizes checks the size distribution the bench relies on over
// a fleet of 20 mailboxes of 500 messages (the bench's default): median
// about 8 KB, mean about 17 KB, about 1.5% attachments of 100 KB to 5 MB.
func TestRealisticSizes(t *testing.T) {
	t.Parallel()
	var sizes []int64
	var total int64
	att := 0
	for i := range 20 {
		m := corpus.GenerateRealistic(corpus.RealisticOptions{Seed: uint64(i), Messages: 500})
		if n := m.TotalMessages(); n != 500 {
			t.Fatalf("mailbox %d: %d messages, want 500", i, n)
		}
		if n := len(m.Folders); n < 8 || n > 12 {
			t.Errorf("mailbox %d: %d folders, want 8 to 12", i, n)
		}
		for _, f := range m.Folders {
			for _, msg := range f.Messages {
				sizes = append(sizes, msg.Size)
				total += msg.Size
				if msg.Size >= 100_000 {
					att++
					if msg.Size > 5_000_000 {
						t.Errorf("%q: message of %d bytes, want at most 5 MB", f.Key(), msg.Size)
					}
				}
			}
		}
		st := corpus.Stats(m)
		if st.Messages != 500 || st.Bytes != m.TotalBytes() {
			t.Errorf("mailbox %d: Stats %+v disagrees with the mailbox", i, st)
		}
	}
	n := len(sizes)
	slices.Sort(sizes)
	median := sizes[n/2]
	mean := float64(total) / float64(n)
	share := float64(att) / float64(n)
	t.Logf("%d messages, %.1f MB: median %d, mean %.0f, attachments %.2f%%", n, float64(total)/1e6, median, mean, 100*share)
	if median < 6500 || median > 9500 {
		t.Errorf("median size %d, want about 8 KB (6.5 to 9.5 KB)", median)
	}
	if mean < 14000 || mean > 21000 {
		t.Errorf("mean size %.0f, want about 17 KB (14 to 21 KB)", mean)
	}
	if share < 0.01 || share > 0.02 {
		t.Errorf("attachment share %.2f%%, want about 1.5%% (1 to 2%%)", 100*share)
	}
	if sizes[0] < 1000 || sizes[n-1] < 1_000_000 {
		t.Errorf("sizes from %d to %d: want small messages and a few large ones", sizes[0], sizes[n-1])
	}
}

// TestRealisticMessagesParse checks that every message is well-formed
// mail: exactly Size bytes, CRLF only, a parsable header with Message-ID
// and Date, and MIME parts that parse (attachments as base64).
func TestRealisticMessagesParse(t *testing.T) {
	t.Parallel()
	m := corpus.GenerateRealistic(corpus.RealisticOptions{Seed: 3, Messages: 400})
	kinds := map[string]int{}
	for _, f := range m.Folders {
		for _, msg := range f.Messages {
			data, err := io.ReadAll(msg.Open())
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(data)) != msg.Size {
				t.Fatalf("%q: Open yields %d bytes, Size says %d", f.Key(), len(data), msg.Size)
			}
			if bytes.Contains(bytes.ReplaceAll(data, []byte("\r\n"), nil), []byte("\n")) {
				t.Fatalf("%q: bare LF in a realistic message", f.Key())
			}
			pm, err := mail.ReadMessage(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("%q: %v", f.Key(), err)
			}
			if pm.Header.Get("Message-ID") == "" {
				t.Errorf("%q: no Message-ID", f.Key())
			}
			if _, err := pm.Header.Date(); err != nil {
				t.Errorf("%q: Date: %v", f.Key(), err)
			}
			if strings.HasPrefix(f.Key(), "lists/") && pm.Header.Get("List-Id") == "" {
				t.Errorf("%q: list message without List-Id", f.Key())
			}
			mt, params, err := mime.ParseMediaType(pm.Header.Get("Content-Type"))
			if err != nil {
				t.Fatalf("%q: Content-Type: %v", f.Key(), err)
			}
			kinds[mt]++
			if !strings.HasPrefix(mt, "multipart/") {
				continue
			}
			r := multipart.NewReader(pm.Body, params["boundary"])
			parts := 0
			for {
				p, err := r.NextPart()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%q %s: part %d: %v", f.Key(), mt, parts, err)
				}
				var body io.Reader = p
				if p.Header.Get("Content-Transfer-Encoding") == "base64" {
					body = base64.NewDecoder(base64.StdEncoding, p)
					kinds["attachment"]++
				}
				if _, err := io.Copy(io.Discard, body); err != nil {
					t.Fatalf("%q %s: part %d: %v", f.Key(), mt, parts, err)
				}
				parts++
			}
			if parts != 2 {
				t.Errorf("%q %s: %d parts, want 2", f.Key(), mt, parts)
			}
		}
	}
	if kinds["text/plain"] == 0 || kinds["multipart/alternative"] == 0 || kinds["attachment"] != kinds["multipart/mixed"] {
		t.Errorf("content types %v: want text/plain, multipart/alternative, and a base64 attachment in every multipart/mixed", kinds)
	}
}
