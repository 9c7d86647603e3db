package inventory

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const goodCluster = `
  - name: a
    url: imaps://a.example:993
    auth: {method: master, user: admin, password_file: /etc/a.pass}
    capacity: {bytes: 2TiB, load: 100}
`

func TestLoadExample(t *testing.T) {
	inv, err := Load("../testdata/inventory/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Clusters) != 4 || len(inv.Mailboxes) != 1002 {
		t.Fatalf("%d clusters, %d mailboxes", len(inv.Clusters), len(inv.Mailboxes))
	}
	a := inv.Cluster("alpha")
	if a.Capacity.Bytes != 3<<39 || a.Limits.BytesPerSec != 200<<20 || a.Auth.Format != "{mailbox}*{admin}" || a.TLS != TLSImplicit || a.Tags["region"] != "eu-west" {
		t.Fatalf("alpha: %+v", a)
	}
	if c := inv.Cluster("charlie"); c.TLS != TLSStartTLS || c.Auth.Method != AuthSASLPlain {
		t.Fatalf("charlie: %+v", c)
	}
	if b := inv.Cluster("bravo"); b.Health != Degraded || b.Auth.PasswordEnv != "MAILFERRY_BRAVO_PASSWORD" {
		t.Fatalf("bravo: %+v", b)
	}
	if m := inv.Mailboxes[0]; m.Name != "ceo@example.com" || !m.Pinned || m.Bytes != 14<<30 || m.Messages != 180000 {
		t.Fatalf("first inline mailbox: %+v", m)
	}
	if m := inv.Mailboxes[2]; m.Name != "ben.0001@example.com" || m.Cluster != "alpha" || m.Bytes != 1123098203 || m.Load != 0.542 || m.Messages != 12219 {
		t.Fatalf("first CSV mailbox: %+v", m)
	}
	if err := inv.Validate(); err != nil {
		t.Fatalf("Validate on a loaded inventory: %v", err)
	}
}

// TestRejects: every kind of bad input is rejected with the file, the line
// and the field, and a message that says what to do.
func TestRejects(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		csv  string
		want []string // substrings of the error, in order of appearance
	}{
		{"unknown field", "clusters:" + goodCluster + "    colour: red\n", "", []string{"inv.yaml:6: clusters[0].colour: unknown field"}},
		{"inline password", "clusters:" + strings.Replace(goodCluster, "password_file: /etc/a.pass", "password: hunter2", 1), "",
			[]string{"inv.yaml:4: clusters[0].auth.password: inline secrets are not allowed", "password_file", "password_env"}},
		{"password in URL", "clusters:" + strings.Replace(goodCluster, "imaps://a.example", "imaps://admin:hunter2@a.example", 1), "",
			[]string{"inv.yaml:3: clusters[a].url:", "user information"}},
		{"both secrets", "clusters:" + strings.Replace(goodCluster, "password_file: /etc/a.pass", "password_file: /x, password_env: X", 1), "",
			[]string{"inv.yaml:4: clusters[a].auth.password_env: set password_file or password_env, not both"}},
		{"no secret", "clusters:" + strings.Replace(goodCluster, ", password_file: /etc/a.pass", "", 1), "",
			[]string{"inv.yaml:4: clusters[a].auth.password_file: missing"}},
		{"negative capacity", "clusters:" + strings.Replace(goodCluster, "2TiB", "-5", 1), "", []string{"inv.yaml:5: clusters[0].capacity.bytes: size \"-5\" is negative"}},
		{"bad unit", "clusters:" + strings.Replace(goodCluster, "2TiB", "2 TeraB", 1), "", []string{"inv.yaml:5: clusters[0].capacity.bytes:", "unknown unit"}},
		{"bad health", "clusters:" + goodCluster + "    health: sick\n", "", []string{"inv.yaml:6: clusters[a].health: unknown health \"sick\""}},
		{"bad max latency", "clusters:" + goodCluster + "    limits: {max_latency: soon}\n", "", []string{"inv.yaml:6: clusters[0].limits.max_latency: want a duration", "soon"}},
		{"bad io timeout", "clusters:" + goodCluster + "    limits: {io_timeout: later}\n", "", []string{"inv.yaml:6: clusters[0].limits.io_timeout: want a duration", "later"}},
		{"negative io timeout", "clusters:" + goodCluster + "    limits: {io_timeout: -5s}\n", "", []string{"inv.yaml:6: clusters[a].limits.io_timeout: must not be negative"}},
		{"bad window", "clusters:" + goodCluster + "    limits: {windows: [\"01:00-06:00\", \"25:00-02:00\"]}\n", "", []string{"inv.yaml:6: clusters[0].limits.windows[1]:", "25:00"}},
		{"tls none on imaps", "clusters:" + goodCluster + "    tls: none\n", "", []string{"inv.yaml:3: clusters[a].url:", "imaps:// always uses TLS"}},
		{"bad scheme", "clusters:" + strings.Replace(goodCluster, "imaps://", "pop3://", 1), "", []string{"inv.yaml:3: clusters[a].url: scheme \"pop3\""}},
		{"repeated key", "clusters:" + goodCluster + "    name: b\n", "", []string{"inv.yaml:6: clusters[0].name: repeated key (first at line 2)"}},
		{"duplicate cluster", "clusters:" + goodCluster + goodCluster, "", []string{"inv.yaml:7: clusters[1].name: duplicate cluster \"a\""}},
		{"unknown cluster", "clusters:" + goodCluster + "mailboxes:\n  - {name: x@y, cluster: b, bytes: 1, load: 1}\n", "",
			[]string{"inv.yaml:7: cluster: mailbox \"x@y\" is on unknown cluster \"b\" (known: a)"}},
		{"negative mailbox bytes", "clusters:" + goodCluster + "mailboxes:\n  - {name: x@y, cluster: a, bytes: -1, load: 1}\n", "",
			[]string{"inv.yaml:7: mailboxes[0].bytes: size \"-1\" is negative"}},
		{"negative load", "clusters:" + goodCluster + "mailboxes:\n  - {name: x@y, cluster: a, bytes: 1, load: -0.5}\n", "",
			[]string{"inv.yaml:7: mailboxes[0].load: must not be negative"}},
		{"duplicate inline and csv", "clusters:" + goodCluster + "mailboxes_csv: m.csv\nmailboxes:\n  - {name: x@y, cluster: a, bytes: 1, load: 1}\n",
			"mailbox,cluster,bytes,load\nz@y,a,5,1\nx@y,a,5,1\n",
			[]string{"m.csv:3: mailbox: duplicate mailbox \"x@y\", first listed at", "inv.yaml:8"}},
		{"csv unknown cluster", "clusters:" + goodCluster + "mailboxes_csv: m.csv\n", "x@y,a,1,1\nz@y,q,1,1\n",
			[]string{"m.csv:2: cluster: mailbox \"z@y\" is on unknown cluster \"q\""}},
		{"csv negative", "clusters:" + goodCluster + "mailboxes_csv: m.csv\n", "# comment\nx@y,a,-7,1\n",
			[]string{"m.csv:2: bytes: mailbox \"x@y\": size \"-7\" is negative"}},
		{"csv fields", "clusters:" + goodCluster + "mailboxes_csv: m.csv\n", "x@y,a,1\n", []string{"m.csv:1: want 4 or 5 fields"}},
		{"csv missing", "clusters:" + goodCluster + "mailboxes_csv: nope.csv\n", "", []string{"inv.yaml:6: mailboxes_csv:", "no such file"}},
		{"version", "version: 2\nclusters:" + goodCluster, "", []string{"inv.yaml:1: version: inventory format version 2 is not supported"}},
		{"no clusters", "mailboxes: []\n", "", []string{"clusters: no clusters"}},
		{"not yaml", "clusters: [\n", "", []string{"inv.yaml:", "not valid YAML"}},
		{"merge key", "base: &b {bytes: 1TiB, load: 5}\nclusters:" + goodCluster, "", []string{"inv.yaml:1: base: unknown field"}},
		{"credentials-file with password", "clusters:\n  - name: a\n    url: imap://a:143\n    auth: {method: credentials-file, credentials_file: /c, password_env: X}\n    capacity: {bytes: 1TiB, load: 5}\n", "",
			[]string{"inv.yaml:4: clusters[a].auth.password_file: not used with method credentials-file"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "inv.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			if tt.csv != "" {
				if err := os.WriteFile(filepath.Join(dir, "m.csv"), []byte(tt.csv), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := Load(path)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
			rest := msg
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error %q does not contain %q", msg, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestAliasesAndTLS(t *testing.T) {
	y := `
clusters:
  - name: a
    url: imap://a.example
    tls: none
    auth: &auth {method: sasl-plain, user: admin, password_env: PW}
    capacity: &cap {bytes: 1TB, load: 10}
  - name: b
    url: imap://b.example:143
    auth: *auth
    capacity: *cap
`
	inv, err := Parse("inv.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if inv.Clusters[0].TLS != TLSNone || inv.Clusters[1].TLS != TLSStartTLS {
		t.Fatalf("tls modes %q %q", inv.Clusters[0].TLS, inv.Clusters[1].TLS)
	}
	if inv.Clusters[1].Capacity.Bytes != 1e12 || inv.Clusters[1].Auth.PasswordEnv != "PW" {
		t.Fatalf("alias not followed: %+v", inv.Clusters[1])
	}
}

func TestErrorsAreStructured(t *testing.T) {
	_, err := Parse("inv.yaml", []byte("clusters:"+goodCluster+"    colour: red\n    flavour: x\n"))
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("want 2 Errors, got %#v", err)
	}
	if e := errs[1]; e.File != "inv.yaml" || e.Line != 7 || e.Field != "clusters[0].flavour" {
		t.Fatalf("second error %+v", e)
	}
}

func TestParseBytes(t *testing.T) {
	good := map[string]int64{"0": 0, "1048576": 1 << 20, "500GiB": 500 << 30, "2TB": 2e12, "1.5 GB": 1.5e9, "3kib": 3072, "7b": 7, "1PiB": 1 << 50}
	for in, want := range good {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("ParseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "-2GiB", "GiB", "1.2.3GB", "12 parsecs", "1e3", "9999999PiB", "NaN"} {
		if got, err := ParseBytes(in); err == nil {
			t.Errorf("ParseBytes(%q) = %d, want an error", in, got)
		}
	}
}

func TestFormatBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.00 KiB", 1536 << 20: "1.50 GiB", 3 << 39: "1.50 TiB", 123 << 30: "123 GiB", 1<<40 - 1: "1.00 TiB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestCSVRoundTrip(t *testing.T) {
	in := []Mailbox{
		{Name: "a@x", Cluster: "c1", Bytes: 10, Load: 0.1, Messages: 3},
		{Name: `quoted, "name"`, Cluster: "c2", Bytes: 0, Load: 1e-9},
	}
	var buf bytes.Buffer
	if err := WriteCSV(&buf, in); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "mailbox,cluster,bytes,load,messages\n") {
		t.Fatalf("no header: %q", buf.String())
	}
	out, err := ReadCSV("m.csv", &buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != len(in) || out[0] != in[0] || out[1] != in[1] {
		t.Fatalf("round trip: %+v", out)
	}
	if err := WriteCSV(&buf, []Mailbox{{Name: "#x", Cluster: "c", Bytes: 1}}); err == nil {
		t.Fatal("WriteCSV wrote a name ReadCSV would take for a comment")
	}
}

// Per-cluster throttle limits: latency ceiling and time windows.
func TestLimitsLatencyAndWindows(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "inv.yaml")
	src := "clusters:" + goodCluster + "    limits: {connections: 3, max_latency: 750ms, io_timeout: 45s, windows: [\"22:00-02:00\", \"12:00-13:00\"]}\n"
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	inv, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	l := inv.Clusters[0].Limits
	if l.Connections != 3 || l.MaxLatency != 750*time.Millisecond || l.IOTimeout != 45*time.Second || len(l.Windows) != 2 {
		t.Fatalf("limits = %+v", l)
	}
	at := func(h int) time.Time { return time.Date(2026, 1, 1, h, 30, 0, 0, time.Local) }
	if !l.Windows.Open(at(23)) || !l.Windows.Open(at(1)) || !l.Windows.Open(at(12)) || l.Windows.Open(at(9)) {
		t.Errorf("windows %v open at the wrong hours", l.Windows)
	}
}

func TestFormatRate(t *testing.T) {
	nan := 0.0
	nan /= nan
	for r, want := range map[float64]string{975e3: "952 KiB/s", 1.3 * (1 << 20): "1.30 MiB/s", 0: "0 B/s", -5: "0 B/s", nan: "0 B/s"} {
		if got := FormatRate(r); got != want {
			t.Errorf("FormatRate(%v) = %q, want %q", r, got, want)
		}
	}
}
