package corpus

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/mail"
	"strings"
	"time"
)

// spec is everything a message's bytes are derived from.
type spec struct {
	seed   uint64
	date   time.Time
	odd    string
	folder string
}

func (s spec) eol() string {
	if s.odd == OddBareLF {
		return "\n"
	}
	return "\r\n"
}

// Independent random streams of one message, so that e.g. the header does
// not change when the body layout does.
const (
	streamHeader = iota + 1
	streamLayout
	streamText
	streamTail
)

func newRand(seed, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream))
}

var people = []struct{ name, addr string }{
	{"Alice Example", "alice@example.com"},
	{"Bob Builder", "bob@example.org"},
	{"Carol Díaz", "carol.diaz@example.net"},
	{"Jürgen Müller", "j.mueller@beispiel.de"},
	{"Анна Петрова", "anna.petrova@primer.ru"},
	{"山田 太郎", "taro.yamada@example.jp"},
	{"Zoë O'Brien", "zoe@example.ie"},
	{"", "noreply@notifications.example.com"},
	{"Billing Department", "billing@shop.example"},
	{"François Lefèvre", "f.lefevre@exemple.fr"},
}

var subjects = []string{
	"Re: Quarterly report",
	"Fwd: Invoice %d",
	"Meeting notes %d",
	"Überweisung bestätigt – Auftrag %d",
	"Отчёт за квартал %d",
	"会議の議事録 %d",
	"Your order #%d has shipped",
	"Lunch tomorrow?",
	"[mailferry-dev] Patch %d: streaming append",
	"Photos from the weekend 📷",
	"Re: Re: Re: budget %d",
}

var words = []string{
	"the", "report", "attached", "please", "find", "meeting", "tomorrow",
	"invoice", "thanks", "regards", "schedule", "migration", "mailbox",
	"cluster", "storage", "Grüße", "Überweisung", "bitte", "danke",
	"спасибо", "отчёт", "こんにちは", "よろしく", "café", "naïve", "résumé",
	"deadline", "budget", "and", "of", "to", "a", "in", "is", "for", "on",
	"with", "as", "we", "will", "review", "Monday", "Friday", "quarter",
}

var attachments = []struct{ typ, name string }{
	{"application/pdf", "Rechnung_2019-04.pdf"},
	{"image/jpeg", "IMG_4711.jpg"},
	{"application/zip", "backup.zip"},
	{"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "Q4 figures.xlsx"},
	{"application/octet-stream", "data.bin"},
}

var zones = []*time.Location{
	time.UTC,
	time.FixedZone("CET", 3600),
	time.FixedZone("EST", -5*3600),
	time.FixedZone("JST", 9*3600),
	time.FixedZone("IST", 5*3600+1800),
}

// header returns the header block. For every message but a headers-only
// one it ends with the empty line. boundary is "" for a text/plain message.
func header(s spec, boundary string) []byte {
	rng := newRand(s.seed, streamHeader)
	eol := s.eol()
	var b bytes.Buffer
	field := func(name, value string) { b.WriteString(name + ": " + value + eol) }

	from := people[rng.IntN(len(people))]
	to := people[rng.IntN(len(people))]
	sent := s.date.Add(-time.Duration(rng.IntN(3600)) * time.Second).In(zones[rng.IntN(len(zones))])
	host := fmt.Sprintf("mx%d.example.net", 1+rng.IntN(9))
	id := fmt.Sprintf("%016x.%d", rng.Uint64(), s.date.Unix())
	subject := subjects[rng.IntN(len(subjects))]
	if strings.Contains(subject, "%d") {
		subject = fmt.Sprintf(subject, 1000+rng.IntN(9000))
	}

	field("Return-Path", "<"+from.addr+">")
	field("Received", fmt.Sprintf("from mail.%s (mail.%[1]s [192.0.2.%d])%s\tby %s with ESMTPS id %08x%s\tfor <%s>; %s",
		domain(from.addr), 1+rng.IntN(254), eol, host, rng.Uint32(), eol, to.addr, s.date.Format(time.RFC1123Z)))
	if s.odd == OddEightBit {
		// Raw UTF-8 in From, Latin-1 in Subject: both invalid in a header.
		field("From", fmt.Sprintf("Jürgen Müller <%s>", from.addr))
		field("To", (&mail.Address{Name: to.name, Address: to.addr}).String())
		field("Subject", "Gr\xfc\xdfe aus K\xf6ln, sch\xf6nen Tag")
		field("X-Note", "日本語のヘッダー")
	} else {
		field("From", (&mail.Address{Name: from.name, Address: from.addr}).String())
		field("To", (&mail.Address{Name: to.name, Address: to.addr}).String())
		if rng.IntN(4) == 0 {
			cc := people[rng.IntN(len(people))]
			field("Cc", (&mail.Address{Name: cc.name, Address: cc.addr}).String())
		}
		field("Subject", mime.QEncoding.Encode("utf-8", subject))
	}
	field("Date", sent.Format(time.RFC1123Z))
	if s.odd != OddNoMessageID {
		field("Message-ID", "<"+id+"@"+domain(from.addr)+">")
	}
	if rng.IntN(3) == 0 {
		field("X-Mailer", []string{"Thunderbird 115.3", "Apple Mail (2.3731)", "Microsoft Outlook 16.0", "Roundcube Webmail/1.6"}[rng.IntN(4)])
	}
	field("MIME-Version", "1.0")
	if boundary != "" {
		field("Content-Type", `multipart/mixed; boundary="`+boundary+`"`)
	} else {
		field("Content-Type", "text/plain; charset=utf-8")
		field("Content-Transfer-Encoding", "8bit")
	}
	if s.odd != OddHeadersOnly {
		b.WriteString(eol)
	}
	return b.Bytes()
}

func domain(addr string) string {
	_, d, _ := strings.Cut(addr, "@")
	return d
}

const longLineMin = 10_001

// minimalSize is the smallest size build can produce for s.
func minimalSize(s spec) int64 {
	n := int64(len(header(s, "")))
	if s.odd == OddLongLine {
		n += longLineMin + int64(len(s.eol()))
	}
	return n
}

// build returns a reader of exactly size bytes (size >= minimalSize(s)).
func build(s spec, size int64) io.Reader {
	eol := s.eol()
	layout := newRand(s.seed, streamLayout)
	text := func(stream uint64, n int64) io.Reader {
		return &textGen{rng: newRand(s.seed, stream), left: n, eol: eol}
	}

	switch s.odd {
	case OddHeadersOnly:
		return bytes.NewReader(header(s, ""))
	case OddLongLine:
		h := header(s, "")
		budget := size - int64(len(h))
		long := longLineMin + int64(layout.IntN(2000))
		rest := budget - long - int64(len(eol))
		if rest < 0 {
			long += rest
			rest = 0
		}
		lead := min(rest/2, 400)
		if lead < int64(len(eol)) {
			lead = 0
		}
		g := &textGen{rng: newRand(s.seed, streamTail), eol: eol}
		line := append(g.line(int(long)), eol...)
		return io.MultiReader(bytes.NewReader(h), text(streamText, lead), bytes.NewReader(line), text(streamTail, rest-lead))
	}

	// Multipart with a base64 attachment for most messages above 8 KiB
	// and all above 64 KiB; text/plain otherwise or when it would not fit.
	if size >= 8<<10 && (size > 64<<10 || layout.IntN(2) == 0) {
		boundary := fmt.Sprintf("=_mf_%016x", layout.Uint64())
		att := attachments[layout.IntN(len(attachments))]
		h := header(s, boundary)
		pre := "This is a multi-part message in MIME format." + eol + eol + "--" + boundary + eol +
			"Content-Type: text/plain; charset=utf-8" + eol + "Content-Transfer-Encoding: 8bit" + eol + eol
		mid := "--" + boundary + eol +
			fmt.Sprintf(`Content-Type: %s; name="%s"`, att.typ, att.name) + eol +
			fmt.Sprintf(`Content-Disposition: attachment; filename="%s"`, att.name) + eol +
			"Content-Transfer-Encoding: base64" + eol + eol
		post := "--" + boundary + "--" + eol
		lineLen := int64(76 + len(eol))
		budget := size - int64(len(h)+len(pre)+len(mid)+len(post))
		textMin := int64(100 + layout.IntN(1500))
		if lines := (budget - textMin) / lineLen; lines > 0 {
			return io.MultiReader(bytes.NewReader(h), strings.NewReader(pre),
				text(streamText, budget-lines*lineLen), strings.NewReader(mid),
				newBase64Gen(s.seed, lines, eol), strings.NewReader(post))
		}
	}
	h := header(s, "")
	return io.MultiReader(bytes.NewReader(h), text(streamText, size-int64(len(h))))
}

// textGen yields exactly left bytes of UTF-8 prose in lines of at most 78
// bytes; it ends with a line break when left >= len(eol).
type textGen struct {
	rng  *rand.Rand
	left int64
	eol  string
	buf  []byte
}

func (g *textGen) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		if g.left == 0 {
			return 0, io.EOF
		}
		g.buf = g.next()
		g.left -= int64(len(g.buf))
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

func (g *textGen) next() []byte {
	eol := int64(len(g.eol))
	switch {
	case g.left < eol:
		return bytes.Repeat([]byte("."), int(g.left))
	case g.left <= 80:
		return append(g.line(int(g.left-eol)), g.eol...)
	case g.rng.IntN(8) == 0:
		return []byte(g.eol) // paragraph break
	default:
		return append(g.line(20+g.rng.IntN(53)), g.eol...)
	}
}

// line returns exactly n bytes of words (no line break, no trailing space),
// padded with ASCII so that no UTF-8 sequence is cut.
func (g *textGen) line(n int) []byte {
	b := make([]byte, 0, n)
	for {
		w := words[g.rng.IntN(len(words))]
		sep := 0
		if len(b) > 0 {
			sep = 1
		}
		if len(b)+sep+len(w) > n {
			break
		}
		if sep == 1 {
			b = append(b, ' ')
		}
		b = append(b, w...)
	}
	for i := 0; len(b) < n; i++ {
		b = append(b, "abcdefghijklmnopqrstuvwxyz"[i%26])
	}
	return b
}

// base64Gen yields lines of 76 base64 characters encoding pseudo-random
// bytes (an "attachment"), each followed by eol.
type base64Gen struct {
	src   *rand.ChaCha8
	lines int64
	eol   string
	raw   []byte
	buf   []byte
	out   []byte
}

func newBase64Gen(seed uint64, lines int64, eol string) *base64Gen {
	var key [32]byte
	r := newRand(seed, 0xa77)
	for i := 0; i < len(key); i += 8 {
		binary.LittleEndian.PutUint64(key[i:], r.Uint64())
	}
	return &base64Gen{src: rand.NewChaCha8(key), lines: lines, eol: eol}
}

func (g *base64Gen) Read(p []byte) (int, error) {
	if len(g.buf) == 0 {
		if g.lines == 0 {
			return 0, io.EOF
		}
		g.fill()
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

func (g *base64Gen) fill() {
	const batch = 512 // lines per fill: ~40 KB
	k := min(g.lines, batch)
	g.lines -= k
	if g.raw == nil {
		g.raw = make([]byte, 57*batch)
		g.out = make([]byte, 0, (76+len(g.eol))*batch)
	}
	raw := g.raw[:57*k]
	_, _ = g.src.Read(raw)
	out := g.out[:0]
	var enc [76]byte
	for i := range k {
		base64.StdEncoding.Encode(enc[:], raw[57*i:57*i+57])
		out = append(out, enc[:]...)
		out = append(out, g.eol...)
	}
	g.out = out
	g.buf = out
}
