package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A cluster URL that does not parse and holds a password is quoted with the
// password masked.
func TestMalformedURLHidesPassword(t *testing.T) {
	for _, u := range []string{"imaps://admin:hunter2@a.example:bad", "imaps://admin:hunter2%zz@a.example", "imaps://admin:hunter2@a.example"} {
		_, err := Parse("inv.yaml", []byte("clusters:"+strings.Replace(goodCluster, "imaps://a.example:993", u, 1)))
		if err == nil || !strings.Contains(err.Error(), "inv.yaml:3: clusters[a].url:") {
			t.Fatalf("%s: err = %v", u, err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", u, err)
		}
	}
}

// password_file, credentials_file and ca_file are relative to the
// inventory file's directory, not to the working directory.
func TestPathsRelativeToInventory(t *testing.T) {
	dir := t.TempDir()
	inv := filepath.Join(dir, "inv.yaml")
	writeTestFile(t, inv, `clusters:
  - name: a
    url: imaps://a.example:993
    ca_file: certs/ca.pem
    auth: {method: master, user: admin, password_file: a.pw}
    capacity: {bytes: 1TiB, load: 1}
  - name: b
    url: imaps://b.example:993
    auth: {method: credentials-file, credentials_file: /abs/creds.csv}
    capacity: {bytes: 1TiB, load: 1}
`, 0o600)
	t.Chdir(t.TempDir())
	got, err := Load(inv)
	if err != nil {
		t.Fatal(err)
	}
	a, b := got.Cluster("a"), got.Cluster("b")
	if a.Auth.PasswordFile != filepath.Join(dir, "a.pw") || a.CAFile != filepath.Join(dir, "certs", "ca.pem") || b.Auth.CredentialsFile != "/abs/creds.csv" {
		t.Fatalf("paths: password_file %q, ca_file %q, credentials_file %q", a.Auth.PasswordFile, a.CAFile, b.Auth.CredentialsFile)
	}
}

// CheckSecrets reports, by file, line and field, a password file that is
// missing or readable by others, an unset password variable, and a CA
// file without a certificate; a good setup has no problem.
func TestCheckSecrets(t *testing.T) {
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "ok.pw"), "pw\n", 0o600)
	writeTestFile(t, filepath.Join(dir, "open.pw"), "pw\n", 0o644)
	writeTestFile(t, filepath.Join(dir, "creds.csv"), "alice,alice,pw\n", 0o400)
	writeTestFile(t, filepath.Join(dir, "bad-ca.pem"), "not a certificate\n", 0o644)
	t.Setenv("MF_TEST_SET_PW", "x")
	t.Setenv("MF_TEST_UNSET_PW", "")
	cluster := func(name, auth, extra string) string {
		return "  - name: " + name + "\n    url: imaps://" + name + ".example\n" + extra +
			"    auth: " + auth + "\n    capacity: {bytes: 1TiB, load: 1}\n"
	}
	inv := filepath.Join(dir, "inv.yaml")
	writeTestFile(t, inv, "clusters:\n"+
		cluster("good", "{method: master, user: admin, password_file: ok.pw}", "")+ // auth at line 4
		cluster("env", "{method: master, user: admin, password_env: MF_TEST_SET_PW}", "")+ // 8
		cluster("creds", "{method: credentials-file, credentials_file: creds.csv}", "")+ // 12
		cluster("missing", "{method: master, user: admin, password_file: nope.pw}", "")+ // 16
		cluster("open", "{method: sasl-plain, user: admin, password_file: open.pw}", "")+ // 20
		cluster("unset", "{method: master, user: admin, password_env: MF_TEST_UNSET_PW}", "")+ // 24
		cluster("ca", "{method: master, user: admin, password_file: ok.pw}", "    ca_file: bad-ca.pem\n"), // ca_file at 28
		0o600)
	got, err := Load(inv)
	if err != nil {
		t.Fatal(err)
	}
	errs := got.CheckSecrets()
	want := []string{
		inv + ":16: clusters[missing].auth.password_file: stat " + filepath.Join(dir, "nope.pw") + ": no such file or directory",
		inv + ":20: clusters[open].auth.password_file: " + filepath.Join(dir, "open.pw") + " has mode 0644",
		inv + ":24: clusters[unset].auth.password_env: environment variable $MF_TEST_UNSET_PW is not set",
		inv + ":28: clusters[ca].ca_file: " + filepath.Join(dir, "bad-ca.pem") + " holds no PEM certificate",
	}
	if len(errs) != len(want) {
		t.Fatalf("%d problems, want %d:\n%v", len(errs), len(want), errs)
	}
	for i, w := range want {
		if !strings.HasPrefix(errs[i].Error(), w) {
			t.Errorf("problem %d:\n got %s\nwant %s...", i, errs[i], w)
		}
	}
}

func writeTestFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// Bad TLS settings are named by file, line and field.
func TestTLSFieldErrors(t *testing.T) {
	plain := strings.Replace(goodCluster, "imaps://a.example:993", "imap://a.example:143", 1)
	tests := []struct{ name, yaml, want string }{
		{"ca_file with tls none", "clusters:" + plain + "    tls: none\n    ca_file: ca.pem\n", "inv.yaml:7: clusters[a].ca_file: not used with tls: none"},
		{"insecure with tls none", "clusters:" + plain + "    tls: none\n    insecure_skip_verify: true\n", "inv.yaml:7: clusters[a].insecure_skip_verify: not used with tls: none"},
		{"insecure not a bool", "clusters:" + goodCluster + "    insecure_skip_verify: maybe\n", "inv.yaml:6: clusters[0].insecure_skip_verify: want true or false"},
		{"empty ca_file is a list", "clusters:" + goodCluster + "    ca_file: [a, b]\n", "inv.yaml:6: clusters[0].ca_file: want a single value"},
	}
	for _, tt := range tests {
		_, err := Parse("inv.yaml", []byte(tt.yaml))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want %q", tt.name, err, tt.want)
		}
	}
	inv, err := Parse("dir/inv.yaml", []byte("clusters:"+goodCluster+"    ca_file: ca.pem\n    insecure_skip_verify: false\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c := inv.Cluster("a"); c.CAFile != filepath.Join("dir", "ca.pem") || c.InsecureSkipVerify {
		t.Fatalf("cluster %+v", c)
	}
}
