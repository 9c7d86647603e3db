package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	gen "github.com/invopop/jsonschema"
	jsv "github.com/santhosh-tekuri/jsonschema/v6"

	"mailferry/htmlreport"
	"mailferry/migrate"
	"mailferry/planner"
)

// The JSON Schemas of what mailferry prints, under schema/, are generated
// from the Go types that print it. After changing one of those types:
//
//	go test ./cmd/mailferry -run TestSchemasUpToDate -update
//
// TestSchemasUpToDate fails while a checked-in schema differs from the
// types; the other tests validate real outputs of the commands against the
// checked-in schemas.

const schemaDir = "../../schema"

// schemaDocs are the documents with a schema of their own: file name,
// title, and the type printed.
var schemaDocs = []struct {
	file, title string
	v           any
}{
	{"plan.schema.json", "mailferry plan document (plan --json, plan -o, drain --dry-run --json)", planner.Plan{}},
	{"report.schema.json", "mailferry apply report (--report FILE, with the plan summary and the timeline; the report event of --json without \"event\", plan and timeline)", htmlreport.RunDocument{}},
	{"migrate-report.schema.json", "mailferry migrate --json report", migrate.Report{}},
	{"preflight.schema.json", "mailferry preflight --json report", preflightJSON{}},
	{"inventory-check.schema.json", "mailferry inventory check --json report", checkReport{}},
	{"discover.schema.json", "mailferry discover --json summary", discoverReport{}},
	{"version.schema.json", "mailferry version --json", versionInfo{}},
}

func schemaReflector() *gen.Reflector {
	return &gen.Reflector{
		// Names carry their package: planner.Move and migrate.Move differ.
		Namer: func(t reflect.Type) string {
			pkg := t.PkgPath()
			if i := strings.LastIndex(pkg, "/"); i >= 0 {
				pkg = pkg[i+1:]
			}
			if pkg == "" {
				return t.Name()
			}
			return pkg + "." + t.Name()
		},
	}
}

// generatedSchemas are the schemas the types give, by file name.
func generatedSchemas(t *testing.T) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, d := range schemaDocs {
		s := schemaReflector().Reflect(d.v)
		s.Title = d.title
		out[d.file] = marshalSchema(t, s)
	}
	// The NDJSON stream: each line one of eventLines, told apart by "event".
	events := &gen.Schema{Version: gen.Version, Title: "mailferry NDJSON events (apply, drain, complete, rebalance, demo with --json): one object per line",
		Definitions: gen.Definitions{}}
	for _, v := range eventLines {
		s := schemaReflector().Reflect(v)
		events.OneOf = append(events.OneOf, &gen.Schema{Ref: s.Ref})
		for k, d := range s.Definitions {
			events.Definitions[k] = d
		}
	}
	out["events.schema.json"] = marshalSchema(t, events)
	return out
}

func marshalSchema(t *testing.T, s *gen.Schema) []byte {
	t.Helper()
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(data, '\n')
}

// TestSchemasUpToDate: the checked-in schemas are what the types give
// (-update rewrites them).
func TestSchemasUpToDate(t *testing.T) {
	for name, want := range generatedSchemas(t) {
		path := filepath.Join(schemaDir, name)
		if updateGolden() {
			if err := os.MkdirAll(schemaDir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run: go test ./cmd/mailferry -run TestSchemasUpToDate -update)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what the Go types give: run go test ./cmd/mailferry -run TestSchemasUpToDate -update", path)
		}
	}
}

// checkedSchema compiles a checked-in schema.
func checkedSchema(t *testing.T, name string) *jsv.Schema {
	t.Helper()
	f, err := os.Open(filepath.Join(schemaDir, name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsv.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	c := jsv.NewCompiler()
	if err := c.AddResource(name, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(name)
	if err != nil {
		t.Fatalf("compile %s: %v", name, err)
	}
	return s
}

// validate checks one JSON document against a checked-in schema.
func validate(t *testing.T, schema *jsv.Schema, what, doc string) {
	t.Helper()
	v, err := jsv.UnmarshalJSON(strings.NewReader(doc))
	if err != nil {
		t.Fatalf("%s: not JSON: %v\n%s", what, err, doc)
	}
	if err := schema.Validate(v); err != nil {
		t.Errorf("%s does not match its schema: %v\n%.2000s", what, err, doc)
	}
}

// TestSchemaRejectsPascalCase: the schemas are strict (no unknown
// properties), so the PascalCase totals of old would be refused.
func TestSchemaRejectsPascalCase(t *testing.T) {
	s := checkedSchema(t, "report.schema.json")
	v, _ := jsv.UnmarshalJSON(strings.NewReader(`{"moves":[],"seconds":1,"totals":{"Moves":0,"Done":0}}`))
	if err := s.Validate(v); err == nil {
		t.Fatal("a report with PascalCase totals passed the report schema")
	}
}

// TestOutputsMatchSchemas runs the commands and validates what they print
// against the checked-in schemas: the plan (plan --json, plan -o, drain
// --dry-run --json), the NDJSON stream and the report of a real apply (the
// demo's), migrate --json, preflight --json, discover --json, inventory
// check --json and version --json.
func TestOutputsMatchSchemas(t *testing.T) {
	planSchema := checkedSchema(t, "plan.schema.json")
	t.Run("plan", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "plan.json")
		code, stdout, stderr := runCLI(t, nil, "plan", "-i", exampleInventory, "--drain", "bravo", "--json", "-o", out)
		if code != exitOK && code != exitPartial { // 3: the example's drain does not meet its goal; the plan is printed and written
			t.Fatalf("plan: exit %d: %s", code, stderr)
		}
		validate(t, planSchema, "plan --json", stdout)
		data, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		validate(t, planSchema, "plan -o", string(data))
		code, stdout, stderr = runCLI(t, nil, "drain", "bravo", "-i", exampleInventory, "--dry-run", "--json")
		if code != exitOK || stdout == "" {
			t.Fatalf("drain --dry-run --json: exit %d, stdout %q: %s", code, stdout, stderr)
		}
		validate(t, planSchema, "drain --dry-run --json", stdout)
	})
	t.Run("events and report", func(t *testing.T) {
		t.Setenv("TMPDIR", t.TempDir())
		code, stdout, stderr := runCLI(t, nil, "demo", "--mailboxes", "4", "--folders", "2", "--messages", "3", "--max-size", "8KiB", "--parallel", "2", "--json")
		if code != exitOK {
			t.Fatalf("demo --json: exit %d: %s", code, stderr)
		}
		events, report := checkedSchema(t, "events.schema.json"), checkedSchema(t, "report.schema.json")
		seen := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			validate(t, events, "NDJSON line", line)
			var e struct {
				Event string `json:"event"`
			}
			_ = json.Unmarshal([]byte(line), &e)
			seen[e.Event] = true
			if e.Event == "report" {
				var m map[string]any
				_ = json.Unmarshal([]byte(line), &m)
				delete(m, "event")
				data, _ := json.Marshal(m)
				validate(t, report, "report", string(data))
			}
		}
		for _, e := range []string{"plan", "move_phase", "move_done", "report"} {
			if !seen[e] {
				t.Errorf("the stream had no %q line: %v", e, seen)
			}
		}
	})
	t.Run("migrate", func(t *testing.T) {
		src, dst, _ := seededPair(t)
		code, stdout, stderr := runCLI(t, map[string]string{"MAILFERRY_FROM_PASSWORD": "src-pw", "MAILFERRY_TO_PASSWORD": "dst-pw"},
			"migrate", "--from-tls", "none", "--to-tls", "none", "--json", "--state", "none", "--from", "imap://alice@"+src.Addr, "--to", "imap://alice@"+dst.Addr)
		if code != exitOK {
			t.Fatalf("migrate: exit %d: %s", code, stderr)
		}
		validate(t, checkedSchema(t, "migrate-report.schema.json"), "migrate --json", stdout)
		if !strings.Contains(stdout, `"latency_p90_seconds"`) || strings.Contains(stdout, `"Latency"`) {
			t.Errorf("migrate --json throttle figures are not snake_case with units:\n%s", stdout)
		}
	})
	t.Run("preflight", func(t *testing.T) {
		inv, plan := unreachableInventory(t)
		code, stdout, stderr := runCLI(t, nil, "preflight", plan, "-i", inv, "--json", "--state", "none", "--io-timeout", "2s")
		if code != exitFailure {
			t.Fatalf("preflight of an unreachable cluster: exit %d, want %d: %s", code, exitFailure, stderr)
		}
		validate(t, checkedSchema(t, "preflight.schema.json"), "preflight --json", stdout)
		code, stdout, stderr = runCLI(t, nil, "discover", "-i", inv, "--json", "-o", filepath.Join(t.TempDir(), "m.csv"))
		if code != exitPartial {
			t.Fatalf("discover of an unreachable cluster: exit %d, want %d: %s", code, exitPartial, stderr)
		}
		validate(t, checkedSchema(t, "discover.schema.json"), "discover --json", stdout)
	})
	t.Run("inventory check and version", func(t *testing.T) {
		code, stdout, stderr := runCLI(t, nil, "inventory", "check", "-i", exampleInventory, "--skip-secrets", "--json")
		if code != exitOK {
			t.Fatalf("inventory check: exit %d: %s", code, stderr)
		}
		validate(t, checkedSchema(t, "inventory-check.schema.json"), "inventory check --json", stdout)
		code, stdout, _ = runCLI(t, nil, "version", "--json")
		if code != exitOK {
			t.Fatalf("version --json: exit %d", code)
		}
		validate(t, checkedSchema(t, "version.schema.json"), "version --json", stdout)
	})
}

// unreachableInventory writes an inventory of two clusters on a closed
// loopback port (tls: none, a password file) and a plan moving one mailbox
// between them.
func unreachableInventory(t *testing.T) (inv, plan string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "pw"), []byte("x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := closedAddr(t)
	var y strings.Builder
	y.WriteString("version: 1\nclusters:\n")
	for _, c := range []string{"alpha", "bravo"} {
		y.WriteString("  - name: " + c + "\n    url: imap://" + addr + "\n    tls: none\n" +
			"    auth: {method: master, user: admin, password_file: pw}\n    capacity: {bytes: 1GiB, load: 100}\n")
	}
	y.WriteString("mailboxes_csv: mailboxes.csv\n")
	inv = filepath.Join(dir, "inv.yaml")
	if err := os.WriteFile(inv, []byte(y.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mailboxes.csv"), []byte("mailbox,cluster,bytes,load,messages\nalice,bravo,1000,1,3\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	plan = filepath.Join(dir, "plan.json")
	if code, _, stderr := runCLI(t, nil, "plan", "-i", inv, "--drain", "bravo", "-o", plan); code != exitOK {
		t.Fatalf("plan: exit %d: %s", code, stderr)
	}
	return inv, plan
}
