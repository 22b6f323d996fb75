package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// relay forwards TCP connections to target. freeze black-holes every
// connection open at that moment (nothing is forwarded any more, in either
// direction, and no socket is closed: a network that drops packets);
// connections accepted later are forwarded normally.
type relay struct {
	ln     net.Listener
	target string

	mu       sync.Mutex
	pairs    []*relayPair
	accepted int
}

type relayPair struct {
	client, server net.Conn
	frozen         chan struct{}
	freezeOnce     sync.Once
}

func (p *relayPair) freeze() { p.freezeOnce.Do(func() { close(p.frozen) }) }

func (p *relayPair) isFrozen() bool {
	select {
	case <-p.frozen:
		return true
	default:
		return false
	}
}

func startRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln, target: target}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			p := &relayPair{client: c, server: s, frozen: make(chan struct{})}
			r.mu.Lock()
			r.pairs = append(r.pairs, p)
			r.accepted++
			r.mu.Unlock()
			go p.pipe(s, c)
			go p.pipe(c, s)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, p := range r.pairs {
			p.client.Close()
			p.server.Close()
		}
	})
	return r
}

// pipe copies src to dst until either closes; once frozen it forwards
// nothing and leaves both sockets open.
func (p *relayPair) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if p.isFrozen() {
			return // the bytes read are dropped; the sockets stay open
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				src.Close()
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

// freezeAll black-holes every open connection and returns how many.
func (r *relay) freezeAll() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.pairs {
		p.freeze()
	}
	return len(r.pairs)
}

func (r *relay) addr() string { return r.ln.Addr().String() }

// mute is a listener that accepts TCP connections and never answers.
type mute struct {
	ln       net.Listener
	mu       sync.Mutex
	accepted []net.Conn
}

func startMute(t *testing.T) *mute {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &mute{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			m.mu.Lock()
			m.accepted = append(m.accepted, c)
			m.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, c := range m.accepted {
			c.Close()
		}
	})
	return m
}

func (m *mute) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.accepted)
}

// writeHangConfig writes a config streaming analytics.user_events from dsn,
// with sourceExtra appended under source: and the given shutdown_timeout.
func (e *env) writeHangConfig(dsn, sourceExtra, shutdown string) string {
	e.t.Helper()
	cfg := fmt.Sprintf(`source:
  dsn: %q
%s
onesignal:
  app_id: %q
  api_key: "${TEST_ONESIGNAL_KEY}"
  url: %q
  timeout: 60s
sink:
  linger: 5ms
  max_backoff: 2s
shutdown_timeout: %s
server:
  listen: "127.0.0.1:0"
log:
  level: info
  format: json
tables:
  - table: analytics.user_events
    name: event_name
    external_id: user_id
    timestamp: event_timestamp
    properties: event_data
`, dsn, sourceExtra, e.fake.AppID(), e.fake.URL(), shutdown)
	path := filepath.Join(e.dir, "pgsignal.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// newFakeOnlyEnv is an env with a fake OneSignal and no PostgreSQL.
func newFakeOnlyEnv(t *testing.T) *env {
	t.Helper()
	fake, err := onesignaltest.Start(onesignaltest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	return &env{t: t, fake: fake, dir: t.TempDir()}
}

// waitExit waits up to d for p to exit and returns how long it took.
func (p *proc) waitExit(t *testing.T, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-p.done:
		return time.Since(start)
	case <-time.After(d):
		t.Fatalf("pgsignal still running %s later; log:\n%s", d, p.tail())
		return 0
	}
}

func (p *proc) logText(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// metricsURL is the /metrics address the process logged.
func (p *proc) metricsURL(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		f, err := os.Open(p.log)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			var l struct {
				Msg    string `json:"msg"`
				Listen string `json:"listen"`
			}
			if json.Unmarshal(sc.Bytes(), &l) == nil && strings.HasPrefix(l.Msg, "serving /metrics") && l.Listen != "" {
				f.Close()
				return "http://" + l.Listen + "/metrics"
			}
		}
		f.Close()
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no metrics address in the log:\n%s", p.tail())
	return ""
}

// metric reads one unlabelled metric from the process's /metrics.
func metric(t *testing.T, url, name string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("metric %s not found", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestProcStartupHangObeysSIGTERM: a database host that accepts TCP and
// never answers (connect_timeout 60 in the dsn, so the connect timeout
// does not end it first): SIGTERM stops `pgsignal run` within
// shutdown_timeout, with a message saying start-up was interrupted.
func TestProcStartupHangObeysSIGTERM(t *testing.T) {
	e := newFakeOnlyEnv(t)
	m := startMute(t)
	dsn := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable&connect_timeout=60", m.ln.Addr())
	p := e.startProc(e.writeHangConfig(dsn, "", "2s"))
	deadline := time.Now().Add(30 * time.Second)
	for m.count() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pgsignal never connected; log:\n%s", p.tail())
		}
		select {
		case <-p.done:
			t.Fatalf("pgsignal exited before connecting: %v\n%s", p.err, p.tail())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	took := p.waitExit(t, 30*time.Second)
	t.Logf("figures: exited %s after SIGTERM (shutdown_timeout 2s, connect_timeout 60s)", took.Round(10*time.Millisecond))
	if took > 6*time.Second {
		t.Fatalf("exit took %s after SIGTERM, want about shutdown_timeout (2s)", took)
	}
	if p.err != nil {
		t.Fatalf("exit status %v, want 0 (a requested stop); log:\n%s", p.err, p.tail())
	}
	if log := p.logText(t); !strings.Contains(log, "stopped during start-up") {
		t.Fatalf("no start-up stop message in the log:\n%s", log)
	}
}

// TestProcConnectTimeoutNamesHost: the same mute host without a signal and
// without connect_timeout in the dsn: `pgsignal run` fails after the
// default connect timeout (10 s) with an error naming the host and the
// setting.
func TestProcConnectTimeoutNamesHost(t *testing.T) {
	e := newFakeOnlyEnv(t)
	m := startMute(t)
	dsn := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", m.ln.Addr())
	p := e.startProc(e.writeHangConfig(dsn, "", "2s"))
	took := p.waitExit(t, 40*time.Second)
	t.Logf("figures: failed %s after start (default connect timeout 10s)", took.Round(10*time.Millisecond))
	var exit *exec.ExitError
	if !errors.As(p.err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("exit %v, want status 1; log:\n%s", p.err, p.tail())
	}
	if took < 9*time.Second {
		t.Fatalf("failed after %s, before the 10s connect timeout; log:\n%s", took, p.tail())
	}
	log := p.logText(t)
	for _, want := range []string{m.ln.Addr().String(), "connect timeout", "connect_timeout"} {
		if !strings.Contains(log, want) {
			t.Fatalf("the error does not say %q:\n%s", want, log)
		}
	}
}

// TestProcReplicationBlackHole: every connection through a relay goes
// silent (no FIN, no RST) while pgsignal streams: the replication
// connection is declared dead after source.receive_timeout, rebuilt
// through the relay (new connections pass), and every row inserted before,
// during and after is delivered exactly once. An idle healthy connection
// longer than the receive timeout is not declared dead (pgsignal pings the
// server).
func TestProcReplicationBlackHole(t *testing.T) {
	e := newEnv(t, pgtest.Options{Conf: map[string]string{"wal_sender_timeout": "5s"}}, onesignaltest.Options{})
	r := startRelay(t, net.JoinHostPort(e.pg.Host, strconv.Itoa(e.pg.Port())))
	dsn := fmt.Sprintf("postgres://postgres@%s/postgres?sslmode=disable", r.addr())
	p := e.startProc(e.writeHangConfig(dsn, "  receive_timeout: 2s", "30s"))
	e.waitStreaming(p)
	metrics := p.metricsURL(t)

	e.insertRows(0, 10)
	e.waitCount(10, 60*time.Second, p)
	// Idle for three receive timeouts: a healthy connection stays up.
	idleUntil := time.Now().Add(6 * time.Second)
	for time.Now().Before(idleUntil) {
		time.Sleep(100 * time.Millisecond)
	}
	if log := p.logText(t); strings.Contains(log, "presumed dead") {
		t.Fatalf("an idle healthy connection was declared dead:\n%s", p.tail())
	}
	if v := metric(t, metrics, "pgsignal_replication_reconnects_total"); v != 0 {
		t.Fatalf("reconnects %v while idle, want 0", v)
	}

	n := r.freezeAll()
	e.insertRows(10, 10)
	e.waitCount(20, 90*time.Second, p)
	e.insertRows(20, 10)
	e.waitCount(30, 60*time.Second, p)
	log := p.logText(t)
	if !strings.Contains(log, "presumed dead") {
		t.Fatalf("no warning that the connection was presumed dead:\n%s", p.tail())
	}
	reconnects := metric(t, metrics, "pgsignal_replication_reconnects_total")
	connected := metric(t, metrics, "pgsignal_replication_connected")
	r.mu.Lock()
	accepted := r.accepted
	r.mu.Unlock()
	t.Logf("figures: %d connections black-holed, %d accepted by the relay in all, reconnects %v, connected %v",
		n, accepted, reconnects, connected)
	if reconnects < 1 || connected != 1 {
		t.Fatalf("reconnects %v connected %v, want >= 1 and 1", reconnects, connected)
	}
	p.term(t)
	e.checkExactlyOnce(30)
}

// TestProcSIGHUPKeepsRunning: SIGHUP during streaming is logged and
// ignored; later rows are delivered, and SIGTERM drains and exits 0.
func TestProcSIGHUPKeepsRunning(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	p := e.startProc(e.writeConfig("full", ""))
	e.waitStreaming(p)
	e.insertRows(0, 5)
	e.waitCount(5, 60*time.Second, p)
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	e.insertRows(5, 5)
	e.waitCount(10, 60*time.Second, p)
	select {
	case <-p.done:
		t.Fatalf("pgsignal exited after SIGHUP: %v\n%s", p.err, p.tail())
	default:
	}
	if log := p.logText(t); !strings.Contains(log, "SIGHUP received and ignored") {
		t.Fatalf("SIGHUP not logged:\n%s", log)
	}
	p.term(t)
	e.checkExactlyOnce(10)
}

// TestProcLatin1Database: a LATIN1 database's text reaches OneSignal as
// UTF-8 (client_encoding UTF8 on every connection).
func TestProcLatin1Database(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.exec(`CREATE DATABASE latin1 TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'`)
	pool, err := pgxpool.New(context.Background(), e.pg.DSN("latin1")+"&client_encoding=UTF8")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(context.Background(), eventsTable); err != nil {
		t.Fatal(err)
	}
	p := e.startProc(e.writeHangConfig(e.pg.DSN("latin1"), "", "30s"))
	e.waitStreaming(p)
	if _, err := pool.Exec(context.Background(), `INSERT INTO analytics.user_events (event_name, user_id, event_data)
VALUES ('achat_réussi', 'café', '{"ville": "Zürich"}')`); err != nil {
		t.Fatal(err)
	}
	e.waitCount(1, 60*time.Second, p)
	p.term(t)
	ev := e.fake.Events()[0]
	t.Logf("figures: name %q external_id %q properties %s", ev.Name, ev.ExternalID, ev.Properties)
	if ev.ExternalID != "café" || ev.Name != "achat_réussi" {
		t.Fatalf("event name %q external_id %q, want achat_réussi and café (UTF-8)", ev.Name, ev.ExternalID)
	}
	var props map[string]string
	if err := json.Unmarshal(ev.Properties, &props); err != nil || props["ville"] != "Zürich" {
		t.Fatalf("properties %s (%v), want ville Zürich", ev.Properties, err)
	}
}
