package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/emersion/go-imap/v2"
	"github.com/spf13/cobra"

	"mailferry/internal/corpus"
	"mailferry/internal/imapconn"
	"mailferry/internal/memserver"
	"mailferry/migrate"
)

type demoOptions struct {
	folders  int
	messages int
	seed     uint64
}

func newDemoCommand(g *globalOptions) *cobra.Command {
	o := &demoOptions{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a whole copy on two in-process IMAP servers, no setup needed",
		Long: `Start two in-memory IMAP servers on loopback ports, seed a realistic mailbox
on the first (nested and non-ASCII folders, attachments, flags, keywords),
copy it to the second with full SHA-256 verification, and print the report.
Nothing outside this process is touched.`,
		Example: `  go run ./cmd/mailferry demo
  mailferry demo --messages 200 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			src, err := memserver.Start()
			if err != nil {
				return fmt.Errorf("start source server: %w", err)
			}
			defer src.Close()
			dst, err := memserver.Start()
			if err != nil {
				return fmt.Errorf("start target server: %w", err)
			}
			defer dst.Close()
			const user, srcPass, dstPass = "alice", "demo-source-pw", "demo-target-pw"
			mbox := corpus.Generate(corpus.Options{Seed: o.seed, Folders: o.folders, MessagesPerFolder: o.messages, MaxSize: 2 << 20})
			if err := seedMem(src.AddUser(user, srcPass), mbox); err != nil {
				return fmt.Errorf("seed the source: %w", err)
			}
			dst.AddUser(user, dstPass)
			if !g.json {
				fmt.Fprintf(g.stdout, "demo: source %s holds %d messages (%s) in %d folders for %q; target %s is empty\n\n",
					src.Addr, mbox.TotalMessages(), humanBytes(mbox.TotalBytes()), len(mbox.Folders), user, dst.Addr)
			}
			srcEP, _ := imapconn.ParseEndpoint("imap://" + user + "@" + src.Addr)
			dstEP, _ := imapconn.ParseEndpoint("imap://" + user + "@" + dst.Addr)
			return copyAndReport(cmd, g,
				imapconn.Config{Side: "source", Endpoint: srcEP, Password: srcPass},
				imapconn.Config{Side: "target", Endpoint: dstEP, Password: dstPass},
				migrate.Options{Verify: migrate.VerifyFull})
		},
	}
	cmd.Flags().IntVar(&o.folders, "folders", 12, "folders in the seeded mailbox")
	cmd.Flags().IntVar(&o.messages, "messages", 40, "messages per folder")
	cmd.Flags().Uint64Var(&o.seed, "seed", 1, "corpus seed (same seed, same mailbox)")
	return cmd
}

// memUser is what seeding needs of an in-memory account.
type memUser interface {
	Create(name string, options *imap.CreateOptions) error
	Append(mailbox string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error)
	Subscribe(name string) error
}

// seedMem writes a generated mailbox into an in-memory account (delimiter
// "/").
func seedMem(u memUser, m *corpus.Mailbox) error {
	for _, f := range m.Folders {
		name := strings.Join(f.Path, "/")
		if !strings.EqualFold(name, "INBOX") {
			if err := u.Create(name, nil); err != nil {
				return fmt.Errorf("create %q: %w", name, err)
			}
		}
		if f.Subscribed {
			if err := u.Subscribe(name); err != nil {
				return fmt.Errorf("subscribe %q: %w", name, err)
			}
		}
		for _, msg := range f.Messages {
			flags := make([]imap.Flag, len(msg.Flags))
			for i, fl := range msg.Flags {
				flags[i] = imap.Flag(fl)
			}
			if _, err := u.Append(name, sized{msg.Open(), msg.Size}, &imap.AppendOptions{Flags: flags, Time: msg.Date}); err != nil {
				return fmt.Errorf("append to %q: %w", name, err)
			}
		}
	}
	return nil
}

type sized struct {
	io.Reader
	n int64
}

func (s sized) Size() int64 { return s.n }
