package main

import (
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...";
// without it the version comes from the build information (a module
// version, or the one go build derives from the git checkout).
var version = ""

// versionInfo is what `mailferry version --json` prints.
type versionInfo struct {
	Version string `json:"version"`
	// Revision is the VCS commit the binary was built from, empty when
	// it was built outside a checkout (or with -buildvcs=false).
	Revision string `json:"revision,omitempty"`
	// RevisionTime is that commit's time (RFC 3339).
	RevisionTime string `json:"revision_time,omitempty"`
	// Modified: the checkout had uncommitted changes.
	Modified  bool   `json:"modified"`
	GoVersion string `json:"go_version"`
	Platform  string `json:"platform"` // GOOS/GOARCH
}

// readVersion reads the version and VCS stamp from the binary's build
// information (debug.ReadBuildInfo).
func readVersion() versionInfo {
	v := versionInfo{Version: version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		if v.Version == "" {
			v.Version = "(devel)"
		}
		return v
	}
	if v.Version == "" {
		v.Version = info.Main.Version
	}
	if v.Version == "" {
		v.Version = "(devel)"
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Revision = s.Value
		case "vcs.time":
			v.RevisionTime = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func buildVersion() string { return readVersion().Version }

// versionText is the one-line version: version, revision (with "+dirty"
// for a modified checkout) and its time, Go version and platform.
func versionText() string {
	v := readVersion()
	var b strings.Builder
	b.WriteString(v.Version)
	switch {
	case v.Revision != "":
		rev := v.Revision
		if v.Modified {
			rev += "+dirty"
		}
		fmt.Fprintf(&b, " (revision %s", rev)
		if v.RevisionTime != "" {
			fmt.Fprintf(&b, ", %s", v.RevisionTime)
		}
		b.WriteString(")")
	default:
		b.WriteString(" (no VCS revision: built outside a git checkout or with -buildvcs=false)")
	}
	fmt.Fprintf(&b, " %s %s", v.GoVersion, v.Platform)
	return b.String()
}

func newVersionCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the mailferry version and the VCS revision it was built from",
		Long: `Print the version, the git revision the binary was built from (with +dirty
when the checkout had uncommitted changes) and its time, the Go version and
the platform. "mailferry --version" prints the same line. go build and go
install stamp the revision when they build in a git checkout (make build
does; the environment may turn it off with GOFLAGS=-buildvcs=false).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if g.json {
				return writeJSON(g, readVersion())
			}
			_, err := fmt.Fprintf(g.stdout, "mailferry %s\n", versionText())
			return err
		},
	}
}
