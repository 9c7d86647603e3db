package corpus

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"mime"
	"net/mail"
	"slices"
	"strings"
	"time"
)

// RealisticOptions controls GenerateRealistic. Zero fields take defaults.
type RealisticOptions struct {
	// Seed selects the mailbox: the same options yield the same bytes. Give
	// each mailbox of a fleet its own seed.
	Seed uint64
	// Messages is the number of messages in the mailbox (default 500),
	// spread over the folders by fixed shares.
	Messages int
}

// Shape of the realistic size distribution. Ordinary messages are
// log-normal around realisticMedian; attachments (a share of
// realisticAttachmentShare of all messages) are log-normal around
// attachmentMedian, clamped to [attachmentMin, attachmentMax]. Together:
// median ~8 KB, mean ~17 KB.
const (
	realisticMedian          = 7800
	realisticSigma           = 0.8
	realisticMin             = 1500
	realisticMax             = 96 << 10
	realisticAttachmentShare = 0.015
	attachmentMin            = 100_000
	attachmentMax            = 5_000_000
	attachmentMedian         = 260_000
	attachmentSigma          = 0.9
)

// realisticFolder is one folder of a realistic mailbox.
type realisticFolder struct {
	path       []string
	specialUse string
	subscribed bool
	share      float64 // of the mailbox's messages
	list       string  // mailing list id for lists/* folders
	from, to   int     // years the messages are dated in (inclusive)
}

var realisticFolders = []realisticFolder{
	{path: []string{"INBOX"}, subscribed: true, share: 0.30, from: 2024, to: 2025},
	{path: []string{"Sent"}, specialUse: `\Sent`, subscribed: true, share: 0.15, from: 2021, to: 2025},
	{path: []string{"Drafts"}, specialUse: `\Drafts`, subscribed: true, share: 0.01, from: 2024, to: 2025},
	{path: []string{"Trash"}, specialUse: `\Trash`, subscribed: true, share: 0.04, from: 2025, to: 2025},
	{path: []string{"Junk"}, specialUse: `\Junk`, subscribed: true, share: 0.03, from: 2025, to: 2025},
	{path: []string{"Archive"}, specialUse: `\Archive`, subscribed: true, share: 0.02, from: 2019, to: 2022},
	{path: []string{"Archive", "2023"}, subscribed: true, share: 0.14, from: 2023, to: 2023},
	{path: []string{"Archive", "2024"}, subscribed: true, share: 0.14, from: 2024, to: 2024},
	{path: []string{"lists"}, subscribed: true, share: 0, from: 2024, to: 2025},
	{path: []string{"lists", "golang-nuts"}, subscribed: true, share: 0.09, list: "golang-nuts.googlegroups.com", from: 2023, to: 2025},
	{path: []string{"lists", "dovecot"}, subscribed: true, share: 0.05, list: "dovecot.dovecot.org", from: 2022, to: 2025},
	{path: []string{"lists", "announce"}, subscribed: false, share: 0.03, list: "announce.lists.example.org", from: 2020, to: 2025},
}

// GenerateRealistic builds a mailbox shaped like real mail: mostly small
// messages (log-normal sizes, median ~8 KB, mean ~17 KB), about 1.5% with
// a base64 attachment of 100 KB to 5 MB, twelve folders (INBOX, the
// special-use folders, Archive/2023, Archive/2024, lists/...), headers as
// mail clients and list servers write them (Received chains, DKIM,
// List-Id, In-Reply-To), multipart/alternative text and HTML, flags and
// keywords as people leave them, and dates in order of arrival per folder.
// It is deterministic: the same options give the same bytes. It has none
// of Generate's odd messages.
func GenerateRealistic(opts RealisticOptions) *Mailbox {
	if opts.Messages <= 0 {
		opts.Messages = 500
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x7265616c)) // "real"

	// Folder sizes by share; the remainder goes to INBOX.
	counts := make([]int, len(realisticFolders))
	left := opts.Messages
	for i := len(realisticFolders) - 1; i > 0; i-- {
		counts[i] = int(math.Round(realisticFolders[i].share * float64(opts.Messages)))
		counts[i] = min(counts[i], left)
		left -= counts[i]
	}
	counts[0] = left

	m := &Mailbox{}
	for i, spec := range realisticFolders {
		f := Folder{Path: slices.Clone(spec.path), SpecialUse: spec.specialUse, Subscribed: spec.subscribed}
		lo := time.Date(spec.from, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
		hi := time.Date(spec.to+1, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
		for range counts[i] {
			f.Messages = append(f.Messages, newRealistic(rng, spec, time.Unix(lo+rng.Int64N(hi-lo), 0).UTC()))
		}
		// Mail arrives in order: UIDs ascend with the date.
		slices.SortStableFunc(f.Messages, func(a, b Message) int { return a.Date.Compare(b.Date) })
		m.Folders = append(m.Folders, f)
	}
	return m
}

// realisticSize draws one message size from the realistic distribution and
// says whether it carries an attachment.
func realisticSize(rng *rand.Rand) (int64, bool) {
	if rng.Float64() < realisticAttachmentShare {
		v := attachmentMedian * math.Exp(attachmentSigma*rng.NormFloat64())
		return int64(min(max(v, attachmentMin), attachmentMax)), true
	}
	v := realisticMedian * math.Exp(realisticSigma*rng.NormFloat64())
	return int64(min(max(v, realisticMin), realisticMax)), false
}

// realSpec is everything a realistic message's bytes are derived from.
type realSpec struct {
	seed       uint64
	date       time.Time
	folder     realisticFolder
	attachment bool
	html       bool // multipart/alternative text + HTML
	reply      bool
}

func newRealistic(rng *rand.Rand, folder realisticFolder, date time.Time) Message {
	size, att := realisticSize(rng)
	s := realSpec{
		seed: rng.Uint64(), date: date, folder: folder, attachment: att,
		html:  rng.IntN(2) == 0,
		reply: rng.IntN(3) == 0,
	}
	m := Message{Flags: realisticFlags(rng, folder), Date: date}
	m.Size = max(size, s.minimalSize())
	size = m.Size
	m.Open = func() io.Reader { return s.build(size) }
	return m
}

// realisticFlags are flags as people leave them: most old mail read, some
// answered or flagged, a few keywords set by clients and filters.
func realisticFlags(rng *rand.Rand, f realisticFolder) []string {
	var flags []string
	add := func(p float64, flag string) {
		if rng.Float64() < p {
			flags = append(flags, flag)
		}
	}
	switch f.specialUse {
	case `\Sent`:
		flags = append(flags, `\Seen`)
		add(0.02, "$MDNSent")
	case `\Drafts`:
		flags = append(flags, `\Draft`, `\Seen`)
	case `\Trash`:
		add(0.95, `\Seen`)
		add(0.2, `\Deleted`)
	case `\Junk`:
		flags = append(flags, "$Junk")
		add(0.3, `\Seen`)
	default:
		switch {
		case f.list != "":
			add(0.6, `\Seen`)
			add(0.02, `\Flagged`)
		case f.path[0] == "INBOX":
			add(0.8, `\Seen`)
			add(0.12, `\Answered`)
			add(0.06, `\Flagged`)
			add(0.03, "$Forwarded")
			add(0.05, "NonJunk")
			add(0.02, "$Label1")
			add(0.01, "$Label4")
			add(0.01, "Todo")
		default: // archives
			add(0.99, `\Seen`)
			add(0.15, `\Answered`)
			add(0.03, `\Flagged`)
			add(0.04, "$Forwarded")
			add(0.02, "$Label2")
		}
	}
	slices.Sort(flags)
	return slices.Compact(flags)
}

var realisticSubjects = []string{
	"Quarterly report %d",
	"Invoice %d for your order",
	"Meeting notes %d",
	"Überweisung bestätigt – Auftrag %d",
	"Your order #%d has shipped",
	"Lunch tomorrow?",
	"Updated schedule for the migration",
	"Photos from the weekend",
	"Password reset requested",
	"Welcome to the team",
	"Weekly digest %d",
	"Reminder: dentist appointment",
	"Contract draft v%d",
	"Flight confirmation %d",
}

var listSubjects = []string{
	"[go-nuts] generics and interfaces with type sets",
	"[go-nuts] context cancellation in long-running loops",
	"[Dovecot] imapc and doveadm backup performance",
	"[Dovecot] mdbox rotation settings",
	"[announce] release %d.%d available",
	"[go-nuts] Proposal: iterator helpers, round %d",
}

// header returns the realistic header block, ending with the empty line.
// ctype is the Content-Type field's value.
func (s realSpec) header(ctype string) []byte {
	rng := newRand(s.seed, streamHeader)
	var b bytes.Buffer
	field := func(name, value string) { b.WriteString(name + ": " + value + "\r\n") }
	from := people[rng.IntN(len(people))]
	to := people[rng.IntN(len(people))]
	if s.folder.specialUse == `\Sent` || s.folder.specialUse == `\Drafts` {
		from, to = people[0], people[1+rng.IntN(len(people)-1)]
	}
	sent := s.date.Add(-time.Duration(rng.IntN(600)) * time.Second).In(zones[rng.IntN(len(zones))])
	id := fmt.Sprintf("%016x.%d", rng.Uint64(), s.date.Unix())

	if s.folder.specialUse != `\Sent` && s.folder.specialUse != `\Drafts` {
		field("Return-Path", "<"+from.addr+">")
		field("Delivered-To", "alice@example.com")
		hops := 2 + rng.IntN(3)
		for h := range hops {
			at := s.date.Add(-time.Duration(hops-h) * time.Second)
			field("Received", fmt.Sprintf("from mx%d.%s (mx%[1]d.%[2]s [198.51.100.%d])\r\n\tby mail%d.example.com (Postfix) with ESMTPS id %08X\r\n\tfor <alice@example.com>; %s",
				1+rng.IntN(9), domain(from.addr), 1+rng.IntN(254), 1+rng.IntN(4), rng.Uint32(), at.Format(time.RFC1123Z)))
		}
		field("Authentication-Results", fmt.Sprintf("mail.example.com; dkim=pass header.d=%s; spf=pass smtp.mailfrom=%s; dmarc=pass",
			domain(from.addr), domain(from.addr)))
		sig := make([]byte, 0, 344)
		for len(sig) < 344 {
			sig = append(sig, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[rng.IntN(64)])
		}
		field("DKIM-Signature", fmt.Sprintf("v=1; a=rsa-sha256; c=relaxed/relaxed; d=%s; s=sel%d;\r\n\th=from:to:subject:date:message-id:mime-version;\r\n\tbh=%s=;\r\n\tb=%s\r\n\t %s",
			domain(from.addr), 2020+rng.IntN(6), sig[:43], sig[:172], sig[172:]))
	}
	field("From", (&mail.Address{Name: from.name, Address: from.addr}).String())
	field("To", (&mail.Address{Name: to.name, Address: to.addr}).String())
	if rng.IntN(4) == 0 {
		cc := people[rng.IntN(len(people))]
		field("Cc", (&mail.Address{Name: cc.name, Address: cc.addr}).String())
	}
	var subject string
	if s.folder.list != "" {
		subject = listSubjects[rng.IntN(len(listSubjects))]
	} else {
		subject = realisticSubjects[rng.IntN(len(realisticSubjects))]
	}
	switch strings.Count(subject, "%d") {
	case 1:
		subject = fmt.Sprintf(subject, 100+rng.IntN(9900))
	case 2:
		subject = fmt.Sprintf(subject, 1+rng.IntN(3), rng.IntN(30))
	}
	if s.reply {
		subject = "Re: " + subject
	}
	field("Subject", mime.QEncoding.Encode("utf-8", subject))
	field("Date", sent.Format(time.RFC1123Z))
	field("Message-ID", "<"+id+"@"+domain(from.addr)+">")
	if s.reply {
		parent := fmt.Sprintf("<%016x@%s>", rng.Uint64(), domain(to.addr))
		field("In-Reply-To", parent)
		field("References", fmt.Sprintf("<%016x@%s>\r\n %s", rng.Uint64(), domain(to.addr), parent))
	}
	if s.folder.list != "" {
		name, _, _ := strings.Cut(s.folder.list, ".")
		field("List-Id", fmt.Sprintf("%s <%s>", name, s.folder.list))
		field("List-Unsubscribe", fmt.Sprintf("<mailto:%s-unsubscribe@%s>", name, s.folder.list))
		field("Precedence", "list")
	}
	field("User-Agent", []string{"Thunderbird/115.3", "Apple Mail (2.3731)", "Microsoft Outlook 16.0", "Roundcube Webmail/1.6", "K-9 Mail for Android"}[rng.IntN(5)])
	field("MIME-Version", "1.0")
	field("Content-Type", ctype)
	if !strings.HasPrefix(ctype, "multipart/") {
		field("Content-Transfer-Encoding", "8bit")
	}
	b.WriteString("\r\n")
	return b.Bytes()
}

// layout is a realistic message's MIME structure around the text parts:
// the pieces between which text of a given budget is spread.
type layout struct {
	header []byte
	// fixed pieces, with generated text (or base64) between each two.
	fixed []string
}

func (s realSpec) layout() layout {
	rng := newRand(s.seed, streamLayout)
	switch {
	case s.attachment:
		mixed := fmt.Sprintf("=_mf_mixed_%016x", rng.Uint64())
		att := attachments[rng.IntN(len(attachments))]
		return layout{
			header: s.header(`multipart/mixed; boundary="` + mixed + `"`),
			fixed: []string{
				"This is a multi-part message in MIME format.\r\n\r\n--" + mixed + "\r\n" +
					"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
				"\r\n--" + mixed + "\r\n" +
					fmt.Sprintf("Content-Type: %s; name=\"%s\"\r\nContent-Disposition: attachment; filename=\"%[2]s\"\r\n", att.typ, att.name) +
					"Content-Transfer-Encoding: base64\r\n\r\n",
				"--" + mixed + "--\r\n",
			},
		}
	case s.html:
		alt := fmt.Sprintf("=_mf_alt_%016x", rng.Uint64())
		return layout{
			header: s.header(`multipart/alternative; boundary="` + alt + `"`),
			fixed: []string{
				"--" + alt + "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
				"\r\n--" + alt + "\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" +
					"<!DOCTYPE html>\r\n<html><head><meta charset=\"utf-8\"></head><body>\r\n<div dir=\"ltr\">\r\n",
				"</div>\r\n</body></html>\r\n\r\n--" + alt + "--\r\n",
			},
		}
	}
	return layout{header: s.header("text/plain; charset=utf-8; format=flowed"), fixed: []string{"", ""}}
}

func (l layout) fixedLen() int64 {
	n := int64(len(l.header))
	for _, f := range l.fixed {
		n += int64(len(f))
	}
	return n
}

// minimalSize is the smallest size build can produce.
func (s realSpec) minimalSize() int64 {
	l := s.layout()
	n := l.fixedLen()
	if s.attachment {
		n += 78 + 2 // one base64 line and the text part's line break
	}
	return n
}

// build returns a reader of exactly size bytes (size >= minimalSize()).
func (s realSpec) build(size int64) io.Reader {
	l := s.layout()
	budget := size - l.fixedLen()
	text := func(stream uint64, n int64) io.Reader {
		return &textGen{rng: newRand(s.seed, stream), left: n, eol: "\r\n"}
	}
	parts := []io.Reader{bytes.NewReader(l.header), strings.NewReader(l.fixed[0])}
	switch {
	case s.attachment:
		const lineLen = 78 // 76 base64 characters and CRLF
		textLen := min(int64(200+newRand(s.seed, streamTail).IntN(3000)), budget-lineLen)
		lines := (budget - textLen) / lineLen
		textLen = budget - lines*lineLen
		parts = append(parts, text(streamText, textLen), strings.NewReader(l.fixed[1]),
			newBase64Gen(s.seed, lines, "\r\n"), strings.NewReader(l.fixed[2]))
	case s.html:
		// The HTML part is the text again with markup: a bit larger.
		plain := budget * 2 / 5
		parts = append(parts, text(streamText, plain), strings.NewReader(l.fixed[1]),
			&htmlGen{text: textGen{rng: newRand(s.seed, streamText), eol: "\r\n", left: budget - plain}},
			strings.NewReader(l.fixed[2]))
	default:
		parts = append(parts, text(streamText, budget), strings.NewReader(l.fixed[1]))
	}
	return io.MultiReader(parts...)
}

// htmlGen yields exactly text.left bytes of HTML paragraphs: the text
// generator's lines wrapped in <p> ... </p>, padded with plain lines where
// the markup would not fit.
type htmlGen struct {
	text textGen
	buf  []byte
}

func (g *htmlGen) Read(p []byte) (int, error) {
	for len(g.buf) == 0 {
		if g.text.left == 0 {
			return 0, io.EOF
		}
		const open, close = "<p>", "</p>\r\n"
		if g.text.left > 80+int64(len(open)+len(close)) {
			line := g.text.line(20 + g.text.rng.IntN(53))
			g.buf = append(append([]byte(open), line...), close...)
		} else {
			g.buf = g.text.next()
		}
		g.text.left -= int64(len(g.buf))
	}
	n := copy(p, g.buf)
	g.buf = g.buf[n:]
	return n, nil
}

// RealisticStats summarizes a mailbox's size distribution.
type RealisticStats struct {
	Messages    int
	Bytes       int64
	Median      int64
	Mean        float64
	Attachments int // messages of at least 100 KB
}

// Stats returns the size distribution of m's messages.
func Stats(m *Mailbox) RealisticStats {
	var sizes []int64
	var st RealisticStats
	for _, f := range m.Folders {
		for _, msg := range f.Messages {
			sizes = append(sizes, msg.Size)
			st.Bytes += msg.Size
			if msg.Size >= attachmentMin {
				st.Attachments++
			}
		}
	}
	st.Messages = len(sizes)
	if st.Messages == 0 {
		return st
	}
	slices.SortFunc(sizes, cmp.Compare)
	st.Median = sizes[len(sizes)/2]
	st.Mean = float64(st.Bytes) / float64(st.Messages)
	return st
}
