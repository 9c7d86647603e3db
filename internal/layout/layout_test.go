package layout

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// rule forbids packages under dir (non-test files) to import any of deny,
// unless the package is in allow.
type rule struct {
	why   string
	dirs  []string // package paths relative to the module root; none = every package
	allow []string
	deny  []string
}

var rules = []rule{
	{
		why:   "only internal/imapconn owns IMAP client connections (test rigs excepted: their oracle must not share the code under test)",
		allow: []string{"internal/imapconn", "internal/testrig/corpus"},
		deny:  []string{"github.com/emersion/go-imap/v2/imapclient"},
	},
	{
		why:   "only test rigs run IMAP servers",
		allow: []string{"internal/testrig/memserver"},
		deny:  []string{"github.com/emersion/go-imap/v2/imapserver"},
	},
	{
		why:  "planner is pure: no IMAP, no state, no copy engine",
		dirs: []string{"planner", "inventory"},
		deny: []string{"github.com/emersion/go-imap", "mailferry/internal/imapconn", "mailferry/migrate", "mailferry/state", "net", "net/http", "crypto/tls"},
	},
	{
		why:  "throttle knows no IMAP, state or copy engine: server replies reach it as error text",
		dirs: []string{"throttle"},
		deny: []string{"github.com/emersion/go-imap", "mailferry/internal/imapconn", "mailferry/internal/testrig/memserver", "mailferry/migrate", "mailferry/state", "mailferry/inventory"},
	},
	{
		why:  "production packages never import test rigs (the demo is the one command built on the in-memory server)",
		dirs: []string{"migrate", "state", "throttle", "planner", "inventory", "inventory/discover", "internal/imapconn", "internal/failpoint", "preflight", "internal/healthquery"},
		deny: []string{"mailferry/internal/testrig"},
	},
	{
		why:  "test rigs sit below the code they test: no rig imports the copy engine, the state or the CLI",
		dirs: []string{"internal/testrig/dovecot", "internal/testrig/corpus", "internal/testrig/faultproxy", "internal/testrig/memserver", "internal/testrig/fakeclock", "internal/testrig/promserver"},
		deny: []string{"mailferry/migrate", "mailferry/state", "mailferry/cmd", "mailferry/planner", "mailferry/inventory"},
	},
	{
		why:  "the health poller only reads Prometheus and feeds a throttle: no IMAP, no state, no copy engine",
		dirs: []string{"internal/healthquery"},
		deny: []string{"github.com/emersion/go-imap", "mailferry/internal/imapconn", "mailferry/migrate", "mailferry/state"},
	},
	{
		why:  "preflight only looks: no copy engine, no state",
		dirs: []string{"preflight"},
		deny: []string{"mailferry/migrate", "mailferry/state"},
	},
	{
		why:  "library packages never import the CLI",
		deny: []string{"mailferry/cmd", "github.com/spf13/cobra", "github.com/vbauerster/mpb"},
		allow: []string{
			"cmd/mailferry",
		},
	},
}

func TestImportRules(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	imports := map[string]map[string]bool{} // package dir -> imports
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		if imports[rel] == nil {
			imports[rel] = map[string]bool{}
		}
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			imports[rel][p] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(imports) < 5 {
		t.Fatalf("found only %d packages: walking the wrong tree?", len(imports))
	}
	for pkg, ims := range imports {
		for _, r := range rules {
			if !applies(r.dirs, pkg) || applies(r.allow, pkg) && len(r.allow) > 0 {
				continue
			}
			for im := range ims {
				for _, d := range r.deny {
					if im == d || strings.HasPrefix(im, d+"/") && d != "net" {
						t.Errorf("%s imports %s: %s", pkg, im, r.why)
					}
				}
			}
		}
	}
}

// applies reports whether pkg is one of dirs (exact package paths; an
// empty list means every package).
func applies(dirs []string, pkg string) bool {
	if len(dirs) == 0 {
		return true
	}
	for _, d := range dirs {
		if pkg == d {
			return true
		}
	}
	return false
}
