package corpus

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// TB is the part of testing.TB the oracle needs. testing.TB satisfies it.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
}

// Snapshot is an account as an IMAP server serves it.
type Snapshot struct {
	// Folders is keyed by path segments joined with "/", whatever the
	// server's hierarchy separator.
	Folders map[string]*FolderSnap
}

// FolderSnap is one selectable folder of a Snapshot.
type FolderSnap struct {
	Path        []string
	SpecialUse  []string // sorted special-use attributes (`\Sent`...)
	Subscribed  bool
	UIDValidity uint32
	Messages    []MessageSnap // by UID
}

// MessageSnap is one message of a FolderSnap.
type MessageSnap struct {
	UID    uint32
	Size   int64     // RFC822.SIZE
	SHA256 string    // hex SHA-256 of BODY[] as served
	Flags  []string  // sorted, without \Recent
	Date   time.Time // INTERNALDATE in UTC
}

func login(t TB, addr, user, password string) *imapclient.Client {
	t.Helper()
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		t.Fatalf("corpus: dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, password).Wait(); err != nil {
		c.Close()
		t.Fatalf("corpus: login %q at %s: %v", user, addr, err)
	}
	return c
}

func logout(c *imapclient.Client) {
	_ = c.Logout().Wait()
	_ = c.Close()
}

// delimiter asks the server for its hierarchy separator (LIST "" "").
func delimiter(c *imapclient.Client) (string, error) {
	data, err := c.List("", "", nil).Collect()
	if err != nil {
		return "", fmt.Errorf(`list "" "": %w`, err)
	}
	if len(data) != 1 || data[0].Delim == 0 {
		return "", fmt.Errorf(`list "" "": no hierarchy delimiter in %v`, data)
	}
	return string(data[0].Delim), nil
}

// Seed appends m into user's account at addr (plain IMAP, LOGIN): it creates
// every folder with the server's own delimiter (an existing one, such as
// INBOX or an auto-created special-use folder, is fine), subscribes or
// unsubscribes as the corpus says, and appends every message with its flags
// and date, streaming each body. It fails t on any error.
func Seed(t TB, addr, user, password string, m *Mailbox) {
	t.Helper()
	if err := seed(t, addr, user, password, m); err != nil {
		t.Fatalf("corpus: seed %q at %s: %v", user, addr, err)
	}
}

func seed(t TB, addr, user, password string, m *Mailbox) error {
	c := login(t, addr, user, password)
	defer logout(c)
	delim, err := delimiter(c)
	if err != nil {
		return err
	}
	subscribed, err := subscriptions(c)
	if err != nil {
		return err
	}
	for i := range m.Folders {
		f := &m.Folders[i]
		name := strings.Join(f.Path, delim)
		for _, seg := range f.Path {
			if seg == "" || strings.Contains(seg, delim) {
				return fmt.Errorf("folder %q: segment %q cannot be named with delimiter %q", f.Key(), seg, delim)
			}
		}
		if !strings.EqualFold(name, "INBOX") {
			err := c.Create(name, nil).Wait()
			var imapErr *imap.Error
			if err != nil && !(errors.As(err, &imapErr) && imapErr.Code == imap.ResponseCodeAlreadyExists) {
				return fmt.Errorf("create %q: %w", name, err)
			}
		}
		switch {
		case f.Subscribed && !subscribed[name]:
			err = c.Subscribe(name).Wait()
		case !f.Subscribed && subscribed[name]:
			err = c.Unsubscribe(name).Wait()
		}
		if err != nil {
			return fmt.Errorf("(un)subscribe %q: %w", name, err)
		}
		for j, msg := range f.Messages {
			if err := appendMessage(c, name, msg); err != nil {
				return fmt.Errorf("append message %d to %q: %w", j, name, err)
			}
		}
	}
	return nil
}

func subscriptions(c *imapclient.Client) (map[string]bool, error) {
	data, err := c.List("", "*", &imap.ListOptions{SelectSubscribed: true}).Collect()
	if err != nil {
		return nil, fmt.Errorf("list subscribed: %w", err)
	}
	out := make(map[string]bool)
	for _, d := range data {
		out[d.Mailbox] = true
	}
	return out, nil
}

func appendMessage(c *imapclient.Client, mailbox string, msg Message) error {
	flags := make([]imap.Flag, 0, len(msg.Flags))
	for _, f := range msg.Flags {
		if !strings.EqualFold(f, `\Recent`) {
			flags = append(flags, imap.Flag(f))
		}
	}
	cmd := c.Append(mailbox, msg.Size, &imap.AppendOptions{Flags: flags, Time: msg.Date})
	n, err := io.Copy(cmd, msg.Open())
	if err == nil && n != msg.Size {
		err = fmt.Errorf("message yields %d bytes, want %d", n, msg.Size)
	}
	if err != nil {
		// An APPEND cannot be abandoned mid-literal: the connection is
		// unusable now.
		c.Close()
		return err
	}
	if err := cmd.Close(); err != nil {
		return err
	}
	_, err = cmd.Wait()
	return err
}

// TakeSnapshot reads user's account at addr (plain IMAP, LOGIN): every
// selectable folder (LIST RETURN (SPECIAL-USE SUBSCRIBED)) and every message's
// UID, RFC822.SIZE, FLAGS, INTERNALDATE and SHA-256 of BODY.PEEK[], streamed.
// Folders are EXAMINEd and bodies peeked, so no flag changes. It fails t on
// any error.
func TakeSnapshot(t TB, addr, user, password string) *Snapshot {
	t.Helper()
	s, err := takeSnapshot(t, addr, user, password)
	if err != nil {
		t.Fatalf("corpus: snapshot %q at %s: %v", user, addr, err)
	}
	return s
}

func takeSnapshot(t TB, addr, user, password string) (*Snapshot, error) {
	c := login(t, addr, user, password)
	defer logout(c)
	list, err := c.List("", "*", &imap.ListOptions{ReturnSubscribed: true, ReturnSpecialUse: true}).Collect()
	if err != nil {
		return nil, fmt.Errorf("list: %w", err)
	}
	snap := &Snapshot{Folders: make(map[string]*FolderSnap)}
	for _, d := range list {
		if slices.Contains(d.Attrs, imap.MailboxAttrNoSelect) || slices.Contains(d.Attrs, imap.MailboxAttrNonExistent) {
			continue
		}
		f := &FolderSnap{Path: []string{d.Mailbox}}
		if d.Delim != 0 {
			f.Path = strings.Split(d.Mailbox, string(d.Delim))
		}
		for _, a := range d.Attrs {
			switch {
			case a == imap.MailboxAttrSubscribed:
				f.Subscribed = true
			case isSpecialUse(a):
				f.SpecialUse = append(f.SpecialUse, string(a))
			}
		}
		slices.Sort(f.SpecialUse)
		if err := readFolder(c, d.Mailbox, f); err != nil {
			return nil, err
		}
		key := strings.Join(f.Path, "/")
		if _, dup := snap.Folders[key]; dup {
			return nil, fmt.Errorf("two folders map to key %q", key)
		}
		snap.Folders[key] = f
	}
	return snap, nil
}

func isSpecialUse(a imap.MailboxAttr) bool {
	switch a {
	case imap.MailboxAttrAll, imap.MailboxAttrArchive, imap.MailboxAttrDrafts, imap.MailboxAttrFlagged,
		imap.MailboxAttrJunk, imap.MailboxAttrSent, imap.MailboxAttrTrash, imap.MailboxAttrImportant:
		return true
	}
	return false
}

func readFolder(c *imapclient.Client, mailbox string, f *FolderSnap) error {
	sel, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		return fmt.Errorf("examine %q: %w", mailbox, err)
	}
	f.UIDValidity = sel.UIDValidity
	if sel.NumMessages == 0 {
		return nil
	}
	var all imap.UIDSet
	all.AddRange(1, 0) // 1:*
	fetch := c.Fetch(all, &imap.FetchOptions{
		UID: true, Flags: true, InternalDate: true, RFC822Size: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	})
	defer fetch.Close()
	for {
		msg := fetch.Next()
		if msg == nil {
			break
		}
		m, err := readMessage(msg)
		if err != nil {
			return fmt.Errorf("fetch %q seq %d: %w", mailbox, msg.SeqNum, err)
		}
		f.Messages = append(f.Messages, m)
	}
	if err := fetch.Close(); err != nil {
		return fmt.Errorf("fetch %q: %w", mailbox, err)
	}
	if len(f.Messages) != int(sel.NumMessages) {
		return fmt.Errorf("fetch %q: %d messages, EXAMINE said %d", mailbox, len(f.Messages), sel.NumMessages)
	}
	slices.SortFunc(f.Messages, func(a, b MessageSnap) int { return cmp.Compare(a.UID, b.UID) })
	return nil
}

func readMessage(msg *imapclient.FetchMessageData) (MessageSnap, error) {
	var m MessageSnap
	haveBody := false
	for {
		item := msg.Next()
		if item == nil {
			break
		}
		switch item := item.(type) {
		case imapclient.FetchItemDataUID:
			m.UID = uint32(item.UID)
		case imapclient.FetchItemDataFlags:
			m.Flags = normalizeFlags(item.Flags)
		case imapclient.FetchItemDataInternalDate:
			m.Date = item.Time.UTC()
		case imapclient.FetchItemDataRFC822Size:
			m.Size = item.Size
		case imapclient.FetchItemDataBodySection:
			if item.Literal == nil {
				return m, errors.New("BODY[] is NIL")
			}
			h := sha256.New()
			n, err := io.Copy(h, item.Literal)
			if err != nil {
				return m, fmt.Errorf("read BODY[]: %w", err)
			}
			if n != item.Literal.Size() {
				return m, fmt.Errorf("BODY[] truncated: %d of %d bytes", n, item.Literal.Size())
			}
			m.SHA256 = hex.EncodeToString(h.Sum(nil))
			haveBody = true
		}
	}
	if m.UID == 0 || !haveBody || m.Date.IsZero() {
		return m, fmt.Errorf("incomplete FETCH response (uid %d, body %t, date %v)", m.UID, haveBody, m.Date)
	}
	return m, nil
}

func normalizeFlags(flags []imap.Flag) []string {
	out := make([]string, 0, len(flags))
	for _, f := range flags {
		if !strings.EqualFold(string(f), `\Recent`) {
			out = append(out, string(f))
		}
	}
	slices.Sort(out)
	return out
}

// Expect returns the snapshot a server is expected to serve after Seed(m),
// without UIDs and UIDVALIDITY: Size and SHA256 are of the bytes as Dovecot
// serves them (bare LF as CRLF, NUL as 0x80). It reads every message once.
// SpecialUse assumes the server's special-use folders are named as in the
// corpus (the dovecot package's defaults).
func Expect(m *Mailbox) *Snapshot {
	snap := &Snapshot{Folders: make(map[string]*FolderSnap, len(m.Folders))}
	for _, f := range m.Folders {
		fs := &FolderSnap{Path: slices.Clone(f.Path), Subscribed: f.Subscribed}
		if f.SpecialUse != "" {
			fs.SpecialUse = []string{f.SpecialUse}
		}
		for i, msg := range f.Messages {
			size, sum, _ := Served(msg.Open()) // generated readers do not fail
			flags := slices.Clone(msg.Flags)
			slices.Sort(flags)
			fs.Messages = append(fs.Messages, MessageSnap{
				UID: uint32(i + 1), Size: size, SHA256: sum, Flags: flags, Date: msg.Date.UTC(),
			})
		}
		snap.Folders[f.Key()] = fs
	}
	return snap
}

// Served returns the size and hex SHA-256 of r's bytes as Dovecot serves
// them: a bare LF becomes CRLF and NUL becomes 0x80.
func Served(r io.Reader) (int64, string, error) {
	h := sha256.New()
	buf := make([]byte, 64<<10)
	var n int64
	prev := byte(0) // last byte written
	write := func(b []byte) {
		if len(b) > 0 {
			h.Write(b)
			n += int64(len(b))
			prev = b[len(b)-1]
		}
	}
	for {
		k, err := r.Read(buf)
		chunk := buf[:k]
		for len(chunk) > 0 {
			i := bytes.IndexAny(chunk, "\n\x00")
			if i < 0 {
				write(chunk)
				break
			}
			write(chunk[:i])
			switch {
			case chunk[i] == 0:
				write([]byte{0x80})
			case prev == '\r':
				write([]byte{'\n'})
			default:
				write([]byte{'\r', '\n'})
			}
			chunk = chunk[i+1:]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, "", err
		}
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// msgKey is what Compare matches messages by: content, flags and date.
type msgKey struct {
	sha   string
	size  int64
	flags string
	date  int64
}

func keyOf(m MessageSnap) msgKey {
	return msgKey{m.SHA256, m.Size, strings.Join(m.Flags, " "), m.Date.Unix()}
}

func (k msgKey) String() string {
	return fmt.Sprintf("sha256 %.12s size %d flags [%s] date %s", k.sha, k.size, k.flags,
		time.Unix(k.date, 0).UTC().Format(time.RFC3339))
}

// Compare reports every difference between a source and a target account
// as human-readable lines, sorted; none means identical. Folders are
// matched by key, mapped by mapName (nil: identity); messages per folder
// as a multiset of (SHA-256, size, flags, date), so duplicates count and
// UIDs do not. Subscription and special-use differences are reported too.
func Compare(src, dst *Snapshot, mapName func(string) string) []string {
	if mapName == nil {
		mapName = func(s string) string { return s }
	}
	var out []string
	seen := make(map[string]bool)
	for _, sk := range slices.Sorted(maps.Keys(src.Folders)) {
		sf := src.Folders[sk]
		dk := mapName(sk)
		seen[dk] = true
		df, ok := dst.Folders[dk]
		if !ok {
			out = append(out, fmt.Sprintf("folder %q (source %q) missing on target (%d messages)", dk, sk, len(sf.Messages)))
			continue
		}
		if sf.Subscribed != df.Subscribed {
			out = append(out, fmt.Sprintf("folder %q: subscribed %t on source, %t on target", dk, sf.Subscribed, df.Subscribed))
		}
		if !slices.Equal(sf.SpecialUse, df.SpecialUse) {
			out = append(out, fmt.Sprintf("folder %q: special-use %v on source, %v on target", dk, sf.SpecialUse, df.SpecialUse))
		}
		counts := make(map[msgKey][2]int)
		for _, m := range sf.Messages {
			c := counts[keyOf(m)]
			c[0]++
			counts[keyOf(m)] = c
		}
		for _, m := range df.Messages {
			c := counts[keyOf(m)]
			c[1]++
			counts[keyOf(m)] = c
		}
		var lines []string
		for k, c := range counts {
			if c[0] != c[1] {
				lines = append(lines, fmt.Sprintf("folder %q: message %s: %d on source, %d on target", dk, k, c[0], c[1]))
			}
		}
		slices.Sort(lines)
		out = append(out, lines...)
	}
	for _, dk := range slices.Sorted(maps.Keys(dst.Folders)) {
		if !seen[dk] {
			out = append(out, fmt.Sprintf("folder %q extra on target (%d messages)", dk, len(dst.Folders[dk].Messages)))
		}
	}
	return out
}

// CompareFlags reports, for two snapshots of the same account, every message
// (identified by folder and UID) whose flags differ, and every folder or
// UID present in only one of them. Use it to prove a source was not changed
// (no \Seen set by a copy).
func CompareFlags(before, after *Snapshot) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(before.Folders)) {
		bf := before.Folders[k]
		af, ok := after.Folders[k]
		if !ok {
			out = append(out, fmt.Sprintf("folder %q disappeared", k))
			continue
		}
		if bf.UIDValidity != af.UIDValidity {
			out = append(out, fmt.Sprintf("folder %q: UIDVALIDITY changed from %d to %d", k, bf.UIDValidity, af.UIDValidity))
			continue
		}
		byUID := make(map[uint32]MessageSnap, len(af.Messages))
		for _, m := range af.Messages {
			byUID[m.UID] = m
		}
		for _, bm := range bf.Messages {
			am, ok := byUID[bm.UID]
			if !ok {
				out = append(out, fmt.Sprintf("folder %q: uid %d disappeared", k, bm.UID))
				continue
			}
			delete(byUID, bm.UID)
			if !slices.Equal(bm.Flags, am.Flags) {
				out = append(out, fmt.Sprintf("folder %q: uid %d flags changed from %v to %v", k, bm.UID, bm.Flags, am.Flags))
			}
		}
		for _, uid := range slices.Sorted(maps.Keys(byUID)) {
			out = append(out, fmt.Sprintf("folder %q: uid %d appeared", k, uid))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(after.Folders)) {
		if _, ok := before.Folders[k]; !ok {
			out = append(out, fmt.Sprintf("folder %q appeared", k))
		}
	}
	return out
}
