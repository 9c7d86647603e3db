package main

import (
	"bufio"
	"encoding/binary"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailferry/state/statetest"
)

// A password in a postgres:// --state is refused (argv is public on the
// host), and the message, which says how to give it instead, does not
// repeat it.
func TestStatePasswordInURLRefused(t *testing.T) {
	base := statetest.Postgres(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	withUser := *u
	withUser.User = url.UserPassword(u.User.Username(), "s3cr3t-pg")
	withQuery := *u
	q := withQuery.Query()
	q.Set("password", "s3cr3t-pg")
	withQuery.RawQuery = q.Encode()
	imapPW := writeFile(t, "x\n")
	for _, s := range []string{withUser.String(), withQuery.String()} {
		for _, args := range [][]string{{"status", "--state", s}, {"migrate", "--from", "imap://a@127.0.0.1:1", "--to", "imap://a@127.0.0.1:2",
			"--from-password-file", imapPW, "--to-password-file", imapPW, "--state", s}} {
			code, stdout, stderr := runCLI(t, nil, args...)
			if code != exitUsage || !strings.Contains(stderr, "--state-password-file") {
				t.Errorf("%v: exit %d, want %d with advice; stderr %q", args[0], code, exitUsage, stderr)
			}
			if strings.Contains(stdout+stderr, "s3cr3t-pg") {
				t.Errorf("%v: output shows the password: %s", args[0], stderr)
			}
		}
	}
	// The same database, its password by reference, opens.
	pw := filepath.Join(t.TempDir(), "pg.pw")
	must(t, os.WriteFile(pw, []byte("s3cr3t-pg\n"), 0o600))
	if code, _, stderr := runCLI(t, nil, "status", "--state", base, "--state-password-file", pw); code != exitOK {
		t.Fatalf("status with --state-password-file: exit %d: %s", code, stderr)
	}
	must(t, os.Chmod(pw, 0o644))
	if code, _, stderr := runCLI(t, nil, "status", "--state", base, "--state-password-file", pw); code != exitUsage || !strings.Contains(stderr, "0644") {
		t.Fatalf("a world-readable password file: exit %d: %s", code, stderr)
	}
}

// The password given by reference (--state-password-file, else
// $MAILFERRY_STATE_PASSWORD, else PGPASSFILE) is the one sent to the
// server: a stand-in PostgreSQL server asks for it in clear text and
// records it.
func TestStatePasswordReachesServer(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "pg.pw")
	must(t, os.WriteFile(pwFile, []byte("from-file\n"), 0o600))
	t.Setenv("PGPASSWORD", "")
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"file", map[string]string{statePasswordEnv: "from-env"}, []string{"--state-password-file", pwFile}, "from-file"},
		{"env", map[string]string{statePasswordEnv: "from-env"}, nil, "from-env"},
		{"PGPASSFILE", map[string]string{statePasswordEnv: ""}, nil, "from-pgpass"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, got := fakePostgres(t)
			// A pgpass file matching the server is there every time: what
			// mailferry is given comes first.
			pgpass := filepath.Join(t.TempDir(), "pgpass")
			must(t, os.WriteFile(pgpass, []byte(addr+":db:ferry:from-pgpass\n"), 0o600))
			t.Setenv("PGPASSFILE", pgpass)
			args := append([]string{"status", "--state", "postgres://ferry@" + addr + "/db?sslmode=disable&connect_timeout=5"}, tt.args...)
			code, _, stderr := runCLI(t, tt.env, args...)
			if code == exitOK {
				t.Fatalf("the stand-in server refuses every login, yet exit 0")
			}
			select {
			case pw := <-got:
				if pw != tt.want {
					t.Fatalf("server got password %q, want %q", pw, tt.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no password reached the server; stderr %q", stderr)
			}
			if strings.Contains(stderr, tt.want) {
				t.Errorf("the error shows the password: %s", stderr)
			}
		})
	}
}

// fakePostgres accepts PostgreSQL connections on loopback, asks each for a
// clear-text password, sends the first one it gets on the channel, and
// refuses the login.
func fakePostgres(t *testing.T) (string, <-chan string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	got := make(chan string, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				r := bufio.NewReader(c)
				var n uint32
				if binary.Read(r, binary.BigEndian, &n) != nil || n < 8 {
					return
				}
				if _, err := io.CopyN(io.Discard, r, int64(n-4)); err != nil { // the startup message
					return
				}
				_, _ = c.Write([]byte{'R', 0, 0, 0, 8, 0, 0, 0, 3}) // AuthenticationCleartextPassword
				typ, err := r.ReadByte()
				if err != nil || typ != 'p' || binary.Read(r, binary.BigEndian, &n) != nil || n < 5 {
					return
				}
				body := make([]byte, n-4)
				if _, err := io.ReadFull(r, body); err != nil {
					return
				}
				select {
				case got <- strings.TrimRight(string(body), "\x00"):
				default:
				}
				msg := "SFATAL\x00C28P01\x00Mpassword authentication failed\x00\x00"
				e := []byte{'E', 0, 0, 0, 0}
				binary.BigEndian.PutUint32(e[1:], uint32(4+len(msg)))
				_, _ = c.Write(append(e, msg...))
			}()
		}
	}()
	return ln.Addr().String(), got
}
