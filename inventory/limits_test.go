package inventory

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// writeInv writes an inventory YAML naming csvPath (if any) with clusters
// c1 and c2, and returns its path.
func writeInv(t *testing.T, dir, csvPath, extra string) string {
	t.Helper()
	y := "clusters:" + strings.Replace(goodCluster, "name: a", "name: c1", 1) + strings.Replace(goodCluster, "name: a", "name: c2", 1)
	if csvPath != "" {
		y += "mailboxes_csv: " + csvPath + "\n"
	}
	y += extra
	path := filepath.Join(dir, "inv.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func loadErr(t *testing.T, path string) error {
	t.Helper()
	_, err := Load(path)
	if err == nil {
		t.Fatalf("Load(%s) succeeded", path)
	}
	return err
}

// A 200 MB line is refused at its line after 64 KiB, in little time and
// memory.
func TestCSVLongLine(t *testing.T) {
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "m.csv")
	f, err := os.Create(csvPath)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "mailbox,cluster,bytes,load\na@x,c1,1,1\n")
	chunk := []byte(strings.Repeat("x", 1<<20))
	for range 200 {
		f.Write(chunk)
	}
	f.Close()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	err = loadErr(t, writeInv(t, dir, csvPath, ""))
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if want := csvPath + ":3: line longer than 64.0 KiB"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q, want %q", err, want)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v", d)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 16<<20 {
		t.Errorf("allocated %d MiB", alloc>>20)
	}
}

// A CSV past MaxCSVSize is refused at the line where it crosses it.
func TestCSVTooLarge(t *testing.T) {
	defer func(n int64) { MaxCSVSize = n }(MaxCSVSize)
	MaxCSVSize = 1000
	var b strings.Builder
	for i := range 100 {
		fmt.Fprintf(&b, "u%03d@x,c1,1,1\n", i)
	}
	_, err := ReadCSV("m.csv", strings.NewReader(b.String()))
	if err == nil || !strings.Contains(err.Error(), "m.csv:72: file larger than 1000 B") {
		t.Fatalf("error %v", err)
	}
}

// /dev/zero as the mailbox CSV, or as the inventory itself, fails at once.
func TestDevZero(t *testing.T) {
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip("no /dev/zero")
	}
	start := time.Now()
	err := loadErr(t, writeInv(t, t.TempDir(), "/dev/zero", ""))
	if !strings.Contains(err.Error(), "/dev/zero:1: a NUL byte: binary data, not a mailbox CSV") {
		t.Fatalf("error %v", err)
	}
	err = loadErr(t, "/dev/zero")
	if !strings.Contains(err.Error(), "/dev/zero:1: a NUL byte: binary data, not an inventory YAML") {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
}

// Numbers out of bounds, fractional bytes and a column swap are refused,
// naming the line and field.
func TestCSVNumbers(t *testing.T) {
	for _, tc := range []struct{ line, want string }{
		{"a@x,c1,1.5,1", `m.csv:2: bytes: mailbox "a@x": size "1.5": a number of bytes is whole`},
		{"a@x,c1,0.542,1123098203", `m.csv:2: bytes: mailbox "a@x": size "0.542"`}, // bytes and load swapped
		{"a@x,c1,2.5B,1", `size "2.5B": a number of bytes is whole`},
		{"a@x,c1,1,1e300", `m.csv:2: load: mailbox "a@x": 1e+300 is too large`},
		{"a@x,c1,1,+Inf", `m.csv:2: load: mailbox "a@x": want a number`},
		{"a@x,c1,1,NaN", `m.csv:2: load: mailbox "a@x": want a number`},
		{"a@x,c1,2PiB,1", `m.csv:2: bytes: mailbox "a@x": 2.00 PiB is more than a mailbox holds`},
		{"a@x,c1,1,1,9999999999999", `m.csv:2: messages: mailbox "a@x": 9999999999999 is too many`},
	} {
		_, err := ReadCSV("m.csv", strings.NewReader("mailbox,cluster,bytes,load,messages\n"+tc.line+"\n"))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.line, err, tc.want)
		}
	}
	if mbs, err := ReadCSV("m.csv", strings.NewReader("a@x,c1,1.5KB,0.5\n")); err != nil || mbs[0].Bytes != 1500 {
		t.Errorf("1.5KB: %v %v", mbs, err)
	}
}

// Sizes that each fit but add up past an int64 are refused for the cluster.
func TestTotalsOverflow(t *testing.T) {
	dir := t.TempDir()
	var b strings.Builder
	for i := range 8200 { // 8200 PiB > 8 EiB
		fmt.Fprintf(&b, "u%05d@x,c1,1PiB,1\n", i)
	}
	csvPath := filepath.Join(dir, "m.csv")
	if err := os.WriteFile(csvPath, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	err := loadErr(t, writeInv(t, dir, csvPath, ""))
	if !strings.Contains(err.Error(), "clusters[c1]: its mailboxes add up to more than 8 EiB") {
		t.Fatalf("error %v", err)
	}
	inv := &Inventory{Clusters: []Cluster{{Name: "c1", URL: "imaps://c1:993", Auth: Auth{Method: AuthMaster, User: "u", PasswordEnv: "P"},
		Capacity: Capacity{Bytes: 1, Load: 1}}}}
	for i := range 8200 {
		inv.Mailboxes = append(inv.Mailboxes, Mailbox{Name: fmt.Sprintf("u%d", i), Cluster: "c1", Bytes: MaxMailboxBytes, Load: 1})
	}
	if err := inv.Validate(); err == nil || !strings.Contains(err.Error(), "more than 8 EiB") {
		t.Fatalf("Validate: %v", err)
	}
}

// A UTF-8 byte order mark at the start of the CSV or the YAML is ignored.
func TestBOM(t *testing.T) {
	dir := t.TempDir()
	csvPath := filepath.Join(dir, "m.csv")
	if err := os.WriteFile(csvPath, []byte("\ufeffmailbox,cluster,bytes,load\na@x,c1,10,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := writeInv(t, dir, csvPath, "")
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append([]byte("\ufeff"), data...), 0o600); err != nil {
		t.Fatal(err)
	}
	inv, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(inv.Mailboxes) != 1 || inv.Mailboxes[0].Name != "a@x" {
		t.Fatalf("mailboxes %+v", inv.Mailboxes)
	}
}

// The capacity load of a cluster is bounded too.
func TestCapacityLoadBound(t *testing.T) {
	dir := t.TempDir()
	y := "clusters:" + strings.Replace(goodCluster, "load: 100", "load: 1e300", 1)
	path := filepath.Join(dir, "inv.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := loadErr(t, path); !strings.Contains(err.Error(), "capacity.load: 1e+300 is too large") {
		t.Fatalf("error %v", err)
	}
}
