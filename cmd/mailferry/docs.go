package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

//go:generate go run . docs --markdown ../../docs

// newDocsCommand is the hidden "mailferry docs": man pages and Markdown
// reference pages of every command, generated from the command tree by
// cobra/doc, so they say what --help says. The Markdown pages are
// committed under docs/ (TestDocsUpToDate checks them; "go generate
// ./cmd/mailferry" or "mailferry docs --markdown docs" rewrites them).
func newDocsCommand(g *globalOptions) *cobra.Command {
	var manDir, mdDir string
	cmd := &cobra.Command{
		Use:    "docs [--man DIR] [--markdown DIR]",
		Short:  "Write man pages and Markdown reference pages of every command",
		Long:   "Write man pages (section 1) to --man DIR and Markdown pages to --markdown DIR, one per command.\n\nExit codes: 0 written; 1 a file could not be written; 2 usage error.",
		Hidden: true,
		Args:   cobra.NoArgs,
		Example: `  mailferry docs --man /usr/local/share/man/man1 --markdown docs
  go generate ./cmd/mailferry   # the same, for docs/`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if manDir == "" && mdDir == "" {
				return usageErrorf("docs: say --man DIR, --markdown DIR or both")
			}
			if manDir != "" {
				if err := writeManPages(manDir); err != nil {
					return err
				}
				fmt.Fprintf(g.stderr, "mailferry: man pages written to %s\n", manDir)
			}
			if mdDir != "" {
				if err := writeMarkdown(mdDir); err != nil {
					return err
				}
				fmt.Fprintf(g.stderr, "mailferry: Markdown pages written to %s\n", mdDir)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&manDir, "man", "", "write man pages into `DIR`")
	cmd.Flags().StringVar(&mdDir, "markdown", "", "write Markdown pages into `DIR`")
	return cmd
}

// docsTree is a fresh command tree for the reference pages, the same on
// every machine: no date stamp, no default that comes from the
// environment (the state path: its help says where the default is).
func docsTree() *cobra.Command {
	root := newRootCommand(strings.NewReader(""), io.Discard, newLogOutput(io.Discard, nil))
	root.DisableAutoGenTag = true
	root.InitDefaultVersionFlag()
	walkCommands(root, func(c *cobra.Command) {
		c.DisableAutoGenTag = true
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Name == "state" {
				f.DefValue = ""
			}
		})
	})
	return root
}

func writeMarkdown(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("docs: %w", err)
	}
	if err := doc.GenMarkdownTree(docsTree(), dir); err != nil {
		return fmt.Errorf("docs: markdown: %w", err)
	}
	return nil
}

func writeManPages(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("docs: %w", err)
	}
	date := time.Now()
	if t, err := time.Parse(time.RFC3339, readVersion().RevisionTime); err == nil {
		date = t
	}
	header := &doc.GenManHeader{Title: "MAILFERRY", Section: "1", Source: "mailferry " + buildVersion(), Manual: "mailferry manual", Date: &date}
	if err := doc.GenManTree(docsTree(), header, dir); err != nil {
		return fmt.Errorf("docs: man: %w", err)
	}
	return nil
}
