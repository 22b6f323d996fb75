package pgtest

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// query returns the single text value of sql on a new connection to dsn.
func query(t *testing.T, dsn, sql string, args ...any) string {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect %s: %v", dsn, err)
	}
	defer conn.Close(context.Background())
	var v string
	if err := conn.QueryRow(ctx, sql, args...).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func TestStart(t *testing.T) {
	t.Parallel()
	t0 := time.Now()
	s := New(t, Options{})
	t.Logf("start took %s", time.Since(t0))

	if got, want := s.DSN(""), fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", s.Port()); got != want {
		t.Errorf("DSN(\"\") = %q, want %q", got, want)
	}
	if got, want := s.DSN("app"), fmt.Sprintf("postgres://postgres@127.0.0.1:%d/app?sslmode=disable", s.Port()); got != want {
		t.Errorf("DSN(\"app\") = %q, want %q", got, want)
	}
	if s.Host != "127.0.0.1" {
		t.Errorf("Host = %q, want 127.0.0.1", s.Host)
	}

	settings := map[string]string{
		"wal_level":               "logical",
		"max_wal_senders":         "20",
		"max_replication_slots":   "20",
		"fsync":                   "off",
		"synchronous_commit":      "on",
		"full_page_writes":        "off",
		"shared_buffers":          "128MB",
		"max_connections":         "100",
		"log_min_messages":        "warning",
		"logging_collector":       "off",
		"TimeZone":                "UTC",
		"listen_addresses":        "127.0.0.1",
		"port":                    fmt.Sprint(s.Port()),
		"unix_socket_directories": s.SocketDir,
		"server_encoding":         "UTF8",
		"ssl":                     "off",
	}
	for name, want := range settings {
		if got := query(t, s.DSN(""), "SHOW "+name); got != want {
			t.Errorf("SHOW %s = %q, want %q", name, got, want)
		}
	}
	// Not SHOW lc_collate: PostgreSQL 16 removed that setting.
	if got := query(t, s.DSN(""), "SELECT datcollate::text FROM pg_database WHERE datname = current_database()"); got != "C" {
		t.Errorf("datcollate = %q, want C", got)
	}

	if got, want := query(t, s.DSN(""), "SELECT (current_setting('server_version_num')::int / 10000)::text"), fmt.Sprint(s.Version()); got != want {
		t.Errorf("server major version %s, Version() = %s", got, want)
	}
	if s.Version() < 10 {
		t.Errorf("Version() = %d", s.Version())
	}
	if s.PID() <= 0 {
		t.Errorf("PID() = %d", s.PID())
	}
	if got := query(t, s.DSN(""), "SELECT current_user"); got != "postgres" {
		t.Errorf("current_user = %q, want postgres", got)
	}

	fi, err := os.Stat(s.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v, want 0700", fi.Mode().Perm())
	}
	if os.Geteuid() == 0 {
		if uid := fi.Sys().(*syscall.Stat_t).Uid; uid == 0 {
			t.Errorf("data dir owned by root")
		}
	}
	if len(s.SocketDir)+len("/.s.PGSQL.65535") > maxSocketPath {
		t.Errorf("socket dir %q too long", s.SocketDir)
	}

	ctx := t.Context()
	if err := s.Exec(ctx, "SELECT pg_create_logical_replication_slot('s', 'pgoutput')"); err != nil {
		t.Fatal(err)
	}
	if got := query(t, s.DSN(""), "SELECT plugin || '/' || slot_type FROM pg_replication_slots WHERE slot_name = 's'"); got != "pgoutput/logical" {
		t.Errorf("slot s = %q, want pgoutput/logical", got)
	}
	if err := s.Exec(ctx, "CREATE TABLE t (id int); INSERT INTO t VALUES (1), (2)"); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "INSERT INTO t VALUES ($1)", 3); err != nil {
		t.Fatal(err)
	}
	if got := query(t, s.DSN(""), "SELECT string_agg(id::text, ',' ORDER BY id) FROM t"); got != "1,2,3" {
		t.Errorf("t = %q, want 1,2,3", got)
	}

	err = s.Exec(ctx, "SELECT 1/0")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "22012" {
		t.Fatalf("Exec(1/0) = %v, want SQLSTATE 22012", err)
	}
	if tail := s.LogTail(5); !strings.Contains(tail, "ERROR:  division by zero") {
		t.Errorf("LogTail(5) = %q, want it to hold the division by zero", tail)
	}
	if got := strings.Count(s.LogTail(1), "\n"); got != 0 {
		t.Errorf("LogTail(1) has %d newlines", got)
	}
	if got := s.LogTail(0); got != "" {
		t.Errorf("LogTail(0) = %q", got)
	}

	// The replication DSN opens a walsender.
	cfg, err := pgconn.ParseConfig(s.ReplicationDSN(""))
	if err != nil {
		t.Fatal(err)
	}
	rc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	res, err := rc.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll()
	rc.Close(ctx)
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 {
		t.Fatalf("IDENTIFY_SYSTEM = %v, %v", res, err)
	}
}

func TestRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := New(t, Options{})
	if err := s.Exec(ctx, "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')"); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "SELECT pg_create_logical_replication_slot('s', 'pgoutput')"); err != nil {
		t.Fatal(err)
	}
	port, pid, dataDir := s.Port(), s.PID(), s.DataDir

	// The accessors may be used while the server restarts.
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_, _, _ = s.PID(), s.LogTail(1), s.DSN("")
			time.Sleep(time.Millisecond)
		}
	}()
	t0 := time.Now()
	err := s.Restart(ctx)
	close(stop)
	<-polled
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("restart took %s", time.Since(t0))

	if s.Port() != port {
		t.Errorf("port %d after restart, was %d", s.Port(), port)
	}
	if s.DataDir != dataDir {
		t.Errorf("data dir %q after restart, was %q", s.DataDir, dataDir)
	}
	if s.PID() == pid || s.PID() <= 0 {
		t.Errorf("PID %d after restart, was %d", s.PID(), pid)
	}
	if got := query(t, s.DSN(""), "SELECT string_agg(v, ',') FROM t"); got != "kept" {
		t.Errorf("t = %q after restart, want kept", got)
	}
	if got := query(t, s.DSN(""), "SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = 's' AND plugin = 'pgoutput'"); got != "1" {
		t.Errorf("%s slots named s after restart, want 1", got)
	}
	// A fast shutdown is clean: no crash recovery.
	log := s.LogTail(100)
	if got := strings.Count(log, "database system was shut down at"); got != 2 {
		t.Errorf("server log has %d clean startups, want 2:\n%s", got, log)
	}
	if strings.Contains(log, "automatic recovery in progress") {
		t.Errorf("server log shows crash recovery after a fast restart:\n%s", log)
	}
}

func TestKillRestart(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := New(t, Options{})
	if err := s.Exec(ctx, "CREATE TABLE t (v text); INSERT INTO t VALUES ('committed')"); err != nil {
		t.Fatal(err)
	}
	if err := s.Exec(ctx, "SELECT pg_create_logical_replication_slot('s', 'pgoutput')"); err != nil {
		t.Fatal(err)
	}
	pid := s.PID()
	// An open session must not keep the crashed server's shared memory.
	idle, err := pgx.Connect(ctx, s.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close(context.Background())

	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if s.PID() != 0 {
		t.Errorf("PID() = %d after Kill, want 0", s.PID())
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("postmaster %d after Kill: kill -0 = %v, want ESRCH", pid, err)
	}
	if pids := procsInDir(s.DataDir); len(pids) != 0 {
		t.Errorf("processes %v still run in the data dir after Kill", pids)
	}
	if _, err := os.Stat(filepath.Join(s.DataDir, "PG_VERSION")); err != nil {
		t.Errorf("data dir gone after Kill: %v", err)
	}
	if err := s.Exec(ctx, "SELECT 1"); err == nil {
		t.Error("Exec succeeded on a killed server")
	}
	if err := s.Kill(); err == nil {
		t.Error("second Kill succeeded")
	}

	t0 := time.Now()
	if err := s.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("restart after kill (crash recovery) took %s", time.Since(t0))
	if log := s.LogTail(100); !strings.Contains(log, "database system was interrupted") || !strings.Contains(log, "automatic recovery in progress") {
		t.Errorf("server log shows no crash recovery after Kill:\n%s", log)
	}
	if got := query(t, s.DSN(""), "SELECT string_agg(v, ',') FROM t"); got != "committed" {
		t.Errorf("t = %q after crash, want committed", got)
	}
	if got := query(t, s.DSN(""), "SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = 's'"); got != "1" {
		t.Errorf("%s slots named s after crash, want 1", got)
	}
}

func TestStopRemovesDataDir(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := Start(ctx, Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	pid := s.PID()
	root := filepath.Dir(s.DataDir)
	t0 := time.Now()
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop took %s", time.Since(t0))
	for _, dir := range []string{s.DataDir, root} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat %s after Stop: %v, want not exist", dir, err)
		}
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("postmaster %d after Stop: kill -0 = %v, want ESRCH", pid, err)
	}
	if s.PID() != 0 {
		t.Errorf("PID() = %d after Stop", s.PID())
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop = %v, want nil", err)
	}
	if err := s.Restart(ctx); err == nil {
		t.Error("Restart after Stop succeeded")
	}
	if got := s.LogTail(10); got != "" {
		t.Errorf("LogTail after Stop = %q", got)
	}
}

func TestStopAfterKill(t *testing.T) {
	t.Parallel()
	s, err := Start(t.Context(), Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stat data dir after Stop: %v, want not exist", err)
	}
}

func TestTwoServers(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	type result struct {
		s   *Server
		err error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			s, err := Start(ctx, Options{})
			results <- result{s, err}
		}()
	}
	var servers []*Server
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Error(r.err)
			continue
		}
		servers = append(servers, r.s)
		t.Cleanup(func() {
			if err := r.s.Stop(); err != nil {
				t.Error(err)
			}
		})
	}
	if t.Failed() {
		t.FailNow()
	}
	a, b := servers[0], servers[1]
	if a.Port() == b.Port() {
		t.Errorf("both servers on port %d", a.Port())
	}
	if a.DataDir == b.DataDir {
		t.Errorf("both servers in %s", a.DataDir)
	}
	if err := a.Exec(ctx, "CREATE TABLE only_in_a (id int)"); err != nil {
		t.Fatal(err)
	}
	if got := query(t, a.DSN(""), "SELECT count(*)::text FROM pg_tables WHERE tablename = 'only_in_a'"); got != "1" {
		t.Errorf("a has %s tables only_in_a, want 1", got)
	}
	if got := query(t, b.DSN(""), "SELECT count(*)::text FROM pg_tables WHERE tablename = 'only_in_a'"); got != "0" {
		t.Errorf("b has %s tables only_in_a, want 0", got)
	}
	if got := query(t, b.DSN(""), "SHOW port"); got != fmt.Sprint(b.Port()) {
		t.Errorf("b: SHOW port = %s, want %d", got, b.Port())
	}
}

func TestConf(t *testing.T) {
	t.Parallel()
	s := New(t, Options{Conf: map[string]string{
		"wal_sender_timeout": "5s",
		"max_connections":    "42",
		"TimeZone":           "Europe/Paris",
		"application_name":   "it's quoted",
	}})
	want := map[string]string{
		"wal_sender_timeout": "5s",
		"max_connections":    "42",
		"TimeZone":           "Europe/Paris",
		"application_name":   "it's quoted",
		"wal_level":          "logical",
	}
	for name, w := range want {
		if got := query(t, s.DSN(""), "SHOW "+name); got != w {
			t.Errorf("SHOW %s = %q, want %q", name, got, w)
		}
	}
}

func TestStartFailureReportsLog(t *testing.T) {
	t.Parallel()
	_, err := Start(t.Context(), Options{Conf: map[string]string{"shared_buffers": "lots"}})
	if err == nil {
		t.Fatal("Start with shared_buffers=lots succeeded")
	}
	for _, want := range []string{"start postgres: ", `invalid value for parameter "shared_buffers": "lots"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestBadOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"conf name", Options{Conf: map[string]string{"a b": "1"}}, `bad setting name "a b"`},
		{"conf value", Options{Conf: map[string]string{"work_mem": "1\nfsync=on"}}, "spans lines"},
		{"conf duplicate", Options{Conf: map[string]string{"Port": "1", "port": "2"}}, "set twice"},
		{"hba line", Options{HBA: []string{"local all all trust\nhost"}}, "spans lines"},
		{"ssl key", Options{SSL: &SSLFiles{CertFile: "c"}}, "CertFile and KeyFile"},
		{"bin dir", Options{BinDir: "/nonexistent"}, "postgresql binaries not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Start(t.Context(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Start = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestSSL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	caFile, certFile, keyFile := writeCerts(t, dir)
	s := New(t, Options{
		SSL: &SSLFiles{CertFile: certFile, KeyFile: keyFile, CAFile: caFile},
		// Plain TCP is refused, so only TLS gets in.
		HBA: []string{"hostnossl all all 127.0.0.1/32 reject"},
	})

	dsn := strings.Replace(s.DSN(""), "sslmode=disable",
		"sslmode=verify-full&sslrootcert="+url.QueryEscape(caFile), 1)
	for name, want := range map[string]string{
		"ssl": "on", "ssl_cert_file": "server.crt", "ssl_key_file": "server.key", "ssl_ca_file": "root.crt",
	} {
		if got := query(t, dsn, "SELECT current_setting($1)", name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}

	fi, err := os.Stat(filepath.Join(s.DataDir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("server.key mode %v, want 0600", fi.Mode().Perm())
	}

	for _, host := range []string{"127.0.0.1", "localhost"} {
		hdsn := strings.Replace(dsn, "@127.0.0.1:", "@"+host+":", 1)
		if got := query(t, hdsn, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()"); got != "true" {
			t.Errorf("%s: pg_stat_ssl.ssl = %q, want true", host, got)
		}
	}

	// The extra HBA line comes first: plain TCP is rejected.
	_, err = pgx.Connect(t.Context(), s.DSN(""))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28000" {
		t.Errorf("sslmode=disable connect = %v, want SQLSTATE 28000", err)
	}
	// Exec uses the Unix socket, which the HBA line does not restrict.
	if err := s.Exec(t.Context(), "SELECT 1"); err != nil {
		t.Errorf("Exec = %v", err)
	}
	// A client that does not trust the CA is refused.
	other, _, _ := writeCerts(t, t.TempDir())
	bad := strings.Replace(s.DSN(""), "sslmode=disable", "sslmode=verify-full&sslrootcert="+url.QueryEscape(other), 1)
	if conn, err := pgx.Connect(t.Context(), bad); err == nil {
		conn.Close(t.Context())
		t.Error("verify-full with the wrong CA succeeded")
	}
}

// writeCerts writes a new CA and a server certificate for 127.0.0.1 and
// localhost signed by it into dir.
func writeCerts(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pgtest CA"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.IPv6loopback},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.crt", "CERTIFICATE", caDER), write("server.crt", "CERTIFICATE", der), write("server.key", "PRIVATE KEY", keyDER)
}

func TestParseVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want int
	}{
		{"postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)", 15},
		{"postgres (PostgreSQL) 17.2", 17},
		{"postgres (PostgreSQL) 18beta1", 18},
		{"postgres (PostgreSQL) 9.6.24", 9},
		{"postgres (PostgreSQL) 16.4 (Homebrew)\n", 16},
	}
	for _, tt := range tests {
		got, err := parseVersion(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseVersion(%q) = %d, %v, want %d", tt.in, got, err, tt.want)
		}
	}
	if _, err := parseVersion("postgres 15"); err == nil {
		t.Error(`parseVersion("postgres 15") succeeded`)
	}
}

func TestFindBinDir(t *testing.T) {
	// Not parallel: sets the environment.
	def, err := FindBinDir("")
	if err != nil {
		t.Skip(err)
	}
	if got, err := FindBinDir(def); err != nil || got != def {
		t.Errorf("FindBinDir(%q) = %q, %v", def, got, err)
	}

	t.Setenv(EnvBinDir, def)
	if got, err := FindBinDir(""); err != nil || got != def {
		t.Errorf("with $%s=%s: FindBinDir = %q, %v", EnvBinDir, def, got, err)
	}

	t.Setenv(EnvBinDir, t.TempDir())
	_, err = FindBinDir("")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "$"+EnvBinDir) {
		t.Errorf("with an empty $%s: FindBinDir error = %v, want ErrNotFound naming the variable", EnvBinDir, err)
	}
	_, err = FindBinDir(t.TempDir())
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("FindBinDir(empty dir) error = %v, want ErrNotFound", err)
	}
}

func TestSweepStale(t *testing.T) {
	t.Parallel()
	// A directory whose owner is this (live) process is kept; one whose
	// owner died is removed.
	live, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(live)
	if err := os.WriteFile(filepath.Join(live, ownerName), []byte(ownerLine()), 0o644); err != nil {
		t.Fatal(err)
	}
	dead, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dead)
	pid := os.Getpid()
	st, err := procStartTime(pid)
	if err != nil {
		t.Skip(err)
	}
	if err := os.WriteFile(filepath.Join(dead, ownerName), fmt.Appendf(nil, "%d %d\n", pid, st+1), 0o644); err != nil {
		t.Fatal(err)
	}
	unknown, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(unknown)

	if stale(live) {
		t.Error("live owner's dir is stale")
	}
	if stale(unknown) {
		t.Error("dir without owner file is stale")
	}
	if !stale(dead) {
		t.Error("dead owner's dir is not stale")
	}
}

// envHelper makes the test binary act as a process that starts a server,
// prints "PID DATADIR" and waits to be killed.
const envHelper = "PGTEST_HELPER_PROCESS"

func TestHelperProcess(t *testing.T) {
	if os.Getenv(envHelper) != "1" {
		t.Skip("helper for TestParentDeath")
	}
	s, err := Start(context.Background(), Options{})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Printf("%d %s\n", s.PID(), s.DataDir)
	time.Sleep(time.Minute)
	os.Exit(2)
}

// dead reports whether pid has exited (gone or a zombie).
func dead(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || strings.HasPrefix(string(b[i+1:]), " Z")
}

func TestParentDeath(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts a helper process")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envHelper+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("read helper: %v", err)
	}
	var pid int
	var dataDir string
	if _, err := fmt.Sscanf(line, "%d %s", &pid, &dataDir); err != nil {
		_ = cmd.Process.Kill()
		t.Fatalf("helper said %q: %v", line, err)
	}
	root := filepath.Dir(dataDir)
	t.Cleanup(func() { os.RemoveAll(root) })

	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	deadline := time.Now().Add(10 * time.Second)
	for !dead(pid) || len(procsInDir(dataDir)) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("postmaster %d (or its backends %v) still running 10s after its parent was killed", pid, procsInDir(dataDir))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !stale(root) {
		t.Errorf("%s of the killed helper is not stale", root)
	}
}

func TestTempDirFallbacks(t *testing.T) {
	// Not parallel: sets TMPDIR.
	if testing.Short() {
		t.Skip("starts servers")
	}
	t.Run("long path moves the socket", func(t *testing.T) {
		base, err := os.MkdirTemp("", "pgtest-long-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(base) })
		long := filepath.Join(base, strings.Repeat("d", 100))
		if err := os.MkdirAll(long, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{base, long} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		t.Setenv("TMPDIR", long)
		s, err := Start(t.Context(), Options{Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(s.DataDir, long+"/") {
			t.Errorf("data dir %s not under TMPDIR", s.DataDir)
		}
		if !strings.HasPrefix(s.SocketDir, "/tmp/pgs-") {
			t.Errorf("socket dir = %s, want /tmp/pgs-*", s.SocketDir)
		}
		if err := s.Exec(t.Context(), "SELECT 1"); err != nil {
			t.Errorf("Exec over the socket: %v", err)
		}
		if got := query(t, s.DSN(""), "SHOW unix_socket_directories"); got != s.SocketDir {
			t.Errorf("unix_socket_directories = %q, want %q", got, s.SocketDir)
		}
		if err := s.Stop(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(s.SocketDir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket dir after Stop: %v, want not exist", err)
		}
	})
	t.Run("unreachable TMPDIR falls back to /tmp", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("only as root, when postgres runs as another user")
		}
		closed, err := os.MkdirTemp("", "pgtest-closed-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(closed) })
		if err := os.Chmod(closed, 0o700); err != nil {
			t.Fatal(err)
		}
		t.Setenv("TMPDIR", closed)
		s, err := Start(t.Context(), Options{Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop()
		if got := filepath.Dir(filepath.Dir(s.DataDir)); got != "/tmp" {
			t.Errorf("data dir %s, want it under /tmp", s.DataDir)
		}
	})
}
