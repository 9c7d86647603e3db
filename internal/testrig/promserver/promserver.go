// Package promserver runs a real Prometheus server for tests (Debian's
// prometheus package): its own configuration, data directory and loopback
// port, scraping targets the test names, every scrape interval the test
// chooses. Exporter is a tiny target serving one gauge the test sets.
package promserver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"mailferry/internal/testrig/dovecot"
)

// Binary finds the prometheus server binary.
func Binary() (string, error) {
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/prometheus"); err == nil {
		return "/usr/bin/prometheus", nil
	}
	return "", errors.New("prometheus is not installed (Debian package prometheus; scripts/install-deps.sh)")
}

// Require skips the test when Prometheus is not installed, unless the
// environment requires the real-server suites (MAILFERRY_REQUIRE_DOVECOT=1,
// as CI sets): then it fails, so that CI can never pass by skipping.
func Require(t testing.TB) {
	t.Helper()
	if _, err := Binary(); err != nil {
		if os.Getenv(dovecot.RequireEnv) == "1" {
			t.Fatalf("%v, and %s=1 requires it", err, dovecot.RequireEnv)
		}
		t.Skipf("skipping: %v (set %s=1 to fail instead)", err, dovecot.RequireEnv)
	}
}

// Server is a running Prometheus.
type Server struct {
	// URL is the base URL of its HTTP API (http://127.0.0.1:port).
	URL string
	dir string
}

// Start starts Prometheus scraping targets (host:port, path /metrics)
// every interval, and returns once it is ready. The server is stopped and
// its directory removed by t.Cleanup; if the test process dies the kernel
// sends it SIGTERM.
func Start(t testing.TB, interval time.Duration, targets ...string) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, tg := range targets {
		quoted[i] = fmt.Sprintf("%q", tg)
	}
	cfg := fmt.Sprintf("global:\n  scrape_interval: %s\n  scrape_timeout: %s\n  evaluation_interval: %s\n"+
		"scrape_configs:\n  - job_name: test\n    static_configs:\n      - targets: [%s]\n",
		interval, interval/2, interval, strings.Join(quoted, ", "))
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freePort(t)
	logf, err := os.Create(filepath.Join(dir, "prometheus.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start prometheus: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s := &Server{URL: "http://" + addr, dir: dir}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logf.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("prometheus exited at start:\n%s", s.log())
		default:
		}
		if ready(s.URL) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus not ready after 60s:\n%s", s.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "prometheus.log"))
	return string(b)
}

func ready(base string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/-/ready", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// freePort picks a free loopback address for a server that must bind it
// itself.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Exporter serves one gauge on 127.0.0.1 for Prometheus to scrape.
type Exporter struct {
	// Addr is host:port, a Prometheus target.
	Addr  string
	gauge prometheus.Gauge
}

// StartExporter serves the gauge name (initially 0) until the test ends.
func StartExporter(t testing.TB, name string) *Exporter {
	t.Helper()
	reg := prometheus.NewRegistry()
	e := &Exporter{gauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: "The test's storage signal."})}
	reg.MustRegister(e.gauge)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	e.Addr = strings.TrimPrefix(srv.URL, "http://")
	return e
}

// Set changes the gauge's value; Prometheus sees it at its next scrape.
func (e *Exporter) Set(v float64) { e.gauge.Set(v) }
