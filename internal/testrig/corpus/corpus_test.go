package corpus_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"slices"
	"strings"
	"testing"

	"mailferry/internal/testrig/corpus"
)

func digest(t *testing.T, m corpus.Message) string {
	t.Helper()
	h := sha256.New()
	n, err := io.Copy(h, m.Open())
	if err != nil {
		t.Fatal(err)
	}
	if n != m.Size {
		t.Fatalf("Open yields %d bytes, Size says %d (odd %q)", n, m.Size, m.Odd)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func mailboxDigest(t *testing.T, m *corpus.Mailbox) string {
	t.Helper()
	h := sha256.New()
	for _, f := range m.Folders {
		io.WriteString(h, f.Key()+"\x00"+f.SpecialUse+"\x00")
		for _, msg := range f.Messages {
			io.WriteString(h, digest(t, msg)+strings.Join(msg.Flags, ",")+msg.Date.String()+msg.Odd+"\x00")
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func TestGenerateIsDeterministic(t *testing.T) {
	t.Parallel()
	opts := corpus.Options{Seed: 42, MessagesPerFolder: 4, MaxSize: 256 << 10, Odd: true}
	a, b := mailboxDigest(t, corpus.Generate(opts)), mailboxDigest(t, corpus.Generate(opts))
	if a != b {
		t.Errorf("same seed, different corpora")
	}
	opts.Seed = 43
	if c := mailboxDigest(t, corpus.Generate(opts)); c == a {
		t.Errorf("different seeds, same corpus")
	}
	// Open twice, read interleaved: independent readers.
	m := corpus.Generate(opts).Folders[0].Messages[0]
	r1, r2 := m.Open(), m.Open()
	b1, _ := io.ReadAll(io.LimitReader(r1, 100))
	b2, _ := io.ReadAll(r2)
	rest, _ := io.ReadAll(r1)
	if !bytes.Equal(append(b1, rest...), b2) {
		t.Errorf("two readers of one message yield different bytes")
	}
}

func TestGenerateShape(t *testing.T) {
	t.Parallel()
	const maxSize = 512 << 10
	m := corpus.Generate(corpus.Options{Seed: 7, MessagesPerFolder: 6, MaxSize: maxSize, Odd: true})

	keys := make(map[string]*corpus.Folder)
	depth, empty := 0, 0
	for i := range m.Folders {
		f := &m.Folders[i]
		if len(f.Path) > 1 {
			if _, ok := keys[strings.Join(f.Path[:len(f.Path)-1], "/")]; !ok {
				t.Errorf("folder %q comes before its parent", f.Key())
			}
		}
		for _, seg := range f.Path {
			if strings.ContainsAny(seg, "./") || seg == "" {
				t.Errorf("folder %q: segment %q unusable under '.' or '/'", f.Key(), seg)
			}
		}
		keys[f.Key()] = f
		depth = max(depth, len(f.Path))
		if len(f.Messages) == 0 {
			empty++
		}
	}
	if m.Folders[0].Key() != "INBOX" {
		t.Errorf("first folder %q, want INBOX", m.Folders[0].Key())
	}
	for use, name := range map[string]string{`\Sent`: "Sent", `\Drafts`: "Drafts", `\Trash`: "Trash", `\Junk`: "Junk", `\Archive`: "Archive"} {
		if f := keys[name]; f == nil || f.SpecialUse != use {
			t.Errorf("special-use folder %s %q missing", use, name)
		}
	}
	for _, k := range []string{"Überweisungen", "日本語", "Отчёты", "Bills & Receipts", "Old Stuff", "Archive/2019/Q4"} {
		if keys[k] == nil {
			t.Errorf("folder %q missing", k)
		}
	}
	if depth < 3 || empty == 0 {
		t.Errorf("max depth %d, %d empty folders: want 3 levels and an empty folder", depth, empty)
	}
	if m.Folder("Projects/Mailferry/Specs & Drafts").Subscribed {
		t.Errorf("want some unsubscribed folders")
	}

	odd := make(map[string]int)
	var maxed, multipartSeen int
	var total int64
	for _, f := range m.Folders {
		seen := make(map[string]int)
		for _, msg := range f.Messages {
			total += msg.Size
			odd[msg.Odd]++
			if msg.Size == maxSize {
				maxed++
			}
			if msg.Size > maxSize || msg.Size <= 0 {
				t.Errorf("%s: size %d outside (0, %d]", f.Key(), msg.Size, maxSize)
			}
			if slices.Contains(msg.Flags, `\Recent`) || !slices.IsSorted(msg.Flags) {
				t.Errorf("%s: flags %v: want sorted, no \\Recent", f.Key(), msg.Flags)
			}
			if msg.Date.Nanosecond() != 0 || msg.Date.Location().String() != "UTC" {
				t.Errorf("%s: date %v: want whole seconds in UTC", f.Key(), msg.Date)
			}
			data, _ := io.ReadAll(msg.Open())
			seen[string(data)]++
			checkBytes(t, f.Key(), msg, data)
			if msg.Odd == "" && isMultipart(t, data) {
				multipartSeen++
			}
		}
		for _, n := range seen {
			if n > 1 && f.Key() != "INBOX" {
				t.Errorf("%s: unexpected duplicate", f.Key())
			}
		}
	}
	if total != m.TotalBytes() {
		t.Errorf("TotalBytes %d, sum %d", m.TotalBytes(), total)
	}
	if maxed == 0 || multipartSeen == 0 {
		t.Errorf("%d messages of MaxSize, %d multipart: want some of each", maxed, multipartSeen)
	}
	for _, k := range []string{corpus.OddNoMessageID, corpus.OddDuplicate, corpus.OddIdentical, corpus.OddBareLF, corpus.OddEightBit, corpus.OddLongLine, corpus.OddHeadersOnly} {
		if odd[k] != 1 {
			t.Errorf("%d messages of odd kind %q, want 1", odd[k], k)
		}
	}
	if odd[""] != m.TotalMessages()-7 {
		t.Errorf("TotalMessages %d does not add up", m.TotalMessages())
	}
}

// checkBytes checks one message's bytes against what its kind promises.
func checkBytes(t *testing.T, folder string, msg corpus.Message, data []byte) {
	t.Helper()
	if bytes.IndexByte(data, 0) >= 0 {
		t.Errorf("%s: NUL byte in message", folder)
	}
	bareLF := bytes.Count(data, []byte("\n")) != bytes.Count(data, []byte("\r\n"))
	if bareLF != (msg.Odd == corpus.OddBareLF) {
		t.Errorf("%s: odd %q, bare LF %t", folder, msg.Odd, bareLF)
	}
	if bytes.Count(data, []byte("\r")) != bytes.Count(data, []byte("\r\n")) {
		t.Errorf("%s: bare CR", folder)
	}
	hasID := bytes.Contains(data, []byte("\nMessage-ID: <"))
	if hasID == (msg.Odd == corpus.OddNoMessageID) {
		t.Errorf("%s: odd %q, Message-ID present %t", folder, msg.Odd, hasID)
	}
	longest := 0
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		longest = max(longest, len(line))
	}
	if (longest > 10_000) != (msg.Odd == corpus.OddLongLine) {
		t.Errorf("%s: odd %q, longest line %d", folder, msg.Odd, longest)
	}
	switch msg.Odd {
	case corpus.OddHeadersOnly:
		if bytes.Contains(data, []byte("\r\n\r\n")) {
			t.Errorf("%s: headers-only message has a body", folder)
		}
	case corpus.OddEightBit:
		if !bytes.Contains(data, []byte("\xfc")) || !bytes.Contains(data, []byte("日本語")) {
			t.Errorf("%s: 8-bit message lacks raw Latin-1 or UTF-8 header bytes", folder)
		}
	case "", corpus.OddDuplicate, corpus.OddIdentical, corpus.OddNoMessageID:
		msgHdr, err := mail.ReadMessage(bytes.NewReader(data))
		if err != nil {
			t.Errorf("%s: not RFC 5322: %v", folder, err)
			return
		}
		for _, h := range []string{"From", "To", "Subject", "Date"} {
			if msgHdr.Header.Get(h) == "" {
				t.Errorf("%s: no %s header", folder, h)
			}
		}
		if _, err := msgHdr.Header.Date(); err != nil {
			t.Errorf("%s: Date: %v", folder, err)
		}
	}
}

// isMultipart parses a multipart message fully, decoding its base64
// attachment; it reports whether the message was multipart.
func isMultipart(t *testing.T, data []byte) bool {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("Content-Type: %v", err)
	}
	if mt != "multipart/mixed" {
		return false
	}
	r := multipart.NewReader(msg.Body, params["boundary"])
	parts := 0
	for {
		p, err := r.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("part %d: %v", parts, err)
		}
		parts++
		if p.Header.Get("Content-Transfer-Encoding") == "base64" {
			n, err := io.Copy(io.Discard, base64.NewDecoder(base64.StdEncoding, p))
			if err != nil || n == 0 {
				t.Errorf("attachment: %d bytes, %v", n, err)
			}
		}
	}
	if parts != 2 {
		t.Errorf("%d parts, want 2", parts)
	}
	return true
}

func TestBig(t *testing.T) {
	t.Parallel()
	for _, size := range []int64{1500, 10 << 10, 3 << 20, 50 << 20} {
		m := corpus.Big(size, 1)
		if m.Size != size {
			t.Errorf("Big(%d).Size = %d", size, m.Size)
		}
		d := digest(t, m) // checks the length
		if size > 3<<20 {
			continue // the point was the exact size of a huge message
		}
		data, _ := io.ReadAll(m.Open())
		if size > 64<<10 && !isMultipart(t, data) {
			t.Errorf("Big(%d) is not multipart", size)
		}
		if d2 := digest(t, corpus.Big(size, 1)); d2 != d {
			t.Errorf("Big(%d, 1) not deterministic", size)
		}
		if size == 10<<10 && digest(t, corpus.Big(size, 2)) == d {
			t.Errorf("Big with different seeds gave the same bytes")
		}
	}
}

func TestServed(t *testing.T) {
	n, sum, err := corpus.Served(strings.NewReader("a\nb\r\nc\x00\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256([]byte("a\r\nb\r\nc\x80\r\n"))
	if n != 10 || sum != hex.EncodeToString(want[:]) {
		t.Errorf("Served = %d %s", n, sum)
	}
}
