package pop3

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"
)

// FuzzRead feeds a client whatever a server might send after its
// greeting: it must return a listing or an error, never panic, hang past
// its timeouts or hold more lines than STAT announced.
func FuzzRead(f *testing.F) {
	f.Add([]byte("+OK\r\n+OK\r\n+OK\r\n+OK 2 30\r\n+OK\r\n1 a\r\n2 b\r\n.\r\n+OK\r\n1 10\r\n2 20\r\n.\r\n+OK\r\n"))
	f.Add([]byte("-ERR\r\n+OK\r\n+OK\r\n+OK 1 5\r\n+OK\r\n1 \r\n.\r\n"))
	f.Add([]byte("+OK\r\nUSER\r\n.\r\n+OK\r\n+OK\r\n+OK 3 9\r\n+OK\r\n3 c\r\n3 c\r\n.\r\n"))
	f.Add([]byte("+OK\r\n+OK\r\n+OK\r\n+OK 1 5\r\n+OK\r\n9 x\r\n.\r\n"))
	f.Add([]byte("+OK\r\n+OK\r\n+OK\r\n+OK 99999999999999999999 1\r\n"))
	f.Add([]byte("+OK\r\n+OK\r\n+OK\r\n+OK 999999999999 1\r\n")) // once allocated that many entries
	f.Fuzz(func(t *testing.T, script []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() { // drain what the client sends
			defer close(done)
			_, _ = bufio.NewReader(server).WriteTo(discard{})
		}()
		go func() {
			_, _ = server.Write(append([]byte("+OK fuzz\r\n"), script...))
			_ = server.Close()
		}()
		cfg := Config{Side: "fuzz", Host: "127.0.0.1", Port: 110, TLS: TLSNone, AllowPlaintext: true,
			Login: "u", Password: "p", IOTimeout: 200 * time.Millisecond}
		c, err := start(context.Background(), cfg, client, &tls.Config{}, time.Second)
		if err == nil {
			l, err := c.read()
			if err == nil {
				for _, m := range l.Messages {
					if m.UIDL == "" {
						t.Fatalf("message %d without UIDL in %+v", m.Num, l.Messages)
					}
				}
			}
			_ = c.Close()
		}
		_ = client.Close()
		<-done
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
