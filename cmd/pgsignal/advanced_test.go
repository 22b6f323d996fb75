package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// writeTablesConfig writes a config file named name whose tables: section
// is tables; sinkExtra is appended under sink:, topExtra at the top level.
func (e *env) writeTablesConfig(name, tables, sinkExtra, topExtra string) string {
	e.t.Helper()
	cfg := fmt.Sprintf(`source:
  dsn: %q
onesignal:
  app_id: %q
  api_key: "${TEST_ONESIGNAL_KEY}"
  url: %q
  timeout: 60s
sink:
  linger: 5ms
  max_backoff: 1s
%s
server:
  listen: "127.0.0.1:0"
log:
  level: info
  format: json
%s
tables:
%s`, e.pg.DSN(""), e.fake.AppID(), e.fake.URL(), sinkExtra, topExtra, tables)
	path := filepath.Join(e.dir, name)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// stopWithin sends SIGTERM and waits for the process to exit, whatever its
// exit status.
func (p *proc) stopWithin(t *testing.T, d time.Duration) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("pgsignal did not exit after SIGTERM; log:\n%s", p.tail())
	}
}

// waitLog waits until p's log contains s.
func (e *env) waitLog(p *proc, s string, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(readFile(e.t, p.log), s) {
			return
		}
		select {
		case <-p.done:
			e.t.Fatalf("pgsignal exited before logging %q: %v\n%s", s, p.err, p.tail())
		case <-time.After(50 * time.Millisecond):
		}
	}
	e.t.Fatalf("no %q in the log after %s\n%s", s, timeout, p.tail())
}

// eventsByRow returns the accepted events as "name/external_id/properties"
// with how often each was accepted, and fails when a key repeats.
func (e *env) eventsByRow() map[string]int {
	e.t.Helper()
	out := map[string]int{}
	keys := map[string]bool{}
	for _, ev := range e.fake.Events() {
		if keys[ev.IdempotencyKey] {
			e.t.Fatalf("key %s accepted twice", ev.IdempotencyKey)
		}
		keys[ev.IdempotencyKey] = true
		var props any
		_ = json.Unmarshal(ev.Properties, &props)
		p, _ := json.Marshal(props)
		out[ev.Name+"/"+ev.ExternalID+"/"+string(p)]++
	}
	return out
}

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Issue 12 item 1: a backfill interrupted while OneSignal is down (every
// request answered 500) and stopped with SIGTERM; meanwhile rows go into a
// plain table, into the backfilled table inside its window and outside it.
// The restart redoes the backfill without dropping the slot: every row
// arrives exactly once (by key and by row), nothing twice.
func TestBackfillRedoKeepsStreamedRows(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.exec(`CREATE TABLE analytics.orders (id int PRIMARY KEY, customer text NOT NULL, placed_at timestamptz NOT NULL);
CREATE TABLE analytics.logins (id int PRIMARY KEY, user_id text NOT NULL);
CREATE TABLE analytics.profiles (id int PRIMARY KEY, user_id text NOT NULL, status text);
INSERT INTO analytics.profiles VALUES (1, 'p1', 'new');
INSERT INTO analytics.orders SELECT i, 'c' || i, now() - i * interval '1 hour' FROM generate_series(1, 5) i;
INSERT INTO analytics.orders SELECT i, 'c' || i, now() - interval '3 days' FROM generate_series(100, 101) i;`)
	cfg := e.writeTablesConfig("redo.yaml", `  - table: analytics.orders
    name_value: order
    external_id: customer
    properties: [id]
    timestamp: placed_at
    backfill:
      since: 1d
  - table: analytics.logins
    name_value: login
    external_id: user_id
    properties: [id]
  - table: analytics.profiles
    name_value: profile
    external_id: user_id
    properties: [status]
    emit: [insert, update]
`, "", "shutdown_timeout: 2s")
	e.fake.SetFaults(onesignaltest.Faults{Rate500: 1})
	p := e.startProc(cfg)
	e.waitLog(p, "backfill started", time.Minute)
	// While the backfill cannot deliver: a plain table, the backfilled
	// table inside its window, outside it (dated before it), one
	// transaction writing both tables, and an update of a table that emits
	// updates.
	e.exec(`INSERT INTO analytics.logins VALUES (1, 'u1'), (2, 'u2')`)
	e.exec(`INSERT INTO analytics.orders VALUES (10, 'c10', now())`)
	e.exec(`INSERT INTO analytics.orders VALUES (11, 'c11', now() - interval '5 days')`)
	e.exec(`BEGIN; INSERT INTO analytics.orders VALUES (12, 'c12', now() - interval '2 hours'); INSERT INTO analytics.logins VALUES (3, 'u3'); COMMIT`)
	e.exec(`UPDATE analytics.profiles SET status = 'gold' WHERE id = 1`)
	p.stopWithin(t, time.Minute)
	if n := e.fake.Count(); n != 0 {
		t.Fatalf("%d events accepted while OneSignal answered 500", n)
	}
	if n := e.queryInt(`SELECT count(*) FROM census.backfills WHERE state = 'running'`); n != 1 {
		t.Fatalf("backfill not left running (%d)", n)
	}
	// Rows committed while pgsignal is down.
	e.exec(`INSERT INTO analytics.logins VALUES (4, 'u4')`)
	e.exec(`INSERT INTO analytics.orders VALUES (13, 'c13', now())`)
	e.fake.SetFaults(onesignaltest.Faults{})
	p = e.startProc(cfg)
	e.waitStreaming(p)
	e.exec(`INSERT INTO analytics.logins VALUES (5, 'u5')`)
	want := map[string]int{}
	for _, i := range []int{1, 2, 3, 4, 5, 10, 11, 12, 13} {
		want[fmt.Sprintf("order/c%d/{\"id\":%d}", i, i)] = 1
	}
	for i := 1; i <= 5; i++ {
		want[fmt.Sprintf("login/u%d/{\"id\":%d}", i, i)] = 1
	}
	want[`profile/p1/{"status":"gold"}`] = 1 // an update
	e.waitCount(len(want), time.Minute, p)
	time.Sleep(time.Second) // anything sent twice would arrive now
	p.term(t)
	got := e.eventsByRow()
	for _, k := range sortedKeys(got) {
		if got[k] != want[k] {
			t.Errorf("%s accepted %d times, want %d", k, got[k], want[k])
		}
	}
	for _, k := range sortedKeys(want) {
		if got[k] == 0 {
			t.Errorf("%s never arrived", k)
		}
	}
	t.Logf("figures: %d events accepted, %d duplicates absorbed by key", e.fake.Count(), e.fake.Duplicates())
	if d := e.fake.Duplicates(); d != 0 {
		t.Errorf("%d duplicates sent; want none", d)
	}
	log := readFile(t, p.log)
	if !strings.Contains(log, "keeping the slot") {
		t.Errorf("the redo does not say it keeps the slot:\n%s", p.tail())
	}
	if n := e.queryInt(`SELECT count(*) FROM pg_replication_slots`); n != 1 {
		t.Errorf("%d replication slots left; want pgsignal's only", n)
	}
}

// deadLetters returns census.dead_letters' reasons, by table.
func (e *env) deadLetterReasons() []string {
	e.t.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT reason FROM census.dead_letters ORDER BY id`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var r string
		if err := rows.Scan(&r); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, r)
	}
	return out
}

// Issue 12 item 5: a batch whose transform runs past the statement timeout
// (tables[].transform_timeout) is split down to the row that is slow, which
// becomes a dead letter saying so; the other rows of the batch, and the rows
// after it, are delivered.
func TestTransformTimeoutSplitsBatch(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeTablesConfig("timeout.yaml", `  - table: analytics.user_events
    transform: |
      SELECT c.event_name AS name, c.user_id AS external_id, jsonb_build_object('id', c.id) AS properties
      FROM changes c CROSS JOIN LATERAL (SELECT 1 FROM pg_sleep(CASE WHEN c.event_name = 'slow' THEN 3 ELSE 0 END)) s
    transform_timeout: 500ms
`, "", "")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) SELECT i, CASE WHEN i = 4 THEN 'slow' ELSE 'ev' END, 'u' || i FROM generate_series(1, 7) i`)
	e.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (8, 'after', 'u8')`)
	e.waitCount(7, time.Minute, p)
	deadline := time.Now().Add(30 * time.Second)
	for e.queryInt(`SELECT count(*) FROM census.dead_letters`) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	p.term(t)
	got := e.eventsByRow()
	for i := 1; i <= 8; i++ {
		name := "ev"
		switch i {
		case 4:
			continue
		case 8:
			name = "after"
		}
		if k := fmt.Sprintf("%s/u%d/{\"id\":%d}", name, i, i); got[k] != 1 {
			t.Errorf("%s accepted %d times, want once (have %v)", k, got[k], sortedKeys(got))
		}
	}
	if len(got) != 7 {
		t.Errorf("%d events accepted, want 7: %v", len(got), sortedKeys(got))
	}
	reasons := e.deadLetterReasons()
	t.Logf("dead letters: %q", reasons)
	if len(reasons) != 1 || !strings.Contains(reasons[0], "transform timed out") || !strings.Contains(reasons[0], "500ms") ||
		!strings.Contains(reasons[0], "transform_timeout") {
		t.Fatalf("dead letters %q; want one saying the slow row timed out after 500ms", reasons)
	}
	if n := e.queryInt(`SELECT count(*) FROM census.dead_letters WHERE source_row->>'event_name' = 'slow'`); n != 1 {
		t.Errorf("the dead letter is not the slow row's")
	}
}

// Issue 12 item 5: a transform that writes (nextval() in the read-only
// session) stops `run` at start-up and fails `check`, saying why and what
// to do, instead of passing check and then failing every batch forever.
func TestTransformThatWritesFailsAtStart(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.exec(`CREATE SEQUENCE analytics.counter`)
	cfg := e.writeTablesConfig("writes.yaml", `  - table: analytics.user_events
    transform: |
      SELECT c.event_name AS name, c.user_id AS external_id, jsonb_build_object('n', nextval('analytics.counter')) AS properties
      FROM changes c
`, "", "")
	env := []string{"TEST_ONESIGNAL_KEY=" + e.fake.APIKey()}
	for _, cmd := range []string{"check", "run"} {
		start := time.Now()
		all, code := runFor(t, 60*time.Second, env, cmd, "--config", cfg)
		t.Logf("pgsignal %s (exit %d):\n%s", cmd, code, all)
		if code == 0 || !strings.Contains(all, "SQLSTATE 25006") || !strings.Contains(all, "must not write") {
			t.Errorf("pgsignal %s: exit %d; want a failure naming SQLSTATE 25006 and that transforms must not write:\n%s", cmd, code, all)
		}
		if cmd == "check" && !strings.Contains(all, "✗") {
			t.Errorf("check shows no ✗:\n%s", all)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Errorf("pgsignal %s took %s", cmd, d)
		}
	}
	if n := e.queryInt(`SELECT count(*) FROM pg_replication_slots`); n != 0 {
		t.Errorf("run created %d slot(s) before failing", n)
	}
}

// runFor runs the binary with args and extra environment variables for at
// most d (then kills it) and returns its combined output and exit code (-1
// when killed).
func runFor(t *testing.T, d time.Duration, env []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		return string(out), -1
	}
	var ee *exec.ExitError
	if err != nil && !errorAs(err, &ee) {
		t.Fatalf("run %v: %v", args, err)
	}
	if ee != nil {
		return string(out), ee.ExitCode()
	}
	return string(out), 0
}

// Issue 12 item 6: an update that leaves a large (TOASTed) column
// unchanged, which the server then does not resend, is an event when the
// event does not read that column — on a mapped table and on a transform
// table — and a dead letter only when it does.
func TestUpdateWithUnchangedTOASTColumn(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.exec(`CREATE TABLE analytics.profiles (id int PRIMARY KEY, user_id text, status text, bio text);
CREATE TABLE analytics.accounts (id int PRIMARY KEY, user_id text, status text, bio text);
CREATE TABLE analytics.notes (id int PRIMARY KEY, user_id text, status text, bio text);
ALTER TABLE analytics.profiles ALTER COLUMN bio SET STORAGE EXTERNAL;
ALTER TABLE analytics.accounts ALTER COLUMN bio SET STORAGE EXTERNAL;
ALTER TABLE analytics.notes ALTER COLUMN bio SET STORAGE EXTERNAL`)
	cfg := e.writeTablesConfig("toast.yaml", `  - table: analytics.profiles
    name_value: profile
    external_id: user_id
    properties: [status]
    emit: [insert, update]
  - table: analytics.accounts
    transform: |
      SELECT 'account' AS name, a.user_id AS external_id, jsonb_build_object('status', a.status) AS properties
      FROM changes a
    emit: [insert, update]
  - table: analytics.notes
    name_value: note
    external_id: user_id
    properties: [status, bio]
    emit: [insert, update]
`, "", "")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	for _, table := range []string{"profiles", "accounts", "notes"} {
		e.exec(`INSERT INTO analytics.` + table + ` VALUES (1, 'u1', 'new', repeat('x', 100000))`)
		e.exec(`UPDATE analytics.` + table + ` SET status = 'gold' WHERE id = 1`)
	}
	e.waitCount(4, time.Minute, p)
	deadline := time.Now().Add(30 * time.Second)
	for e.queryInt(`SELECT count(*) FROM census.dead_letters`) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	p.term(t)
	got := e.eventsByRow()
	for _, k := range []string{`profile/u1/{"status":"new"}`, `profile/u1/{"status":"gold"}`, `account/u1/{"status":"new"}`, `account/u1/{"status":"gold"}`} {
		if got[k] != 1 {
			t.Errorf("%s accepted %d times, want once", k, got[k])
		}
	}
	if len(got) != 4 {
		t.Errorf("events %v; want the four above", sortedKeys(got))
	}
	// The note's insert is too large for OneSignal (its properties hold
	// bio); its update lacks bio.
	// Letters of different transactions are not ordered among themselves.
	reasons := e.deadLetterReasons()
	t.Logf("dead letters: %q", reasons)
	sort.Strings(reasons) // "event is ..." before "update of ..."
	if len(reasons) != 2 || !strings.Contains(reasons[0], "OneSignal accepts at most 2024 bytes") ||
		!strings.Contains(reasons[1], `update of analytics.notes left column "bio" unchanged`) {
		t.Errorf("dead letters %q; want the note's two (too large, bio not resent)", reasons)
	}
}

// Issue 12 item 1, the duplicate bound of a redone backfill: a row
// inserted inside the window while the backfill is interrupted and changed
// before the redo (updated), or inserted in a subtransaction, cannot be
// proven to be in the redo's snapshot by the stream: it arrives twice
// (backfill and stream, different keys), never zero times. One inserted and
// deleted before the redo is in the stream only: once. An untouched one:
// once.
func TestBackfillRedoDuplicateBound(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.exec(`CREATE TABLE analytics.orders (id int PRIMARY KEY, customer text NOT NULL, placed_at timestamptz NOT NULL, note text);
INSERT INTO analytics.orders VALUES (1, 'c1', now() - interval '1 hour')`)
	cfg := e.writeTablesConfig("bound.yaml", `  - table: analytics.orders
    name_value: order
    external_id: customer
    properties: [id]
    timestamp: placed_at
    backfill:
      since: 1d
`, "", "shutdown_timeout: 2s")
	e.fake.SetFaults(onesignaltest.Faults{Rate500: 1})
	p := e.startProc(cfg)
	e.waitLog(p, "backfill started", time.Minute)
	e.exec(`INSERT INTO analytics.orders VALUES (2, 'c2', now()), (3, 'c3', now()), (4, 'c4', now())`)
	e.exec(`UPDATE analytics.orders SET note = 'changed' WHERE id = 2`)
	e.exec(`DELETE FROM analytics.orders WHERE id = 3`)
	e.exec(`BEGIN; SAVEPOINT s; INSERT INTO analytics.orders VALUES (5, 'c5', now()); RELEASE s; COMMIT`)
	p.stopWithin(t, time.Minute)
	e.fake.SetFaults(onesignaltest.Faults{})
	p = e.startProc(cfg)
	e.waitStreaming(p)
	want := map[string]int{}
	for i, n := range map[int]int{1: 1, 2: 2, 3: 1, 4: 1, 5: 2} {
		want[fmt.Sprintf("order/c%d/{\"id\":%d}", i, i)] = n
	}
	e.waitCount(7, time.Minute, p)
	time.Sleep(time.Second)
	p.term(t)
	got := e.eventsByRow()
	for _, k := range sortedKeys(want) {
		if got[k] != want[k] {
			t.Errorf("%s accepted %d times, want %d", k, got[k], want[k])
		}
	}
	if len(got) != len(want) {
		t.Errorf("events %v", got)
	}
}
