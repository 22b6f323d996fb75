package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// qmConfig writes a config for source.method query on dsn.
func (e *env) qmConfig(dsn, mode string) string {
	return e.qmConfigPoll(dsn, mode, "50ms")
}

// qmConfigPoll is qmConfig with poll_interval poll.
func (e *env) qmConfigPoll(dsn, mode, poll string) string {
	e.t.Helper()
	cfg := fmt.Sprintf(`source:
  dsn: %q
  mode: %s
  method: query
  poll_interval: %s
  state_file: %q
onesignal:
  app_id: %q
  api_key: "${TEST_ONESIGNAL_KEY}"
  url: %q
  timeout: 60s
sink:
  linger: 5ms
  max_backoff: 2s
  dead_letter_file: %q
shutdown_timeout: 60s
server:
  listen: "127.0.0.1:0"
log:
  level: info
  format: json
tables:
  - table: analytics.user_events
    cursor: id
    name: event_name
    external_id: user_id
    timestamp: event_timestamp
    properties: event_data
`, dsn, mode, poll, filepath.Join(e.dir, "state.json"), e.fake.AppID(), e.fake.URL(), filepath.Join(e.dir, "dead.jsonl"))
	path := filepath.Join(e.dir, "pgsignal-query.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// qmWait waits until cond holds, failing with p's log.
func (e *env) qmWait(what string, p *proc, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("waiting for %s: timed out\n%s", what, p.tail())
		}
		select {
		case <-p.done:
			e.t.Fatalf("waiting for %s: pgsignal exited: %v\n%s", what, p.err, p.tail())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// qmAccepted returns the n property of every accepted event, in order,
// failing on a key accepted twice.
func (e *env) qmAccepted() []int {
	e.t.Helper()
	keys := map[string]bool{}
	var ns []int
	for _, ev := range e.fake.Events() {
		var n int
		if _, err := fmt.Sscanf(string(ev.Properties), `{"n": %d}`, &n); err != nil {
			e.t.Fatalf("unexpected event properties %s", ev.Properties)
		}
		if keys[ev.IdempotencyKey] {
			e.t.Fatalf("key %s (row %d) accepted twice", ev.IdempotencyKey, n)
		}
		keys[ev.IdempotencyKey] = true
		ns = append(ns, n)
	}
	slices.Sort(ns)
	return ns
}

func span(from, to int, more ...int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	out = append(out, more...)
	slices.Sort(out)
	return out
}

// TestQueryStandbyReadOnlyKill9: the query method on a PostgreSQL 15 hot
// standby, read-only with a state file. Rows of five transactions and of
// one that took its ids before them and commits after pgsignal read theirs
// (and after pgsignal was killed with SIGKILL), then a restart of the
// standby; every row once by key, none from before the first start,
// nothing written to the database.
func TestQueryStandbyReadOnlyKill9(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	ctx := t.Context()
	if e.pg.Version() < 12 {
		t.Skipf("pgtest builds standbys on PostgreSQL 12 or later; this is %d", e.pg.Version())
	}
	e.insertRows(0, 10) // before the first start: never sent
	standby := pgtest.NewStandby(t, e.pg, pgtest.Options{})
	cfg := e.qmConfig(standby.DSN(""), "read-only")
	state := filepath.Join(e.dir, "state.json")
	stored := func() bool {
		b, err := os.ReadFile(state)
		return err == nil && strings.Contains(string(b), `"analytics.user_events"`)
	}
	p := e.startProc(cfg)
	e.qmWait("the first position in the state file", p, stored)

	late, err := pgx.Connect(ctx, e.pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close(context.Background())
	tx, err := late.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO analytics.user_events (event_name, user_id, event_data)
SELECT 'ev', 'user_' || i, jsonb_build_object('n', i) FROM generate_series(1000, 1001) i`); err != nil {
		t.Fatal(err)
	}
	for k := range 5 {
		e.insertRows(10+5*k, 5)
	}
	e.waitCount(25, 60*time.Second, p)
	// The standby has replayed transactions: its lag is known.
	metrics := qmScrape(t, listenAddr(t, p))
	for _, want := range []string{"pgsignal_query_connected 1", "pgsignal_query_replay_lag_seconds ", "pgsignal_query_cursor_reset 0"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics has no %q", want)
		}
	}
	// Time for the window to fold if it wrongly could (two guards of 2 s):
	// the late transaction's ids (11, 12) must stay above the stored final.
	time.Sleep(5 * time.Second)
	before, _ := os.ReadFile(state)
	var st struct {
		Sections struct {
			Query struct {
				Tables map[string]struct {
					Final json.RawMessage `json:"final"`
				} `json:"tables"`
			} `json:"query"`
		} `json:"sections"`
	}
	if err := json.Unmarshal(before, &st); err != nil {
		t.Fatal(err)
	}
	if f, err := strconv.Atoi(string(st.Sections.Query.Tables["analytics.user_events"].Final)); err != nil || f >= 11 {
		t.Fatalf("stored final %s passed the open transaction's ids 11 and 12: %s", st.Sections.Query.Tables["analytics.user_events"].Final, before)
	}
	p.kill9(t)
	t.Logf("state at the kill: %s", before)
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	e.insertRows(35, 5)
	p = e.startProc(cfg)
	e.waitCount(32, 60*time.Second, p)
	// The standby restarts under pgsignal: it polls again when it is back.
	if err := standby.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	e.insertRows(40, 5)
	e.waitCount(37, 60*time.Second, p)
	// Long enough for the window to fold: nothing more comes.
	e.qmWait("the window to fold", p, func() bool {
		b, err := os.ReadFile(state)
		return err == nil && strings.Contains(string(b), `"seen":[]`)
	})
	p.term(t)
	if got, want := e.qmAccepted(), span(10, 44, 1000, 1001); !slices.Equal(got, want) {
		t.Fatalf("accepted rows %v, want %v", got, want)
	}
	t.Logf("figures: 37 rows, %d accepted, %d duplicates absorbed by the fake after the kill", e.fake.Count(), e.fake.Duplicates())
	var slots, schemas int64
	slots = e.queryInt(`SELECT count(*) FROM pg_replication_slots WHERE slot_type = 'logical'`)
	schemas = e.queryInt(`SELECT count(*) FROM pg_namespace WHERE nspname = 'census'`)
	if slots != 0 || schemas != 0 || e.queryInt(`SELECT count(*) FROM pg_publication`) != 0 {
		t.Fatalf("logical slots %d, census schema %d: read-only query mode writes nothing", slots, schemas)
	}
}

// TestQueryFullModeSelectOnly: full mode on a primary as a user with
// SELECT on the table and CREATE on the bookkeeping schema, without
// REPLICATION. The position is kept in census.query_positions; a crash
// of the database is ridden out (/readyz failing meanwhile); a graceful restart of pgsignal sends
// nothing again; no slot and no publication exist.
func TestQueryFullModeSelectOnly(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.exec(`CREATE ROLE reader LOGIN NOREPLICATION`)
	e.exec(`CREATE SCHEMA census`)
	e.exec(`GRANT USAGE, CREATE ON SCHEMA census TO reader`)
	e.exec(`GRANT USAGE ON SCHEMA analytics TO reader`)
	e.exec(`GRANT SELECT ON analytics.user_events TO reader`)
	e.insertRows(0, 5)
	dsn := strings.Replace(e.pg.DSN(""), "://postgres@", "://reader@", 1)
	cfg := e.qmConfig(dsn, "full")
	stored := func(min int64) func() bool {
		return func() bool {
			var final int64
			err := e.pool.QueryRow(context.Background(), `SELECT CASE WHEN position->>'final' = 'none' THEN -1 ELSE (position->>'final')::int8 END
FROM census.query_positions WHERE name = 'pgsignal' AND table_name = 'analytics.user_events' AND position->'seen' = '[]'`).Scan(&final)
			return err == nil && final >= min
		}
	}
	p := e.startProc(cfg)
	e.qmWait("the first position", p, func() bool {
		var n int64
		_ = e.pool.QueryRow(context.Background(), `SELECT count(*) FROM census.query_positions`).Scan(&n)
		return n == 1
	})
	for k := range 4 {
		e.insertRows(5+5*k, 5)
	}
	e.waitCount(20, 60*time.Second, p)
	e.qmWait("every row final in census.query_positions", p, stored(e.queryInt(`SELECT max(id) FROM analytics.user_events`)))
	// The database crashes under pgsignal: /readyz fails while polls fail,
	// and pgsignal polls again when it is back.
	addr := listenAddr(t, p)
	if code, body := readyz(t, addr); code != 200 {
		t.Fatalf("/readyz %d %q while polling", code, body)
	}
	if err := e.pg.Kill(); err != nil {
		t.Fatal(err)
	}
	if body := waitReadyz(t, p, addr, 503, 30*time.Second); !strings.Contains(body, "polling the database fails") {
		t.Fatalf("/readyz says %q while the database is down", body)
	}
	if err := e.pg.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.pool.Reset()
	waitReadyz(t, p, addr, 200, 60*time.Second)
	e.insertRows(25, 5)
	e.waitCount(25, 60*time.Second, p)
	e.qmWait("the rows after the database restart final", p, stored(e.queryInt(`SELECT max(id) FROM analytics.user_events`)))
	p.term(t)
	p = e.startProc(cfg)
	e.insertRows(30, 5)
	e.waitCount(30, 60*time.Second, p)
	e.qmWait("the new rows final", p, stored(e.queryInt(`SELECT max(id) FROM analytics.user_events`)))
	// Empty polls write nothing.
	updated := func() string {
		var at string
		if err := e.pool.QueryRow(context.Background(), `SELECT updated_at::text FROM census.query_positions`).Scan(&at); err != nil {
			t.Fatal(err)
		}
		return at
	}
	addr = listenAddr(t, p)
	before, polls := updated(), qmPolls(t, addr)
	e.qmWait("ten more polls", p, func() bool { return qmPolls(t, addr) >= polls+10 })
	if after := updated(); after != before {
		t.Fatalf("the position was written by empty polls (updated_at %s, then %s)", before, after)
	}
	p.term(t)
	if got, want := e.qmAccepted(), span(5, 34); !slices.Equal(got, want) {
		t.Fatalf("accepted rows %v, want %v", got, want)
	}
	if d := e.fake.Duplicates(); d != 0 || e.fake.Count() != 30 {
		t.Fatalf("the fake saw %d events and %d duplicates; want 30 and none (a graceful restart resends nothing)", e.fake.Count(), d)
	}
	if n := e.queryInt(`SELECT count(*) FROM pg_replication_slots`); n != 0 {
		t.Fatalf("%d replication slots; the query method creates none", n)
	}
	if n := e.queryInt(`SELECT count(*) FROM pg_publication`); n != 0 {
		t.Fatalf("%d publications; the query method creates none", n)
	}
	// status shows the stored position.
	out, errOut, code := runCheckCLI(t, []string{"TEST_ONESIGNAL_KEY=test-key"}, "status", "--config", cfg)
	want := fmt.Sprintf("position analytics.user_events: every row with a cursor up to %d handled\n", e.queryInt(`SELECT max(id) FROM analytics.user_events`))
	if code != 0 || !strings.Contains(out, want) {
		t.Fatalf("status exit %d, want the line %q:\n%s%s", code, want, out, errOut)
	}
}

// TestQueryLatency measures commit→accepted at 1,000 rows/s with
// poll_interval 1s (single-row transactions; the commit time is the row's
// clock_timestamp()). Set PGSIGNAL_QUERY_LATENCY_SECONDS (e.g. 30) to run.
func TestQueryLatency(t *testing.T) {
	secs, _ := strconv.Atoi(os.Getenv("PGSIGNAL_QUERY_LATENCY_SECONDS"))
	if secs <= 0 {
		t.Skip("set PGSIGNAL_QUERY_LATENCY_SECONDS to measure")
	}
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	p := e.startProc(e.qmConfigPoll(e.pg.DSN(""), "read-only", "1s"))
	e.qmWait("the first position", p, func() bool {
		_, err := os.Stat(filepath.Join(e.dir, "state.json"))
		return err == nil
	})
	const rate = 1000
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	total := 0
	start := time.Now()
	for i := 0; time.Since(start) < time.Duration(secs)*time.Second; i++ {
		<-tick.C
		want := int(time.Since(start).Seconds()*rate) - total
		if want <= 0 {
			continue
		}
		// One transaction per row, committed at its clock_timestamp().
		b := &pgx.Batch{}
		for k := range want {
			b.Queue(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data) VALUES ('ev', 'u', clock_timestamp(), jsonb_build_object('n', $1::int))`, total+k)
		}
		if err := e.pool.SendBatch(context.Background(), b).Close(); err != nil {
			t.Fatal(err)
		}
		total += want
	}
	e.waitCount(total, 120*time.Second, p)
	var lat []time.Duration
	for _, ev := range e.fake.Events() {
		ts, err := time.Parse(time.RFC3339Nano, ev.Timestamp)
		if err != nil {
			t.Fatalf("timestamp %q: %v", ev.Timestamp, err)
		}
		lat = append(lat, ev.ReceivedAt.Sub(ts))
	}
	slices.Sort(lat)
	t.Logf("figures: %d rows at %d rows/s, poll_interval 1s: commit→accepted p50 %s, p99 %s, max %s", total, rate,
		lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)*99/100].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	p.term(t)
}

// qmScrape returns the text of GET /metrics.
func qmScrape(t *testing.T, addr string) string {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// qmPolls returns pgsignal_query_polls_total.
func qmPolls(t *testing.T, addr string) int {
	t.Helper()
	for _, line := range strings.Split(qmScrape(t, addr), "\n") {
		if v, ok := strings.CutPrefix(line, "pgsignal_query_polls_total "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatalf("pgsignal_query_polls_total %q", v)
			}
			return n
		}
	}
	t.Fatal("no pgsignal_query_polls_total in /metrics")
	return 0
}
