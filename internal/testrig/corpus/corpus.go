// Package corpus generates deterministic, realistic mailboxes, seeds them
// into an IMAP account, and reads accounts back as snapshots that can be
// compared: the test oracle for migrations.
//
// Message bodies are never stored: each Message regenerates its bytes from
// a seed whenever it is opened, so a corpus of many large messages costs
// almost no memory.
//
// The oracle (Seed, TakeSnapshot, Compare) talks IMAP with imapclient
// directly and shares no code with the migration engine it judges.
package corpus

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Message is one generated message.
type Message struct {
	// Size is the exact number of bytes Open yields.
	Size int64
	// Flags are system flags (\Seen, \Answered, \Flagged, \Draft, \Deleted;
	// never \Recent) and keywords ($Forwarded, Junk, custom atoms), sorted.
	Flags []string
	// Date is the INTERNALDATE to append with: whole seconds, UTC.
	Date time.Time
	// Odd is "" for an ordinary message, otherwise what is unusual about
	// it (one of the Odd* constants).
	Odd string
	// Open returns the message bytes, exactly Size long, regenerated on
	// every call (a large message is never held in memory). Readers
	// returned by separate calls are independent and yield identical bytes.
	Open func() io.Reader
}

// SHA256 returns the hex SHA-256 of the message's bytes (reading them once).
func (m Message) SHA256() string {
	h := sha256.New()
	_, _ = io.Copy(h, m.Open())
	return hex.EncodeToString(h.Sum(nil))
}

// Kinds of odd messages (Message.Odd).
const (
	OddNoMessageID = "no-message-id" // no Message-ID header
	OddDuplicate   = "duplicate"     // same bytes as another message in the folder, other flags and date
	OddIdentical   = "identical"     // same bytes, flags and date as another message in the folder
	OddBareLF      = "bare-lf"       // LF line endings; Dovecot serves them as CRLF
	OddEightBit    = "8bit-header"   // raw UTF-8 and Latin-1 bytes in header fields
	OddLongLine    = "long-line"     // a body line longer than 10,000 characters
	OddHeadersOnly = "headers-only"  // a header block and nothing else
)

// Folder is one mailbox folder.
type Folder struct {
	// Path holds the hierarchy segments (UTF-8), e.g. {"Archive", "2019"};
	// {"INBOX"} is the inbox. Segments never contain "." or "/", so the
	// folder can be created under either hierarchy separator.
	Path []string
	// SpecialUse is "" or the folder's special-use attribute (`\Sent`...).
	SpecialUse string
	Subscribed bool
	Messages   []Message
}

// Key returns the folder's path joined with "/", the key used by Snapshot.
func (f *Folder) Key() string { return strings.Join(f.Path, "/") }

// Mailbox is one account's folders, parents before children.
type Mailbox struct {
	Folders []Folder
}

// TotalBytes returns the sum of all message sizes.
func (m *Mailbox) TotalBytes() int64 {
	var n int64
	for _, f := range m.Folders {
		for _, msg := range f.Messages {
			n += msg.Size
		}
	}
	return n
}

// TotalMessages returns the number of messages in all folders.
func (m *Mailbox) TotalMessages() int {
	n := 0
	for _, f := range m.Folders {
		n += len(f.Messages)
	}
	return n
}

// Folder returns the folder with the given key (path joined by "/"), or nil.
func (m *Mailbox) Folder(key string) *Folder {
	for i := range m.Folders {
		if m.Folders[i].Key() == key {
			return &m.Folders[i]
		}
	}
	return nil
}

// Options controls Generate. Zero fields take defaults.
type Options struct {
	// Seed selects the corpus: the same Options yield the same bytes.
	Seed uint64
	// Folders is the number of folders (default: every built-in folder,
	// 20). The built-in folders come first in a fixed order (INBOX, the
	// special-use folders, UTF-8, nested and odd names, an empty folder);
	// more than 20 adds flat "Folder NNN" folders.
	Folders int
	// MessagesPerFolder is the average number of messages per folder
	// (default 8); each folder gets between half and one and a half times
	// as many. The empty folder stays empty.
	MessagesPerFolder int
	// MaxSize is the largest message size (default 1 MiB, at least 4 KiB).
	// Sizes are spread log-uniformly from about 1 KiB up to MaxSize, and
	// a few messages (at least one) are exactly MaxSize.
	MaxSize int64
	// Odd adds the odd messages (see the Odd* constants) to INBOX.
	Odd bool
}

type folderSpec struct {
	path       []string
	specialUse string
	subscribed bool
	empty      bool
}

// builtinFolders are in generation order; parents precede children.
var builtinFolders = []folderSpec{
	{path: []string{"INBOX"}, subscribed: true},
	{path: []string{"Sent"}, specialUse: `\Sent`, subscribed: true},
	{path: []string{"Drafts"}, specialUse: `\Drafts`, subscribed: true},
	{path: []string{"Trash"}, specialUse: `\Trash`, subscribed: true},
	{path: []string{"Junk"}, specialUse: `\Junk`, subscribed: true},
	{path: []string{"Archive"}, specialUse: `\Archive`, subscribed: true},
	{path: []string{"Überweisungen"}, subscribed: true},
	{path: []string{"Archive", "2019"}, subscribed: true},
	{path: []string{"Bills & Receipts"}, subscribed: true},
	{path: []string{"日本語"}, subscribed: true},
	{path: []string{"Отчёты"}, subscribed: true},
	{path: []string{"Old Stuff"}, subscribed: false, empty: true},
	{path: []string{"Archive", "2019", "Q4"}, subscribed: true},
	{path: []string{"Projects"}, subscribed: true},
	{path: []string{"Projects", "Mailferry"}, subscribed: true},
	{path: []string{"Projects", "Mailferry", "Specs & Drafts"}, subscribed: false},
	{path: []string{"INBOX", "Newsletters"}, subscribed: true},
	{path: []string{"Kunden"}, subscribed: true},
	{path: []string{"Kunden", "Müller & Söhne"}, subscribed: true},
	{path: []string{"Отчёты", "2023 Квартал 4"}, subscribed: true},
}

const minSize = 1024

// Generate builds a mailbox. It is deterministic: the same Options give the
// same folders, flags, dates and message bytes.
func Generate(opts Options) *Mailbox {
	if opts.Folders <= 0 {
		opts.Folders = len(builtinFolders)
	}
	if opts.MessagesPerFolder <= 0 {
		opts.MessagesPerFolder = 8
	}
	if opts.MaxSize <= 0 {
		opts.MaxSize = 1 << 20
	}
	opts.MaxSize = max(opts.MaxSize, 4096)
	rng := rand.New(rand.NewPCG(opts.Seed, 0x6d61696c66657272)) // "mailferr"

	specs := slices.Clone(builtinFolders)
	if len(specs) > opts.Folders {
		specs = specs[:opts.Folders]
	}
	for i := len(specs); i < opts.Folders; i++ {
		specs = append(specs, folderSpec{path: []string{fmt.Sprintf("Folder %03d", i)}, subscribed: rng.IntN(4) != 0})
	}

	m := &Mailbox{}
	maxed := false
	for _, spec := range specs {
		f := Folder{Path: slices.Clone(spec.path), SpecialUse: spec.specialUse, Subscribed: spec.subscribed}
		if !spec.empty {
			n := opts.MessagesPerFolder/2 + rng.IntN(opts.MessagesPerFolder+1)
			for range n {
				size := logUniform(rng, minSize, opts.MaxSize)
				if rng.IntN(50) == 0 {
					size = opts.MaxSize
				}
				maxed = maxed || size == opts.MaxSize
				f.Messages = append(f.Messages, newMessage(rng, f.Key(), spec.specialUse, size, ""))
			}
		}
		m.Folders = append(m.Folders, f)
	}

	inbox := &m.Folders[0]
	if !maxed {
		inbox.Messages = append(inbox.Messages, newMessage(rng, "INBOX", "", opts.MaxSize, ""))
	}
	if opts.Odd {
		inbox.Messages = append(inbox.Messages, oddMessages(rng, opts.MaxSize)...)
	}
	return m
}

// oddMessages returns one message of each odd kind, duplicates included.
func oddMessages(rng *rand.Rand, maxSize int64) []Message {
	var out []Message
	size := func() int64 { return logUniform(rng, minSize, min(maxSize, 64<<10)) }
	for _, odd := range []string{OddNoMessageID, OddBareLF, OddEightBit, OddLongLine, OddHeadersOnly} {
		s := size()
		if odd == OddLongLine {
			s = max(s, 16<<10)
		}
		out = append(out, newMessage(rng, "INBOX", "", s, odd))
	}

	// The same bytes twice, with different flags and dates.
	orig := newMessage(rng, "INBOX", "", size(), "")
	dup := orig
	dup.Odd = OddDuplicate
	dup.Flags = randomFlags(rng, "")
	dup.Date = orig.Date.Add(time.Duration(1+rng.IntN(86400)) * time.Second)
	out = append(out, orig, dup)

	// The same bytes, flags and date twice: indistinguishable but for UID.
	orig = newMessage(rng, "INBOX", "", size(), "")
	ident := orig
	ident.Odd = OddIdentical
	out = append(out, orig, ident)
	return out
}

// Big returns one message of exactly size bytes (at least 1 KiB is
// sensible) with a realistic header and, when size allows, a base64
// attachment body. It is deterministic for (size, seed).
func Big(size int64, seed uint64) Message {
	rng := rand.New(rand.NewPCG(seed, 0x626967)) // "big"
	return newMessage(rng, "INBOX", "", size, "")
}

func logUniform(rng *rand.Rand, lo, hi int64) int64 {
	if hi <= lo {
		return hi
	}
	// lo * (hi/lo)^u
	ratio := float64(hi) / float64(lo)
	v := int64(float64(lo) * math.Pow(ratio, rng.Float64()))
	return min(max(v, lo), hi)
}

var systemFlags = []string{`\Seen`, `\Answered`, `\Flagged`, `\Deleted`}

var keywords = []string{"$Forwarded", "$MDNSent", "$Label1", "$Label4", "NonJunk", "project-x", "Todo"}

func randomFlags(rng *rand.Rand, specialUse string) []string {
	var flags []string
	add := func(p float64, f string) {
		if rng.Float64() < p {
			flags = append(flags, f)
		}
	}
	switch specialUse {
	case `\Sent`:
		flags = append(flags, `\Seen`)
	case `\Drafts`:
		flags = append(flags, `\Draft`)
		add(0.3, `\Seen`)
	case `\Junk`:
		flags = append(flags, "Junk")
		add(0.5, `\Seen`)
		add(0.3, "$Junk")
	case `\Trash`:
		add(0.9, `\Seen`)
		add(0.3, `\Deleted`)
	default:
		add(0.7, systemFlags[0])
		add(0.15, systemFlags[1])
		add(0.1, systemFlags[2])
		add(0.03, systemFlags[3])
	}
	for _, k := range keywords {
		add(0.06, k)
	}
	slices.Sort(flags)
	return flags
}

var (
	dateLo = time.Date(2014, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	dateHi = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
)

// newMessage draws a message's metadata and seed from rng. The bytes are
// regenerated from the seed by Open.
func newMessage(rng *rand.Rand, folder, specialUse string, size int64, odd string) Message {
	seed := rng.Uint64()
	m := Message{
		Size:  size,
		Flags: randomFlags(rng, specialUse),
		Date:  time.Unix(dateLo+rng.Int64N(dateHi-dateLo), 0).UTC(),
		Odd:   odd,
	}
	spec := spec{seed: seed, date: m.Date, odd: odd, folder: folder}
	if odd == OddHeadersOnly {
		// The size is whatever the header block comes to.
		m.Size = int64(len(header(spec, "")))
	}
	m.Size = max(m.Size, minimalSize(spec))
	size = m.Size
	m.Open = func() io.Reader { return build(spec, size) }
	return m
}
