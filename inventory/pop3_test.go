package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPOP3URL: a cluster's pop3 URL takes its TLS from its scheme and the
// cluster's tls, like the IMAP URL, and a bad one is named by file, line
// and field.
func TestPOP3URL(t *testing.T) {
	ok := []struct {
		name, lines string
		want        TLSMode
	}{
		{"pop3 is STLS", "    pop3: pop3://a.example:110\n", TLSStartTLS},
		{"pop3s is implicit TLS", "    pop3: pop3s://a.example:995\n", TLSImplicit},
		{"pop3 without port", "    pop3: pop3://a.example\n", TLSStartTLS},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := Parse("inv.yaml", []byte("clusters:"+goodCluster+tt.lines))
			if err != nil {
				t.Fatal(err)
			}
			if c := inv.Clusters[0]; c.POP3TLS != tt.want || c.POP3 == "" {
				t.Fatalf("pop3 %q: mode %q, want %q", c.POP3, c.POP3TLS, tt.want)
			}
			if err := inv.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
	t.Run("tls none", func(t *testing.T) {
		y := "clusters:" + strings.Replace(goodCluster, "imaps://a.example:993", "imap://a.example:143", 1) + "    tls: none\n    pop3: pop3://a.example:110\n"
		inv, err := Parse("inv.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		if c := inv.Clusters[0]; c.POP3TLS != TLSNone {
			t.Fatalf("pop3 with tls: none: mode %q", c.POP3TLS)
		}
	})
	t.Run("no pop3", func(t *testing.T) {
		inv, err := Parse("inv.yaml", []byte("clusters:"+goodCluster))
		if err != nil {
			t.Fatal(err)
		}
		if c := inv.Clusters[0]; c.POP3 != "" || c.POP3TLS != "" {
			t.Fatalf("no pop3 given: %q %q", c.POP3, c.POP3TLS)
		}
	})

	bad := []struct {
		name, yaml string
		want       []string
	}{
		{"imap scheme", "clusters:" + goodCluster + "    pop3: imap://a.example:143\n",
			[]string{"inv.yaml:6: clusters[a].pop3: scheme \"imap\": say pop3s://host:995 or pop3://host:110"}},
		{"user info", "clusters:" + goodCluster + "    pop3: pop3://admin:hunter2@a.example:110\n",
			[]string{"inv.yaml:6: clusters[a].pop3:", "user information", "auth"}},
		{"bad port", "clusters:" + goodCluster + "    pop3: pop3://a.example:0\n",
			[]string{"inv.yaml:6: clusters[a].pop3:", "bad port"}},
		{"path", "clusters:" + goodCluster + "    pop3: pop3://a.example:110/INBOX\n",
			[]string{"inv.yaml:6: clusters[a].pop3:", "want only scheme, host and port"}},
		{"empty", "clusters:" + goodCluster + "    pop3: \"\"\n",
			[]string{"inv.yaml:6: clusters[0].pop3: empty"}},
		{"pop3s with tls none", "clusters:" + strings.Replace(goodCluster, "imaps://a.example:993", "imap://a.example:143", 1) + "    tls: none\n    pop3: pop3s://a.example:995\n",
			[]string{"inv.yaml:7: clusters[a].pop3: pop3s:// always uses TLS"}},
		{"not a string", "clusters:" + goodCluster + "    pop3: {url: x}\n",
			[]string{"inv.yaml:6: clusters[0].pop3: want a single value"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "inv.yaml")
			if err := os.WriteFile(path, []byte(tt.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(path)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
			if strings.Contains(msg, "hunter2") {
				t.Fatalf("error shows the password: %s", msg)
			}
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
