package main

import (
	"context"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"mailferry/htmlreport"
)

// chromium finds the headless browser the HTML tests render in. CI
// (MAILFERRY_REQUIRE_DOVECOT=1, set by scripts/test.sh, which installs the
// Debian package) must have it; elsewhere the test skips, saying why.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("MAILFERRY_REQUIRE_DOVECOT") == "1" {
		t.Fatal("chromium not found, and the suites are required here (scripts/install-deps.sh installs Debian's chromium)")
	}
	t.Skip("chromium not found: the HTML report is rendered in headless Chromium (Debian package chromium; scripts/install-deps.sh installs it)")
	return ""
}

// artifactDir keeps the screenshots after the test: $MAILFERRY_TEST_ARTIFACTS,
// else mailferry-test-artifacts in the system's temporary directory.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("MAILFERRY_TEST_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "mailferry-test-artifacts")
	}
	must(t, os.MkdirAll(dir, 0o755))
	return dir
}

// render loads page in headless Chromium, keeps a screenshot in the
// artifact directory and returns the DOM as the browser built it. It
// fails on any console error the page causes.
func render(t *testing.T, browser, page, shot string) string {
	t.Helper()
	profile := t.TempDir()
	run := func(args ...string) (string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
			"--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0", "--window-size=1200,2400"}
		cmd := exec.CommandContext(ctx, browser, append(append(base, args...), "file://"+page)...)
		var out, errb strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
		}
		return out.String(), errb.String()
	}
	dom, logs := run("--dump-dom")
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "CONSOLE") || strings.Contains(l, "Uncaught") {
			t.Errorf("%s: the page logged an error: %s", filepath.Base(page), l)
		}
	}
	_, _ = run("--screenshot=" + shot)
	f, err := os.Open(shot)
	must(t, err)
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	// A page with its charts drawn has many colours; a blank or
	// unstyled one a handful.
	colours := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
		}
	}
	if len(colours) < 12 {
		t.Errorf("screenshot %s has %d colours: the charts did not draw", shot, len(colours))
	}
	t.Logf("screenshot kept: %s", shot)
	return dom
}

// count is how many elements of the DOM match re.
func count(dom, re string) int { return len(regexp.MustCompile(re).FindAllStringIndex(dom, -1)) }

// section is the DOM of <section id="id">.
func section(t *testing.T, dom, id string) string {
	t.Helper()
	i := strings.Index(dom, `<section id="`+id+`"`)
	if i < 0 {
		t.Fatalf("the page has no section %q", id)
	}
	j := strings.Index(dom[i:], "</section>")
	return dom[i : i+j]
}

// plan --html and apply --report-html (and report --html from the JSON)
// draw pages that render in a browser, with every chart: per-cluster
// bars, the moves' timeline, each cluster's throughput and the ETA, and
// the failed move's reason in the table.
func TestHTMLReportsRenderInChromium(t *testing.T) {
	browser := chromium(t)
	r := newApplyRig(t, 4)
	// ghost is in the inventory but has no login anywhere: it fails alone.
	r.inv = r.writeInventory("inv.yaml", rigInventory{extra: []string{"{name: ghost, cluster: alpha, bytes: 1000, load: 1}"}})
	art := artifactDir(t)
	planJSON := filepath.Join(r.dir, "plan.json")
	planHTML := filepath.Join(r.dir, "plan.html")
	code, stdout, stderr := runCLI(t, nil, "plan", "-i", r.inv, "--drain", "alpha", "-o", planJSON, "--html", planHTML)
	if code != exitOK {
		t.Fatalf("plan: exit %d\n%s\n%s", code, stdout, stderr)
	}
	runJSON := filepath.Join(r.dir, "run.json")
	runHTML := filepath.Join(r.dir, "run.html")
	code, stdout, stderr = runCLI(t, nil, "apply", planJSON, "-i", r.inv, "--state", filepath.Join(r.dir, "state.db"),
		"--report", runJSON, "--report-html", runHTML, "--cutover-exec", "true", "--skip-preflight")
	if code != exitPartial {
		t.Fatalf("apply with one failing mailbox: exit %d, want %d\n%s\n%s", code, exitPartial, stdout, stderr)
	}
	again := filepath.Join(r.dir, "again.html")
	if code, stdout, stderr = runCLI(t, nil, "report", runJSON, "--html", again); code != exitOK {
		t.Fatalf("report --html: exit %d\n%s\n%s", code, stdout, stderr)
	}

	dom := render(t, browser, planHTML, filepath.Join(art, "plan.png"))
	clusters := section(t, dom, "clusters")
	// Three clusters, a before and an after bar for load and for storage.
	if n := count(clusters, `<rect[^>]*class="bar `); n != 3*4 {
		t.Errorf("plan page: %d cluster bars, want 12", n)
	}
	if n := count(section(t, dom, "moves"), `<tr><td>`); n != 5 {
		t.Errorf("plan page: %d move rows, want 5", n)
	}

	f, err := os.Open(runJSON)
	must(t, err)
	doc, err := htmlreport.ReadRunDocument(f)
	f.Close()
	must(t, err)
	for _, page := range []string{runHTML, again} {
		dom := render(t, browser, page, filepath.Join(art, strings.TrimSuffix(filepath.Base(page), ".html")+".png"))
		timeline := section(t, dom, "timeline")
		for _, m := range doc.Moves {
			if !strings.Contains(timeline, ">"+m.Mailbox+"<") {
				t.Errorf("%s: timeline lacks %s", filepath.Base(page), m.Mailbox)
			}
		}
		// The moves that ran went through copying, then on to done; ghost
		// ended failed.
		if n := count(timeline, `class="seg ph-copying"`); n < 4 {
			t.Errorf("%s: %d copying segments, want one per mailbox that copied (4)", filepath.Base(page), n)
		}
		if n := count(timeline, `class="end failed"`); n != 1 {
			t.Errorf("%s: %d failed end marks, want 1 (ghost)", filepath.Base(page), n)
		}
		through := section(t, dom, "throughput")
		if !strings.Contains(through, `data-cluster="alpha"`) || count(through, `class="limit"`) < 2 {
			t.Errorf("%s: throughput lacks the source or a target with its limit", filepath.Base(page))
		}
		if !strings.Contains(section(t, dom, "eta"), `class="planned"`) {
			t.Errorf("%s: the ETA chart lacks the planned line", filepath.Base(page))
		}
		if n := count(section(t, dom, "clusters"), `<rect[^>]*class="bar `); n != 12 {
			t.Errorf("%s: %d cluster bars, want 12", filepath.Base(page), n)
		}
		moves := section(t, dom, "moves")
		bad := regexp.MustCompile(`(?s)<tr class="bad"><td>ghost</td>.*?</tr>`).FindString(moves)
		if bad == "" || !strings.Contains(bad, "failed") || !strings.Contains(strings.ToLower(bad), "login") && !strings.Contains(strings.ToLower(bad), "auth") {
			t.Errorf("%s: ghost's row does not say it failed and why:\n%s", filepath.Base(page), bad)
		}
	}
}
