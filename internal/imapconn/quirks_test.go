package imapconn

import (
	"bytes"
	"context"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Unknown untagged responses ("* XSTRANGE 1 2", "* BANANA"), which RFC 3501
// says a client must ignore, cost nothing: before and after the greeting,
// after LOGIN, and between and inside FETCH responses.
func TestUnknownUntaggedIgnored(t *testing.T) {
	bodies := []string{"Subject: one\r\n\r\n* BANANA inside a body stays\r\n", "Subject: two\r\n\r\n{5}\r\nhello\r\n"}
	cfg := startFake(t, func(c *fakeConn) {
		c.send("* XSTRANGE 1 2", fakeGreeting, "* BANANA")
		c.serve(map[string]responder{
			"LOGIN": func(c *fakeConn, tag, _ string) bool {
				c.send("* XSTRANGE 1 2", tag+" OK logged in", "* BANANA")
				return true
			},
			"SELECT": func(c *fakeConn, tag, _ string) bool {
				c.send("* 2 EXISTS", "* 7 XSTRANGE {3}", "a b", tag+" OK done")
				return true
			},
			"UID FETCH": func(c *fakeConn, tag, _ string) bool {
				c.send("* 1 FETCH (UID 1 BODY[] "+literal(bodies[0]), bodies[0]+")",
					"* BANANA", "* XSTRANGE 1 2",
					"* 2 FETCH (UID 2 BODY[] "+literal(bodies[1]), bodies[1]+")",
					"* banana {4}", "{5}\r", tag+" OK done")
				return true
			},
		})
	})
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("login with unknown untagged responses around it: %v", err)
	}
	defer c.Close()
	if _, err := c.client.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	got, _ := fetchBodies(t, c, 5*time.Second)
	if !reflect.DeepEqual(got, bodies) {
		t.Fatalf("bodies %q, want %q", got, bodies)
	}
	if err := c.client.Noop().Wait(); err != nil {
		t.Fatalf("connection unusable afterwards: %v", err)
	}
}

// A LIST naming a folder in invalid modified UTF-7 loses that folder only;
// its raw name is recorded. Names may come quoted, as atoms or as literals.
func TestInvalidUTF7FolderDropped(t *testing.T) {
	cfg := startFake(t, func(c *fakeConn) {
		c.send(fakeGreeting)
		c.serve(map[string]responder{
			"LIST": func(c *fakeConn, tag, _ string) bool {
				c.send(`* LIST (\HasNoChildren) "/" INBOX`,
					`* LIST (\HasNoChildren) "/" "&Jjo"`,
					`* STATUS "&Jjo" (MESSAGES 1)`,
					`* LIST (\HasNoChildren) "/" {5}`, `&AGE-`,
					`* LIST (\HasNoChildren) "/" "Good &ZeVnLIqe-"`,
					`* STATUS "Good &ZeVnLIqe-" (MESSAGES 2)`,
					`* LIST () "/" Plain`,
					`* LIST () "/" "Bad&-&AMk-&AMk-"`,
					tag+" OK done")
				return true
			},
		})
	})
	c, err := Dial(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	list, err := c.client.List("", "*", nil).Collect()
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	var names []string
	for _, l := range list {
		names = append(names, l.Mailbox)
	}
	sort.Strings(names)
	if want := []string{"Good 日本語", "INBOX", "Plain"}; !reflect.DeepEqual(names, want) {
		t.Errorf("listed %q, want %q", names, want)
	}
	if bad, want := c.BadNames(), []string{"&Jjo", "&AGE-", "Bad&-&AMk-&AMk-"}; !reflect.DeepEqual(bad, want) {
		t.Errorf("bad names %q, want %q", bad, want)
	}
	if err := c.client.Noop().Wait(); err != nil {
		t.Fatalf("connection unusable afterwards: %v", err)
	}
}

func TestValidModifiedUTF7(t *testing.T) {
	for name, want := range map[string]bool{
		"INBOX": true, "inbox": true, "Sent": true, "A&-B": true, "&ZeVnLIqe-": true,
		"Entw&APw-rfe": true, "caf&AOk-/x": true, "raw ütf-8": true, "&2D3eAA-": true,
		"&Jjo": false, "&AGE-": false, "&-&": false, "tab\there": false, "&AMk-&AMk-": false,
		"&A-": false, "&AM-": false, "&2D0-": false, "&AMk=-": false, "\xff": false, "del\x7f": false,
	} {
		if got := validModifiedUTF7(name); got != want {
			t.Errorf("validModifiedUTF7(%q) = %v, want %v", name, got, want)
		}
	}
}

// filterAll passes stream through the filter, read in pieces of at most
// chunk bytes, and returns the output and the bad names.
func filterAll(stream []byte, chunk int) ([]byte, []string, error) {
	w := &watchConn{tags: map[string]struct{}{}}
	f := newRespFilter(bytes.NewReader(stream), w)
	var out []byte
	buf := make([]byte, max(chunk, 1))
	for {
		n, err := f.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, w.badNames(), nil
		}
		if err != nil {
			return out, w.badNames(), err
		}
	}
}

func TestFilterPassesAndDrops(t *testing.T) {
	in := "* OK ready\r\n* BANANA\r\nT1 OK done\r\n* 1 FETCH (BODY[] {12}\r\n* BANANA\r\n\r\n)\r\n" +
		"* LIST () \"/\" \"&Jjo\"\r\n* LIST () \"/\" \"ok\"\r\n* XSTRANGE {3}\r\n\r\n\n done\r\nT2 OK done\r\n"
	want := "* OK ready\r\nT1 OK done\r\n* 1 FETCH (BODY[] {12}\r\n* BANANA\r\n\r\n)\r\n* LIST () \"/\" \"ok\"\r\nT2 OK done\r\n"
	for _, chunk := range []int{1, 2, 3, 7, 4096} {
		out, bad, err := filterAll([]byte(in), chunk)
		if err != nil || string(out) != want || !reflect.DeepEqual(bad, []string{"&Jjo"}) {
			t.Errorf("chunk %d: %q %q %v\nwant %q", chunk, out, bad, err, want)
		}
	}
}

// FuzzFilterKeepsLiterals: whatever a message body holds, and however the
// stream is cut into reads, the filter passes FETCH responses byte for
// byte and drops only the unknown response put between them.
func FuzzFilterKeepsLiterals(f *testing.F) {
	f.Add([]byte("Subject: x\r\n\r\nhello\r\n"), uint8(3), "BANANA")
	f.Add([]byte("* BANANA\r\n{5}\r\n* LIST () \"/\" \"&Jjo\"\r\n"), uint8(1), "XSTRANGE 1 2")
	f.Add([]byte("T1 OK\r\n+ go\r\n~{3}\r\n"), uint8(255), "X {2}\r\nab")
	f.Add([]byte{}, uint8(7), "BANANA")
	f.Fuzz(func(t *testing.T, body []byte, chunk uint8, junk string) {
		kw, rest := token([]byte(junk))
		if isNumber(kw) {
			kw, _ = token(rest)
		}
		if strings.ContainsAny(junk, "\r\n{}") || knownResponses[upper(kw)] {
			junk = "BANANA"
		}
		keep := "* 1 FETCH (UID 1 BODY[] {" + strconv.Itoa(len(body)) + "}\r\n" + string(body) + ")\r\n"
		keep2 := "* 2 FETCH (BODY[] {" + strconv.Itoa(len(body)) + "}\r\n" + string(body) + " UID 2)\r\n"
		in := "* OK hi\r\n" + keep + "* " + junk + "\r\n" + keep2 + "T1 OK done\r\n"
		out, _, err := filterAll([]byte(in), int(chunk))
		if err != nil {
			t.Fatal(err)
		}
		if want := "* OK hi\r\n" + keep + keep2 + "T1 OK done\r\n"; string(out) != want {
			t.Fatalf("filtered\n%q\nwant\n%q", out, want)
		}
		// Arbitrary bytes never panic and never grow.
		if out, _, _ := filterAll(body, int(chunk)); len(out) > len(body) {
			t.Fatalf("output %d bytes from %d", len(out), len(body))
		}
	})
}
