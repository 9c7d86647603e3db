package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
)

// logOutput is what mailferry writes to stderr, the operator's lines:
// warnings, progress lines, phase changes, errors, protocol traces.
//
// On a terminal with --log-format text (the default) commands write to the
// terminal as they always did (the live view needs it). Off a terminal, or
// with --log-format json, every line the commands write becomes a log
// record: in text, the line as written after a timestamp; in json, one
// object a line ({"time","level","msg",...}), the "mailferry: " and
// "warning: " prefixes turned into the level. --log-level drops records
// below it. The structured logger (logger) writes to the same output.
//
// Commands keep writing plain lines to g.stderr, so no command needs to
// know the format; the level of such a line comes from its prefix
// ("mailferry: warning: ..." is a warning).
type logOutput struct {
	raw      io.Writer
	terminal bool

	// format and levelName are the flags' values (checked by configure);
	// before the flags are parsed they hold what newLogOutput read from
	// the arguments, so even an early error is written in the asked format.
	format    string
	levelName string
	level     slog.LevelVar
	now       func() time.Time

	mu    sync.Mutex // serialises writes to raw
	json  slog.Handler
	lines []*lineWriter // to flush at close
	std   *lineWriter   // the commands' stderr, off a terminal
}

// newLogOutput wraps stderr. args are the command line: --log-format and
// --log-level are read from it before cobra parses it, so that an error
// in parsing is already reported in the asked format.
func newLogOutput(stderr io.Writer, args []string) *logOutput {
	lo := &logOutput{raw: stderr, terminal: isTerminal(stderr), format: "text", levelName: "info", now: time.Now}
	if f := scanFlag(args, "log-format"); f == "json" || f == "text" {
		lo.format = f
	}
	if l, ok := parseLevel(scanFlag(args, "log-level")); ok {
		lo.levelName = scanFlag(args, "log-level")
		lo.level.Set(l)
	}
	lo.json = slog.NewJSONHandler(lockedWriter{lo}, &slog.HandlerOptions{Level: &lo.level})
	lo.std = lo.newLineWriter(0, true)
	return lo
}

// scanFlag is the value of --name (as "--name V" or "--name=V") in args, up
// to a "--".
func scanFlag(args []string, name string) string {
	for i, a := range args {
		switch {
		case a == "--":
			return ""
		case a == "--"+name && i+1 < len(args):
			return args[i+1]
		case strings.HasPrefix(a, "--"+name+"="):
			return strings.TrimPrefix(a, "--"+name+"=")
		}
	}
	return ""
}

func parseLevel(s string) (slog.Level, bool) {
	switch strings.ToLower(s) {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn", "warning":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}

// configure checks --log-format and --log-level once cobra parsed them.
// --debug-imap without --log-level (and without --debug-imap-dir) lowers
// the level to debug, where protocol traces are.
func (lo *logOutput) configure(cmd *cobra.Command) error {
	if lo.format != "text" && lo.format != "json" {
		return usageErrorf("--log-format %q: want text or json", lo.format)
	}
	l, ok := parseLevel(lo.levelName)
	if !ok {
		return usageErrorf("--log-level %q: want debug, info, warn or error", lo.levelName)
	}
	if f := cmd.Flags().Lookup("debug-imap"); f != nil && f.Value.String() == "true" && !cmd.Flags().Changed("log-level") {
		if d := cmd.Flags().Lookup("debug-imap-dir"); d == nil || d.Value.String() == "" {
			l = slog.LevelDebug
		}
	}
	lo.level.Set(l)
	return nil
}

// wrapped reports whether the commands' lines become log records (off a
// terminal, or in json), rather than going to the terminal as they are.
func (lo *logOutput) wrapped() bool { return !lo.terminal || lo.format == "json" }

// writer is the stderr the commands write to.
func (lo *logOutput) writer() io.Writer {
	if !lo.wrapped() {
		return lo.raw
	}
	return lo.std
}

// tracer is the writer of protocol-trace lines: debug records.
func (lo *logOutput) tracer() io.Writer {
	if !lo.wrapped() {
		return levelFilter{lo, lo.raw}
	}
	return lo.newLineWriter(slog.LevelDebug, false)
}

// levelFilter writes to a terminal only what the level lets through (the
// trace lines, at debug).
type levelFilter struct {
	lo *logOutput
	w  io.Writer
}

func (f levelFilter) Write(p []byte) (int, error) {
	if f.lo.level.Level() > slog.LevelDebug {
		return len(p), nil
	}
	return f.w.Write(p)
}

// logger is the structured logger over the same output.
func (lo *logOutput) logger() *slog.Logger { return slog.New(&recordHandler{lo: lo}) }

// close writes what is left of a line without its newline.
func (lo *logOutput) close() {
	lo.mu.Lock()
	lines := lo.lines
	lo.mu.Unlock()
	for _, w := range lines {
		w.flush()
	}
}

// stamp is a timestamp as every line off a terminal starts with: local
// time with its offset, to the millisecond.
func (lo *logOutput) stamp() string { return lo.now().Format("2006-01-02T15:04:05.000Z07:00") }

// emitLine writes one line a command wrote.
func (lo *logOutput) emitLine(level slog.Level, line string) {
	if level < lo.level.Level() {
		return
	}
	if lo.format == "json" {
		msg := strings.TrimPrefix(line, "mailferry: ")
		for _, p := range []string{"warning: ", "error: ", "debug: "} {
			msg = strings.TrimPrefix(msg, p)
		}
		_ = lo.json.Handle(context.Background(), slog.NewRecord(lo.now(), level, msg, 0))
		return
	}
	lo.mu.Lock()
	defer lo.mu.Unlock()
	if lo.wrapped() {
		fmt.Fprintf(lo.raw, "%s %s\n", lo.stamp(), line)
	} else {
		fmt.Fprintf(lo.raw, "%s\n", line)
	}
}

// lineLevel is the level of a line by its prefix: "mailferry: warning: ..."
// (or "mailferry: preflight: warning: ...") is a warning, and so on.
var linePrefixRe = regexp.MustCompile(`^(?:mailferry: )?(?:[a-z-]+: )?(warning|error|debug): `)

func lineLevel(line string) slog.Level {
	if m := linePrefixRe.FindStringSubmatch(line); m != nil {
		l, _ := parseLevel(m[1])
		return l
	}
	return slog.LevelInfo
}

// lineWriter turns what is written to it into lines and each line into a
// record. Safe for concurrent use; a line written in several pieces is
// kept whole as long as no other goroutine writes in between.
type lineWriter struct {
	lo    *logOutput
	level slog.Level
	infer bool // level from each line's prefix (lineLevel)

	mu  sync.Mutex
	buf []byte
}

func (lo *logOutput) newLineWriter(level slog.Level, infer bool) *lineWriter {
	w := &lineWriter{lo: lo, level: level, infer: infer}
	lo.mu.Lock()
	lo.lines = append(lo.lines, w)
	lo.mu.Unlock()
	return w
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(string(bytes.TrimRight(w.buf[:i], "\r")))
		w.buf = w.buf[i+1:]
	}
	return len(p), nil
}

func (w *lineWriter) emit(line string) {
	level := w.level
	if w.infer {
		level = lineLevel(line)
	}
	w.lo.emitLine(level, line)
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(string(w.buf))
		w.buf = nil
	}
}

// lockedWriter writes to the raw output under the output's lock.
type lockedWriter struct{ lo *logOutput }

func (l lockedWriter) Write(p []byte) (int, error) {
	l.lo.mu.Lock()
	defer l.lo.mu.Unlock()
	return l.lo.raw.Write(p)
}

// recordHandler is the slog.Handler of logger: in json the standard JSON
// handler; in text a line as the commands write them, "mailferry: " and
// the level ("warning: ", "error: ", "debug: ") before the message, its
// attributes as key=value after it, a timestamp first off a terminal.
type recordHandler struct {
	lo     *logOutput
	attrs  []slog.Attr
	groups []string
}

func (h *recordHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.lo.level.Level() }

func (h *recordHandler) Handle(ctx context.Context, r slog.Record) error {
	if h.lo.format == "json" {
		var jh slog.Handler = h.lo.json
		for _, g := range h.groups {
			jh = jh.WithGroup(g)
		}
		if len(h.attrs) > 0 {
			jh = jh.WithAttrs(h.attrs)
		}
		return jh.Handle(ctx, r)
	}
	var b strings.Builder
	b.WriteString("mailferry: ")
	switch {
	case r.Level >= slog.LevelError:
		b.WriteString("error: ")
	case r.Level >= slog.LevelWarn:
		b.WriteString("warning: ")
	case r.Level < slog.LevelInfo:
		b.WriteString("debug: ")
	}
	b.WriteString(r.Message)
	prefix := strings.Join(h.groups, ".")
	writeAttr := func(a slog.Attr) {
		key := a.Key
		if prefix != "" {
			key = prefix + "." + key
		}
		v := a.Value.Resolve().String()
		if strings.ContainsAny(v, " \t\"=") || v == "" {
			v = strconv.Quote(v)
		}
		fmt.Fprintf(&b, " %s=%s", key, v)
	}
	for _, a := range h.attrs {
		writeAttr(a)
	}
	r.Attrs(func(a slog.Attr) bool { writeAttr(a); return true })
	for _, line := range strings.Split(b.String(), "\n") {
		h.lo.emitLine(r.Level, line)
	}
	return nil
}

func (h *recordHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &c
}

func (h *recordHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.groups = append(append([]string(nil), h.groups...), name)
	return &c
}

// traceFiles keeps one protocol-trace file per mailbox (--debug-imap-dir):
// DIR/MAILBOX.imap.log, mode 0600 (a trace holds the mail itself),
// appended to, each line with its time and side. Credentials are redacted
// before any byte reaches it (imapconn's Redactor wraps Config.Debug).
type traceFiles struct {
	dir   string
	mu    sync.Mutex
	files map[string]*os.File
	err   error
}

func newTraceFiles(dir string) (*traceFiles, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, usageErrorf("--debug-imap-dir: %v", err)
	}
	return &traceFiles{dir: dir, files: map[string]*os.File{}}, nil
}

// traceFileName is a mailbox's trace file name: characters other than
// letters, digits, '@', '.', '-', '_' and '+' become '_'.
var unsafeFileChars = regexp.MustCompile(`[^A-Za-z0-9@._+-]`)

func traceFileName(mailbox string) string {
	name := unsafeFileChars.ReplaceAllString(mailbox, "_")
	if strings.Trim(name, ".") == "" {
		name = "_" + name
	}
	return name + ".imap.log"
}

// writer is the trace writer of one side of a mailbox's connections.
func (t *traceFiles) writer(mailbox, side string) io.Writer {
	t.mu.Lock()
	defer t.mu.Unlock()
	f, ok := t.files[mailbox]
	if !ok {
		var err error
		f, err = os.OpenFile(filepath.Join(t.dir, traceFileName(mailbox)), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			if t.err == nil {
				t.err = fmt.Errorf("--debug-imap-dir: %w", err)
			}
			return io.Discard
		}
		t.files[mailbox] = f
	}
	return &stampedWriter{w: f, prefix: side + ": "}
}

// close closes the files, returning the first error opening one.
func (t *traceFiles) close() error {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, f := range t.files {
		f.Close()
	}
	return t.err
}

// stampedWriter writes each line after its time and a prefix. Writes of
// every connection are serialised by traceMu.
type stampedWriter struct {
	w      io.Writer
	prefix string
	buf    []byte
}

func (s *stampedWriter) Write(p []byte) (int, error) {
	traceMu.Lock()
	defer traceMu.Unlock()
	s.buf = append(s.buf, p...)
	for {
		i := bytes.IndexByte(s.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		if _, err := fmt.Fprintf(s.w, "%s %s%s\n", time.Now().Format("2006-01-02T15:04:05.000Z07:00"), s.prefix, bytes.TrimRight(s.buf[:i], "\r")); err != nil {
			return len(p), err
		}
		s.buf = s.buf[i+1:]
	}
}
