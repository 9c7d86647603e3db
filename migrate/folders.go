package migrate

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/emersion/go-imap/v2"

	"mailferry/internal/imapconn"
)

// specialUses are the special-use attributes mapped onto the target's own
// folders when the names differ.
var specialUses = []imap.MailboxAttr{
	imap.MailboxAttrSent, imap.MailboxAttrDrafts, imap.MailboxAttrTrash,
	imap.MailboxAttrJunk, imap.MailboxAttrArchive,
}

// folder is one mailbox folder as one server lists it.
type folder struct {
	Name       string   // the server's name (UTF-8)
	Path       []string // logical path: personal namespace prefix removed, split on the delimiter
	Delim      rune
	SpecialUse imap.MailboxAttr
	Subscribed bool
	NoSelect   bool
	Messages   uint32
	Size       int64
	// UIDValidity from LIST-STATUS (0: not offered); renames keep it.
	UIDValidity uint32
	// UIDNext and HighestModSeq from LIST-STATUS (0: not offered; the
	// latter needs CONDSTORE).
	UIDNext       uint32
	HighestModSeq uint64
}

// Key is the logical path joined with "/", the form operators write in
// --exclude and --folder-map whatever the servers' delimiters are.
func (f folder) Key() string { return strings.Join(f.Path, "/") }

// tree is a server's folder list with what is needed to name new folders.
type tree struct {
	Folders []folder
	// BadNames are folders the server listed under a name that is not
	// valid modified UTF-7, raw as sent; they cannot be opened by name
	// and are not in Folders.
	BadNames []string
	Delim    rune   // hierarchy delimiter of the personal namespace
	Prefix   string // personal namespace prefix, e.g. "INBOX." on Courier
}

func (t *tree) byName(name string) *folder {
	for i := range t.Folders {
		if t.Folders[i].Name == name || isInbox(name) && isInbox(t.Folders[i].Name) {
			return &t.Folders[i]
		}
	}
	return nil
}

func (t *tree) bySpecialUse(attr imap.MailboxAttr) *folder {
	for i := range t.Folders {
		if t.Folders[i].SpecialUse == attr {
			return &t.Folders[i]
		}
	}
	return nil
}

// name renders a logical path as a folder name on this server. A segment
// holding this server's delimiter cannot be represented; the delimiter is
// replaced by "_" and the change reported.
func (t *tree) name(path []string) (string, bool) {
	if len(path) == 1 && isInbox(path[0]) {
		return "INBOX", false
	}
	changed := false
	segs := make([]string, len(path))
	for i, s := range path {
		if t.Delim != 0 && strings.ContainsRune(s, t.Delim) {
			s = strings.ReplaceAll(s, string(t.Delim), "_")
			changed = true
		}
		segs[i] = s
	}
	prefix := t.Prefix
	if len(segs) > 0 && isInbox(segs[0]) {
		prefix = "" // INBOX children stay under INBOX whatever the prefix
		segs[0] = "INBOX"
	}
	return prefix + strings.Join(segs, string(t.Delim)), changed
}

func isInbox(name string) bool { return strings.EqualFold(name, "INBOX") }

// listTree lists every folder with its special use, subscription and size
// in one round trip where the server allows it.
func listTree(ctx context.Context, c *imapconn.Session) (*tree, error) {
	t := &tree{}
	if c.Features.Namespace {
		ns, err := c.Namespace(ctx)
		if err != nil {
			return nil, err
		}
		if len(ns.Personal) > 0 {
			t.Prefix = ns.Personal[0].Prefix
			t.Delim = ns.Personal[0].Delim
		}
	}
	opts := &imap.ListOptions{}
	if c.Features.ListExtended {
		opts.ReturnSubscribed = true
		opts.ReturnSpecialUse = c.Features.SpecialUse
		switch {
		case c.Features.ListStatus && c.Side() == imapconn.Target:
			// Only what finds the folders that cannot have changed
			// (worker.unchanged): MESSAGES, SIZE and HIGHESTMODSEQ plan
			// nothing on the target, and cost it (a Dovecot mdbox target
			// of 12 folders and 500 messages: 6-7 ms for the LIST with
			// them, 2 ms without).
			opts.ReturnStatus = &imap.StatusOptions{UIDValidity: true, UIDNext: true}
		case c.Features.ListStatus:
			opts.ReturnStatus = &imap.StatusOptions{NumMessages: true, UIDValidity: true, UIDNext: true,
				Size: c.Features.StatusSize, HighestModSeq: c.Features.CondStore}
		}
	}
	list, err := c.List(ctx, "", t.Prefix+"*", opts)
	if err != nil {
		return nil, err
	}
	hasInbox := false
	for _, l := range list {
		if isInbox(l.Mailbox) {
			hasInbox = true
		}
	}
	if t.Prefix != "" && !hasInbox {
		inbox, err := c.List(ctx, "", "INBOX", opts)
		if err != nil {
			return nil, err
		}
		list = append(list, inbox...)
	}
	for _, l := range list {
		f := folder{Name: l.Mailbox, Delim: l.Delim}
		if t.Delim == 0 {
			t.Delim = l.Delim
		}
		for _, a := range l.Attrs {
			switch {
			case a == imap.MailboxAttrNoSelect || a == imap.MailboxAttrNonExistent:
				f.NoSelect = true
			case strings.EqualFold(string(a), string(imap.MailboxAttrSubscribed)):
				f.Subscribed = true
			default:
				for _, su := range specialUses {
					if strings.EqualFold(string(a), string(su)) {
						f.SpecialUse = su
					}
				}
			}
		}
		if l.Status != nil {
			f.UIDValidity = l.Status.UIDValidity
			if l.Status.NumMessages != nil {
				f.Messages = *l.Status.NumMessages
			}
			if l.Status.Size != nil {
				f.Size = *l.Status.Size
			}
			f.UIDNext = uint32(l.Status.UIDNext)
			f.HighestModSeq = l.Status.HighestModSeq
		}
		f.Path = splitName(l.Mailbox, t.Prefix, l.Delim)
		t.Folders = append(t.Folders, f)
	}
	if t.Delim == 0 {
		t.Delim = '/'
	}
	t.BadNames = c.BadNames()
	sort.Slice(t.Folders, func(i, j int) bool { return t.Folders[i].Name < t.Folders[j].Name })
	return t, nil
}

func splitName(name, prefix string, delim rune) []string {
	if isInbox(name) {
		return []string{"INBOX"}
	}
	if prefix != "" && strings.HasPrefix(name, prefix) {
		name = name[len(prefix):]
	}
	if delim == 0 {
		return []string{name}
	}
	segs := strings.Split(name, string(delim))
	if isInbox(segs[0]) {
		segs[0] = "INBOX"
	}
	return segs
}

// FolderMapping is one source folder and where it goes.
type FolderMapping struct {
	Source string `json:"source"`
	Target string `json:"target"`
	// Reason says why the target name differs from the plain translation:
	// "special-use \Sent", "folder-map", or "" for the plain one.
	Reason string `json:"reason,omitempty"`
	// Excluded folders are listed but not copied.
	Excluded bool `json:"excluded,omitempty"`

	src       folder
	dst       *folder // the target folder as listed before the pass (nil: new)
	subscribe bool
}

// mapFolders decides the target name of every source folder. It is pure.
func mapFolders(src, dst *tree, exclude []*regexp.Regexp, folderMap map[string]string) ([]FolderMapping, []string) {
	var out []FolderMapping
	var warnings []string
	taken := map[string]string{} // target name -> source name
	for _, f := range src.Folders {
		m := FolderMapping{Source: f.Name, src: f, subscribe: f.Subscribed}
		key := f.Key()
		for _, re := range exclude {
			if re.MatchString(key) {
				m.Excluded = true
			}
		}
		if m.Excluded {
			out = append(out, m)
			continue
		}
		if f.NoSelect {
			continue // hierarchy placeholder: children create it
		}
		var changed bool
		switch {
		case folderMap[key] != "":
			m.Target, changed = dst.name(strings.Split(folderMap[key], "/"))
			m.Reason = "folder-map"
		case f.SpecialUse != "" && dst.bySpecialUse(f.SpecialUse) != nil && taken[dst.bySpecialUse(f.SpecialUse).Name] == "":
			m.Target = dst.bySpecialUse(f.SpecialUse).Name
			m.Reason = "special-use " + string(f.SpecialUse)
		default:
			m.Target, changed = dst.name(f.Path)
		}
		if changed {
			warnings = append(warnings, fmt.Sprintf("folder %q: the target's delimiter %q cannot appear in a name; copied to %q", f.Name, string(dst.Delim), m.Target))
		}
		if prev, ok := taken[m.Target]; ok {
			warnings = append(warnings, fmt.Sprintf("folders %q and %q both map to %q on the target; their messages are merged there", prev, f.Name, m.Target))
		} else {
			taken[m.Target] = f.Name
		}
		out = append(out, m)
	}
	return out, warnings
}
