package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// binary is the pgsignal binary built once for the process-level tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "pgsignal-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "pgsignal")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build pgsignal: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is a PostgreSQL, a fake OneSignal and a config file for the binary.
type env struct {
	t    *testing.T
	pg   *pgtest.Server
	fake *onesignaltest.Server
	pool *pgxpool.Pool
	dir  string
}

const eventsTable = `CREATE SCHEMA analytics;
CREATE TABLE analytics.user_events (
  id bigserial PRIMARY KEY, event_name text, user_id text,
  event_timestamp timestamptz DEFAULT now(), event_data jsonb);`

func newEnv(t *testing.T, pgOpts pgtest.Options, fakeOpts onesignaltest.Options) *env {
	t.Helper()
	pg := pgtest.New(t, pgOpts)
	fake, err := onesignaltest.Start(fakeOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	pool, err := pgxpool.New(context.Background(), pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	e := &env{t: t, pg: pg, fake: fake, pool: pool, dir: t.TempDir()}
	e.exec(eventsTable)
	return e
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.pool.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
}

// writeConfig writes the config file; extra is appended under sink:.
func (e *env) writeConfig(mode string, sinkExtra string) string {
	e.t.Helper()
	cfg := fmt.Sprintf(`source:
  dsn: %q
  mode: %s
onesignal:
  app_id: %q
  api_key: "${TEST_ONESIGNAL_KEY}"
  url: %q
  timeout: 60s
sink:
  linger: 5ms
  max_backoff: 2s
  dead_letter_file: %q
%s
shutdown_timeout: 60s
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
`, e.pg.DSN(""), mode, e.fake.AppID(), e.fake.URL(), filepath.Join(e.dir, "dead.jsonl"), sinkExtra)
	path := filepath.Join(e.dir, "pgsignal.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// proc is a running pgsignal process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  string
}

var procSeq int
var procMu sync.Mutex

func (e *env) startProc(config string, args ...string) *proc {
	e.t.Helper()
	return e.startCommand("run", config, args...)
}

// startCommand starts `pgsignal <command> --config config args...`.
func (e *env) startCommand(command, config string, args ...string) *proc {
	e.t.Helper()
	procMu.Lock()
	procSeq++
	n := procSeq
	procMu.Unlock()
	logPath := filepath.Join(e.dir, fmt.Sprintf("pgsignal-%d.log", n))
	f, err := os.Create(logPath)
	if err != nil {
		e.t.Fatal(err)
	}
	all := append([]string{command, "--config", config}, args...)
	cmd := exec.Command(binary, all...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.Env = append(os.Environ(), "TEST_ONESIGNAL_KEY="+e.fake.APIKey())
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{}), log: logPath}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	e.t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// waitStreaming waits until a pgsignal process holds the slot: rows
// inserted before the slot exists are not part of the stream.
func (e *env) waitStreaming(p *proc) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		// The slot is also "active" while pgsignal creates it: wait for a
		// walsender that streams it.
		var active bool
		err := e.pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_replication_slots s
  JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = 'pgsignal' AND r.state IN ('streaming', 'catchup'))`).Scan(&active)
		if err == nil && active {
			return
		}
		select {
		case <-p.done:
			e.t.Fatalf("pgsignal exited: %v\n%s", p.err, p.tail())
		case <-time.After(50 * time.Millisecond):
		}
	}
	e.t.Fatalf("pgsignal did not start streaming in 60s\n%s", p.tail())
}

func (p *proc) kill9(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
}

// term sends SIGTERM and waits for a clean exit.
func (p *proc) term(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(90 * time.Second):
		t.Fatalf("pgsignal did not exit after SIGTERM; log:\n%s", p.tail())
	}
	if p.err != nil {
		t.Fatalf("pgsignal exited with %v; log:\n%s", p.err, p.tail())
	}
}

func (p *proc) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// waitCount waits until the fake holds n events, failing with the log of p.
func (e *env) waitCount(n int, timeout time.Duration, p *proc) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := e.fake.WaitForCount(ctx, n); err != nil {
		msg := ""
		if p != nil {
			msg = p.tail()
		}
		var rows int64
		var slot string
		_ = e.pool.QueryRow(context.Background(), `SELECT count(*) FROM analytics.user_events`).Scan(&rows)
		_ = e.pool.QueryRow(context.Background(), `SELECT format('%s active=%s confirmed=%s restart=%s', slot_name, active, confirmed_flush_lsn, restart_lsn) FROM pg_replication_slots WHERE slot_name = 'pgsignal'`).Scan(&slot)
		msg = fmt.Sprintf("table rows %d; slot %s; current wal %s; fake %+v\n%s", rows, slot, e.walLSN(), e.fake.Stats(), msg)
		e.t.Fatalf("waiting for %d events, have %d: %v\n%s", n, e.fake.Count(), err, msg)
	}
}

// insertRows inserts rows n in [from, from+count) in one transaction; row n
// has user_<n%97> and properties {"n": n}.
func (e *env) insertRows(from, count int) {
	e.t.Helper()
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data)
SELECT 'ev', 'user_' || (i % 97), jsonb_build_object('n', i) FROM generate_series($1::int, $2::int) AS i`, from, from+count-1)
}

// checkExactlyOnce asserts that the fake accepted every row in [0, n) once
// (by idempotency key) and reports the figures.
func (e *env) checkExactlyOnce(n int) {
	e.t.Helper()
	evs := e.fake.Events()
	seen := make([]bool, n)
	keys := make(map[string]bool, len(evs))
	for _, ev := range evs {
		var i int
		if _, err := fmt.Sscanf(string(ev.Properties), `{"n": %d}`, &i); err != nil || i < 0 || i >= n {
			e.t.Fatalf("unexpected event properties %s", ev.Properties)
		}
		if seen[i] || keys[ev.IdempotencyKey] {
			e.t.Fatalf("row %d accepted twice", i)
		}
		seen[i], keys[ev.IdempotencyKey] = true, true
	}
	missing := 0
	for _, ok := range seen {
		if !ok {
			missing++
		}
	}
	e.t.Logf("figures: inserted %d, unique keys accepted %d, duplicates absorbed %d, missing %d",
		n, len(keys), e.fake.Duplicates(), missing)
	if missing != 0 || len(evs) != n {
		e.t.Fatalf("%d rows missing, %d accepted; want 0, %d", missing, len(evs), n)
	}
}

func (e *env) queryInt(sql string, args ...any) int64 {
	e.t.Helper()
	var v int64
	if err := e.pool.QueryRow(context.Background(), sql, args...).Scan(&v); err != nil {
		e.t.Fatalf("%s: %v", sql, err)
	}
	return v
}

var _ = pgx.ErrNoRows

func (e *env) walLSN() string {
	var s string
	_ = e.pool.QueryRow(context.Background(), `SELECT pg_current_wal_lsn()::text`).Scan(&s)
	return s
}
