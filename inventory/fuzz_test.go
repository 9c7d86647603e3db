package inventory

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// FuzzParse: the YAML parser never panics, and whatever it accepts passes
// Validate.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile("../testdata/inventory/example.yaml"); err == nil {
		f.Add(data)
	}
	f.Add([]byte("clusters:" + goodCluster + "mailboxes:\n  - {name: x@y, cluster: a, bytes: 1GiB, load: 1}\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("clusters: &c\n  - *c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, err := Parse("f.yaml", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.yaml") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		if err := inv.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate rejects: %v", err)
		}
	})
}

// FuzzReadCSV: the CSV reader never panics, and what it accepts survives
// WriteCSV and ReadCSV unchanged.
func FuzzReadCSV(f *testing.F) {
	f.Add([]byte("mailbox,cluster,bytes,load,messages\na@x,c1,10,0.5,3\n"))
	f.Add([]byte("# c\n\"q,\"\"x\",c,2GiB,1\n"))
	f.Add([]byte("a,b,c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		mbs, err := ReadCSV("f.csv", bytes.NewReader(data))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.csv") && !strings.HasPrefix(err.Error(), "read f.csv") {
				t.Fatalf("error without the file name: %v", err)
			}
			return
		}
		var buf bytes.Buffer
		if err := WriteCSV(&buf, mbs); err != nil {
			t.Fatalf("WriteCSV refused what ReadCSV accepted: %v", err)
		}
		again, err := ReadCSV("g.csv", &buf)
		if err != nil {
			t.Fatalf("re-read: %v\n%s", err, buf.String())
		}
		if len(again) != len(mbs) {
			t.Fatalf("%d mailboxes, %d after round trip", len(mbs), len(again))
		}
		for i := range mbs {
			if mbs[i] != again[i] {
				t.Fatalf("round trip changed %+v into %+v", mbs[i], again[i])
			}
		}
	})
}
