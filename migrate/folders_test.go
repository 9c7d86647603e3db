package migrate

import (
	"regexp"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

func mkTree(delim rune, prefix string, folders ...folder) *tree {
	t := &tree{Delim: delim, Prefix: prefix}
	for _, f := range folders {
		f.Delim = delim
		f.Path = splitName(f.Name, prefix, delim)
		t.Folders = append(t.Folders, f)
	}
	return t
}

func targets(ms []FolderMapping) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		if m.Excluded {
			out[m.Source] = "(excluded)"
		} else {
			out[m.Source] = m.Target
		}
	}
	return out
}

func TestMapFolders(t *testing.T) {
	tests := []struct {
		name      string
		src, dst  *tree
		exclude   []string
		folderMap map[string]string
		want      map[string]string
		warn      []string
	}{
		{
			name: "dot to slash keeps hierarchy and INBOX",
			src:  mkTree('.', "", folder{Name: "INBOX"}, folder{Name: "Archive.2019.Q1"}, folder{Name: "INBOX.Sub"}, folder{Name: "Überweisungen"}),
			dst:  mkTree('/', "", folder{Name: "INBOX"}),
			want: map[string]string{"INBOX": "INBOX", "Archive.2019.Q1": "Archive/2019/Q1", "INBOX.Sub": "INBOX/Sub", "Überweisungen": "Überweisungen"},
		},
		{
			name: "special-use folders map onto the target's own names",
			src: mkTree('/', "", folder{Name: "Sent", SpecialUse: imap.MailboxAttrSent}, folder{Name: "Trash", SpecialUse: imap.MailboxAttrTrash},
				folder{Name: "Junk", SpecialUse: imap.MailboxAttrJunk}),
			dst:  mkTree('.', "", folder{Name: "Sent Messages", SpecialUse: imap.MailboxAttrSent}, folder{Name: "Deleted Items", SpecialUse: imap.MailboxAttrTrash}),
			want: map[string]string{"Sent": "Sent Messages", "Trash": "Deleted Items", "Junk": "Junk"},
		},
		{
			name: "personal namespace prefix is not doubled (no INBOX.INBOX)",
			src:  mkTree('.', "INBOX.", folder{Name: "INBOX"}, folder{Name: "INBOX.Drafts"}, folder{Name: "INBOX.Projects.2024"}),
			dst:  mkTree('/', "", folder{Name: "INBOX"}),
			want: map[string]string{"INBOX": "INBOX", "INBOX.Drafts": "Drafts", "INBOX.Projects.2024": "Projects/2024"},
		},
		{
			name: "into a prefixed namespace",
			src:  mkTree('/', "", folder{Name: "INBOX"}, folder{Name: "Work/Clients"}),
			dst:  mkTree('.', "INBOX.", folder{Name: "INBOX"}),
			want: map[string]string{"INBOX": "INBOX", "Work/Clients": "INBOX.Work.Clients"},
		},
		{
			name:      "exclude and folder-map use slash paths",
			src:       mkTree('.', "", folder{Name: "Trash"}, folder{Name: "Trash.Old"}, folder{Name: "Old Sent"}, folder{Name: "Keep"}),
			dst:       mkTree('/', ""),
			exclude:   []string{`^Trash(/|$)`},
			folderMap: map[string]string{"Old Sent": "Archive/Sent 2010"},
			want:      map[string]string{"Trash": "(excluded)", "Trash.Old": "(excluded)", "Old Sent": "Archive/Sent 2010", "Keep": "Keep"},
		},
		{
			name: "target delimiter inside a name is replaced, with a warning",
			src:  mkTree('/', "", folder{Name: "v1.2"}),
			dst:  mkTree('.', ""),
			want: map[string]string{"v1.2": "v1_2"},
			warn: []string{`"v1.2"`},
		},
		{
			name: "two folders onto one name warn",
			src:  mkTree('/', "", folder{Name: "a.b"}, folder{Name: "a_b"}),
			dst:  mkTree('.', ""),
			want: map[string]string{"a.b": "a_b", "a_b": "a_b"},
			warn: []string{"merged"},
		},
		{
			name: "noselect placeholders are not copied",
			src:  mkTree('/', "", folder{Name: "Parent", NoSelect: true}, folder{Name: "Parent/Child"}),
			dst:  mkTree('/', ""),
			want: map[string]string{"Parent/Child": "Parent/Child"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ex []*regexp.Regexp
			for _, e := range tt.exclude {
				ex = append(ex, regexp.MustCompile(e))
			}
			got, warns := mapFolders(tt.src, tt.dst, ex, tt.folderMap)
			gm := targets(got)
			if len(gm) != len(tt.want) {
				t.Errorf("got %d mappings %v, want %v", len(gm), gm, tt.want)
			}
			for s, d := range tt.want {
				if gm[s] != d {
					t.Errorf("%q -> %q, want %q", s, gm[s], d)
				}
			}
			all := strings.Join(warns, "\n")
			for _, w := range tt.warn {
				if !strings.Contains(all, w) {
					t.Errorf("warnings %q lack %q", all, w)
				}
			}
			if len(tt.warn) == 0 && len(warns) > 0 {
				t.Errorf("unexpected warnings %q", warns)
			}
		})
	}
}

func TestAppendFlags(t *testing.T) {
	dovecotLike := newPermSet([]imap.Flag{`\Answered`, `\Flagged`, `\Deleted`, `\Seen`, `\Draft`, `\*`})
	maildirFull := newPermSet([]imap.Flag{`\Answered`, `\Flagged`, `\Deleted`, `\Seen`, `\Draft`, "$Forwarded", "Work"})
	tests := []struct {
		name        string
		in          []imap.Flag
		perm        permSet
		keep, dropd string
	}{
		{"recent never sent, never warned", []imap.Flag{`\Seen`, `\Recent`}, dovecotLike, `\Seen`, ""},
		{"keywords kept with wildcard", []imap.Flag{"$Forwarded", "Project-X", "$label1"}, dovecotLike, "$Forwarded Project-X $label1", ""},
		{"invalid atoms dropped", []imap.Flag{"two words", "br(ace", `quo"te`, "ok"}, dovecotLike, "ok", `two words br(ace quo"te`},
		{"unknown system flag dropped", []imap.Flag{`\Important`, `\Flagged`}, dovecotLike, `\Flagged`, `\Important`},
		{"no wildcard: only listed keywords", []imap.Flag{"Work", "New", `\Seen`}, maildirFull, `Work \Seen`, "New"},
		{"no PERMANENTFLAGS: trust", []imap.Flag{"Anything"}, newPermSet(nil), "Anything", ""},
	}
	for _, tt := range tests {
		keep, dropped := appendFlags(tt.in, tt.perm)
		if got := join(keep); got != tt.keep {
			t.Errorf("%s: keep %q, want %q", tt.name, got, tt.keep)
		}
		if got := join(dropped); got != tt.dropd {
			t.Errorf("%s: dropped %q, want %q", tt.name, got, tt.dropd)
		}
	}
}

func join(fs []imap.Flag) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = string(f)
	}
	return strings.Join(s, " ")
}
