// Package dovecot starts real, independent Dovecot IMAP servers for tests and
// benchmarks. Each server stands in for one mail cluster: it has its own
// configuration, runtime and state directories, users, master user, log file
// and loopback port, and nothing of the system's Dovecot configuration is
// read.
//
// The helpers take a small TB interface (satisfied by testing.TB) so that a
// benchmark program can use them without the testing package.
package dovecot

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TB is the part of testing.TB the helpers need. testing.TB satisfies it; a
// benchmark program can pass its own implementation.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
}

// RequireEnv is the environment variable that turns a missing Dovecot from a
// skip into a failure (CI sets it so that CI never silently skips).
const RequireEnv = "MAILFERRY_REQUIRE_DOVECOT"

// BinaryEnv optionally names the dovecot binary to run.
const BinaryEnv = "MAILFERRY_DOVECOT"

// Default credentials and folders used when Options leaves them empty.
var (
	DefaultUsers = map[string]string{
		"alice": "alice-pw",
		"bob":   "bob-pw",
		"carol": "carol-pw",
	}
	DefaultMasterUser     = "admin"
	DefaultMasterPassword = "admin-pw"
	DefaultSpecialUse     = map[string]string{
		`\Sent`:    "Sent",
		`\Drafts`:  "Drafts",
		`\Trash`:   "Trash",
		`\Junk`:    "Junk",
		`\Archive`: "Archive",
	}
)

// Options configures one server. The zero value is a plain-text server with
// separator ".", the default users, master user and special-use folders.
type Options struct {
	// Separator is the hierarchy separator: "." (default, Maildir++ layout)
	// or "/" (Maildir with LAYOUT=fs).
	Separator string
	// Users maps user name to password; nil means DefaultUsers.
	Users map[string]string
	// MasterUser and MasterPassword define a Dovecot master user
	// (default "admin"/"admin-pw"). Log in as "alice*admin" with LOGIN, or
	// with SASL PLAIN authzid=alice, authcid=admin.
	MasterUser, MasterPassword string
	// SpecialUse maps a special-use attribute (`\Sent`) to the folder name
	// that carries it. The folders exist and are subscribed for every user
	// (auto = subscribe). nil means DefaultSpecialUse; an empty non-nil map
	// means no special-use folders.
	SpecialUse map[string]string
	// TLS generates a self-signed CA and a server certificate for
	// 127.0.0.1/localhost, offers STARTTLS on Addr and implicit TLS on
	// TLSAddr.
	TLS bool
	// Name labels the server in logs and errors ("src", "dst").
	Name string
	// Extra lines are appended to the generated dovecot.conf, e.g. to hide
	// a capability ("imap_capability = ...") or to limit keywords.
	Extra []string
	// POP3 also serves POP3 (Debian's dovecot-pop3d) on POP3Addr, a
	// second random loopback port, for the same users and master user
	// (STLS offered when TLS). POP3 shows each user's INBOX; its UIDLs
	// follow Dovecot's pop3_uidl_format (default %08Xu%08Xv: UID and
	// UIDVALIDITY), which Extra can set ("pop3_uidl_format = %08Xu").
	POP3 bool
}

// Server is a running Dovecot instance. Its fields are read-only.
type Server struct {
	Name      string
	Addr      string // 127.0.0.1:port, plain IMAP (STARTTLS offered when TLS)
	TLSAddr   string // implicit TLS; "" unless Options.TLS
	POP3Addr  string // 127.0.0.1:port, POP3 (STLS offered when TLS); "" unless Options.POP3
	CAFile    string // PEM of the CA that signed the server certificate; "" unless Options.TLS
	Dir       string // everything of this server lives below Dir
	Separator string

	Users                      map[string]string // user -> password
	MasterUser, MasterPassword string            // log in as MasterLogin(user) with MasterPassword
	SpecialUse                 map[string]string // special-use attribute -> folder name

	extra      []string
	pop3       bool
	pop3Port   int
	logFile    string
	stderrFile string
	cmd        *exec.Cmd
	exited     chan struct{} // closed when the dovecot master has exited
	stopOnce   sync.Once
}

// Binary returns the path of the dovecot binary: $MAILFERRY_DOVECOT,
// /usr/sbin/dovecot, or dovecot on $PATH.
func Binary() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("dovecot binary from $%s: %w", BinaryEnv, err)
		}
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/dovecot"); err == nil {
		return "/usr/sbin/dovecot", nil
	}
	p, err := exec.LookPath("dovecot")
	if err != nil {
		return "", errors.New("dovecot is not installed (not at /usr/sbin/dovecot, not on $PATH; set $" + BinaryEnv + ")")
	}
	return p, nil
}

// Require skips the test when Dovecot is not installed. When the
// environment sets MAILFERRY_REQUIRE_DOVECOT=1 it fails the test instead, so
// that CI can never pass by skipping.
func Require(t testing.TB) {
	t.Helper()
	if _, err := Binary(); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%v, and %s=1 requires it", err, RequireEnv)
		}
		t.Skipf("skipping: %v (set %s=1 to fail instead)", err, RequireEnv)
	}
}

// Start starts a Dovecot server and returns once it answers on its port with
// an IMAP greeting and its authentication process is ready. The server is
// stopped, waited for and its directory removed by t.Cleanup. If the test
// process dies, the kernel sends the server SIGTERM (Pdeathsig), so nothing
// is left running. Start fails the test (with the tail of the Dovecot log)
// if the server cannot be started.
func Start(t TB, opts Options) *Server {
	t.Helper()
	s, err := start(t, opts)
	if err != nil {
		name := opts.Name
		if name == "" {
			name = "dovecot"
		}
		t.Fatalf("start dovecot %q: %v", name, err)
	}
	return s
}

func start(t TB, opts Options) (*Server, error) {
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Name:           opts.Name,
		Separator:      opts.Separator,
		Users:          maps.Clone(opts.Users),
		MasterUser:     opts.MasterUser,
		MasterPassword: opts.MasterPassword,
		SpecialUse:     maps.Clone(opts.SpecialUse),
		extra:          slices.Clone(opts.Extra),
		pop3:           opts.POP3,
	}
	if s.Name == "" {
		s.Name = "dovecot"
	}
	if s.Separator == "" {
		s.Separator = "."
	}
	if s.Separator != "." && s.Separator != "/" {
		return nil, fmt.Errorf("separator %q: want %q or %q", s.Separator, ".", "/")
	}
	if s.Users == nil {
		s.Users = maps.Clone(DefaultUsers)
	}
	if s.MasterUser == "" {
		s.MasterUser, s.MasterPassword = DefaultMasterUser, DefaultMasterPassword
	}
	if s.SpecialUse == nil {
		s.SpecialUse = maps.Clone(DefaultSpecialUse)
	}
	if err := s.validate(); err != nil {
		return nil, err
	}

	sweepStale()
	// The directory is created by hand rather than with t.TempDir: unix
	// socket paths below base_dir must stay under 108 bytes, and when we
	// run as root the unprivileged mail user must be able to traverse it.
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		return nil, err
	}
	s.Dir = dir
	t.Cleanup(func() {
		if err := removeAll(dir); err != nil {
			t.Logf("dovecot %s: remove %s: %v", s.Name, dir, err)
		}
	})

	ids, err := processIdentity()
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return nil, err
	}
	if err := s.writeUsers(ids); err != nil {
		return nil, err
	}
	if opts.TLS {
		if err := writeCerts(dir); err != nil {
			return nil, fmt.Errorf("generate certificates: %w", err)
		}
		s.CAFile = filepath.Join(dir, "ca.pem")
	}
	s.logFile = filepath.Join(dir, "dovecot.log")
	s.stderrFile = filepath.Join(dir, "stderr.log")

	// The port is picked by binding 127.0.0.1:0 and released before
	// Dovecot binds it; another process may take it in between, so retry.
	const attempts = 5
	for attempt := 1; ; attempt++ {
		err := s.launch(bin, ids, opts.TLS)
		if err == nil {
			break
		}
		if errors.Is(err, errAddrInUse) && attempt < attempts {
			t.Logf("dovecot %s: port taken, retrying (%d/%d)", s.Name, attempt, attempts)
			continue
		}
		return nil, fmt.Errorf("%w\n%s", err, s.LogTail(40))
	}
	t.Cleanup(s.Stop)
	return s, nil
}

var (
	userName = regexp.MustCompile(`^[A-Za-z0-9._+@-]+$`)
	atom     = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

func (s *Server) validate() error {
	for u, p := range s.Users {
		if !userName.MatchString(u) {
			return fmt.Errorf("user name %q: use letters, digits and . _ + @ -", u)
		}
		if strings.ContainsAny(p, ":\r\n") {
			return fmt.Errorf("password of %q contains ':' or a line break", u)
		}
	}
	if !userName.MatchString(s.MasterUser) || strings.ContainsAny(s.MasterPassword, ":\r\n") {
		return fmt.Errorf("master user %q or its password is not usable in a passwd-file", s.MasterUser)
	}
	for use, name := range s.SpecialUse {
		if !strings.HasPrefix(use, `\`) || !atom.MatchString(use[1:]) {
			return fmt.Errorf("special-use attribute %q: want e.g. `\\Sent`", use)
		}
		if name == "" || strings.ContainsAny(name, "\"\\\r\n") || strings.Contains(name, s.Separator) {
			return fmt.Errorf("special-use folder name %q is not usable with separator %q", name, s.Separator)
		}
	}
	return nil
}

// identity says which system users the Dovecot processes run as.
type identity struct {
	// user/group names for default_internal_user, default_login_user and
	// default_internal_group ("" leaves Dovecot's default)
	internalUser, loginUser, internalGroup string
	// numeric owner of files the auth process reads (passwd-files)
	internalUID, internalGID int
	// numeric owner of the mail files
	mailUID, mailGID int
	root             bool
}

// processIdentity picks the users Dovecot runs as. As root, Dovecot refuses
// to access mail as uid 0 ("Mail access not allowed for root") and refuses
// to run imap-login as root, so mail is owned by "nobody", the login
// processes run as "dovenull" (or "nobody") and the internal ones (auth,
// anvil) as "dovecot". As any other user, Dovecot runs entirely as that user.
func processIdentity() (identity, error) {
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			return identity{}, fmt.Errorf("current user: %w", err)
		}
		// Dovecot chowns its sockets to default_internal_group: it must be
		// ours.
		g, err := user.LookupGroupId(strconv.Itoa(os.Getegid()))
		if err != nil {
			return identity{}, fmt.Errorf("current group: %w", err)
		}
		return identity{
			internalUser:  u.Username,
			internalGroup: g.Name,
			internalUID:   os.Geteuid(),
			internalGID:   os.Getegid(),
			loginUser:     u.Username,
			mailUID:       os.Geteuid(),
			mailGID:       os.Getegid(),
		}, nil
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		return identity{}, fmt.Errorf("running as root needs a %q user for mail files: %w", "nobody", err)
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	login := "dovenull"
	if _, err := user.Lookup(login); err != nil {
		login = "nobody"
	}
	// Internal processes (auth, anvil...) must not be root either, or they
	// could connect to sockets whose mode forbids it (anvil-auth-penalty).
	internal := "dovecot"
	iu, err := user.Lookup(internal)
	if err != nil {
		return identity{}, fmt.Errorf("running as root needs a %q user for Dovecot's internal processes: %w", internal, err)
	}
	iuid, _ := strconv.Atoi(iu.Uid)
	igid, _ := strconv.Atoi(iu.Gid)
	return identity{
		internalUser: internal,
		internalUID:  iuid,
		internalGID:  igid,
		loginUser:    login,
		mailUID:      uid,
		mailGID:      gid,
		root:         true,
	}, nil
}

func (s *Server) writeUsers(ids identity) error {
	var users, masters bytes.Buffer
	// The mail user (not us, when we are root) must traverse to its home.
	if err := os.Mkdir(filepath.Join(s.Dir, "home"), 0o711); err != nil {
		return err
	}
	for _, u := range slices.Sorted(maps.Keys(s.Users)) {
		home := filepath.Join(s.Dir, "home", u)
		if err := os.Mkdir(home, 0o700); err != nil {
			return err
		}
		if err := os.Chown(home, ids.mailUID, ids.mailGID); err != nil {
			return err
		}
		// name:password:uid:gid:gecos:home:shell:extra — uid and gid come
		// from mail_uid/mail_gid.
		fmt.Fprintf(&users, "%s:{PLAIN}%s::::%s::\n", u, s.Users[u], home)
	}
	fmt.Fprintf(&masters, "%s:{PLAIN}%s\n", s.MasterUser, s.MasterPassword)
	for name, data := range map[string][]byte{"users": users.Bytes(), "masters": masters.Bytes()} {
		path := filepath.Join(s.Dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return err
		}
		// The auth process reads them.
		if err := os.Chown(path, ids.internalUID, ids.internalGID); err != nil {
			return err
		}
	}
	return nil
}

var errAddrInUse = errors.New("address already in use")

// launch writes the configuration for freshly picked ports, starts the
// master and waits until it greets.
func (s *Server) launch(bin string, ids identity, withTLS bool) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	tlsPort := 0
	if withTLS {
		if tlsPort, err = freePort(); err != nil {
			return err
		}
	}
	s.pop3Port = 0
	if s.pop3 {
		if s.pop3Port, err = freePort(); err != nil {
			return err
		}
	}
	conf := filepath.Join(s.Dir, "dovecot.conf")
	if err := os.WriteFile(conf, []byte(s.config(ids, port, tlsPort)), 0o600); err != nil {
		return err
	}
	// A previous attempt's leftovers must not be mistaken for this one's.
	_ = os.Remove(s.logFile)
	stderr, err := os.Create(s.stderrFile)
	if err != nil {
		return err
	}
	defer stderr.Close()

	cmd := exec.Command(bin, "-F", "-c", conf)
	cmd.Dir = s.Dir
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Our own process group, so that Stop can kill every Dovecot
		// process at once if the master does not shut down by itself.
		Setpgid: true,
		// If the test process dies (even by SIGKILL), the kernel tells
		// the master to shut down, and it takes its children with it.
		// Pdeathsig follows the thread that forked; Go only ends threads
		// of goroutines that exit while locked to them.
		Pdeathsig: syscall.SIGTERM,
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	if withTLS {
		s.TLSAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
	}
	if s.pop3 {
		s.POP3Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.pop3Port))
	}

	if err := s.waitReady(30 * time.Second); err != nil {
		s.kill()
		if strings.Contains(s.LogTail(20), "Address already in use") {
			return errAddrInUse
		}
		return fmt.Errorf("%w (after %v)", err, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// waitReady polls the plain port until it greets with the normal greeting.
// Until the auth process is up, Dovecot answers "* OK Waiting for
// authentication process to respond.." and would delay a login.
func (s *Server) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			return fmt.Errorf("dovecot exited during startup: %v", s.cmd.ProcessState)
		default:
		}
		greeting, err := readGreeting(s.Addr)
		switch {
		case err != nil:
			last = err
		case strings.HasPrefix(greeting, "* OK") && !strings.Contains(greeting, "Waiting for authentication"):
			if s.POP3Addr == "" {
				return nil
			}
			// The POP3 port too, when there is one.
			if greeting, err = readGreeting(s.POP3Addr); err == nil && strings.HasPrefix(greeting, "+OK") &&
				!strings.Contains(greeting, "Waiting for authentication") {
				return nil
			}
			last = fmt.Errorf("POP3 on %s: greeting %q, %v", s.POP3Addr, greeting, err)
		default:
			last = fmt.Errorf("greeting %q", greeting)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no IMAP greeting on %s within %v: %v", s.Addr, timeout, last)
}

func readGreeting(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	_, _ = c.Write([]byte("x LOGOUT\r\n"))
	return strings.TrimRight(line, "\r\n"), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a loopback port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Stop shuts the server down and waits for the master to exit. It is
// idempotent and safe to call concurrently; Start registers it with
// t.Cleanup.
func (s *Server) Stop() {
	s.stopOnce.Do(s.kill)
}

// kill stops the master gracefully (SIGTERM: it terminates its children),
// then forcefully (SIGKILL to the whole process group) after a grace period.
func (s *Server) kill() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	pid := s.cmd.Process.Pid
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-s.exited
	}
	// Children that outlived the master (they notice its death on their
	// own, but need not have yet) go too.
	_ = syscall.Kill(-pid, syscall.SIGKILL)
}

const dirPrefix = "mfdc-"

// ownerFile holds the pid of the process that started the server.
const ownerFile = "owner.pid"

// sweepStale removes the directories of servers whose owning process was
// killed before its cleanup ran (the server itself went down with it, by
// Pdeathsig). Errors are ignored: it is housekeeping.
func sweepStale() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		data, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue // not ours, or still being set up
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err == nil && pid > 0 && errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
			_ = os.RemoveAll(dir)
		}
	}
}

// removeAll removes dir, retrying briefly: a just-killed child may still be
// writing into it.
func removeAll(dir string) error {
	var err error
	for range 20 {
		if err = os.RemoveAll(dir); err == nil {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return err
}

// LogTail returns the last n lines of the Dovecot log and of the master's
// stderr (where configuration errors go), for error messages.
func (s *Server) LogTail(n int) string {
	var b strings.Builder
	for _, f := range []string{s.stderrFile, s.logFile} {
		data, err := os.ReadFile(f)
		if err != nil || len(bytes.TrimSpace(data)) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- %s (last %d lines) ---\n%s\n", f, len(lines), strings.Join(lines, "\n"))
	}
	if b.Len() == 0 {
		return "(dovecot log is empty)"
	}
	return b.String()
}

// MasterLogin returns the LOGIN user name that logs in to user's mailbox with
// the master user's password: "alice*admin".
func (s *Server) MasterLogin(user string) string {
	return user + "*" + s.MasterUser
}

// TLSConfig returns a client TLS configuration that trusts the server's CA.
// It returns nil for a server started without TLS.
func (s *Server) TLSConfig() *tls.Config {
	if s.CAFile == "" {
		return nil
	}
	pem, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

func (s *Server) String() string {
	return fmt.Sprintf("dovecot %s at %s (separator %q)", s.Name, s.Addr, s.Separator)
}
