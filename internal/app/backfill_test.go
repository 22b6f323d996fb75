package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// backfillHarness starts PostgreSQL with the seed table holding old rows
// (outside a 7-day window) and window rows inserted out of time order.
func backfillHarness(t *testing.T, old, window int) *harness {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data)
SELECT 'old', 'u' || (i % 7), now() - interval '8 days' - i * interval '1 minute', jsonb_build_object('n', i)
FROM generate_series(1, $1::int) i`, old)
	// Window rows: time order is not id order.
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data)
SELECT 'past', 'u' || (i % 7), now() - interval '6 days' + ((i * 7919) % $1::int) * interval '1 second', jsonb_build_object('n', i)
FROM generate_series(1, $1::int) i`, window)
	return h
}

func (h *harness) systemID() string {
	h.t.Helper()
	var id string
	if err := h.db.QueryRow(context.Background(), `SELECT system_identifier::text FROM pg_control_system()`).Scan(&id); err != nil {
		h.t.Fatal(err)
	}
	return id
}

// eventIDs returns, per row id (the "id" property), how many events
// arrived.
func eventIDs(t *testing.T, evs []onesignaltest.Accepted) map[int]int {
	t.Helper()
	ids := map[int]int{}
	for _, ev := range evs {
		var p struct {
			ID *int `json:"id"`
		}
		if err := json.Unmarshal(ev.Properties, &p); err != nil || p.ID == nil {
			t.Fatalf("event %s %s has no id property: %s", ev.Name, ev.ExternalID, ev.Properties)
		}
		ids[*p.ID]++
	}
	return ids
}

// The backfill sends the window's rows once each, in time order, then the
// stream continues from the slot's consistent point: rows inserted all
// along (before, during and after the snapshot) arrive exactly once, with
// no gap and no duplicate at the seam.
func TestBackfillSeamWithConcurrentInserts(t *testing.T) {
	h := backfillHarness(t, 300, 3000)
	// The id goes into the properties so that every row can be counted.
	h.exec(`UPDATE analytics.user_events SET event_data = event_data || jsonb_build_object('id', id)`)
	h.exec(`CREATE FUNCTION analytics.add_id() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.event_data := coalesce(NEW.event_data, '{}') || jsonb_build_object('id', NEW.id); RETURN NEW; END $$;
CREATE TRIGGER add_id BEFORE INSERT ON analytics.user_events FOR EACH ROW EXECUTE PROCEDURE analytics.add_id()`)
	cfg := h.config()
	cfg.Tables[0].Backfill = &config.Backfill{Since: 7 * 24 * time.Hour}

	// A writer inserts rows (timestamped now) before, during and after the
	// slot's creation, in small transactions.
	var inserted atomic.Int64
	stopWriter := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := h.pg.Connect(context.Background(), "")
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close(context.Background())
		for i := 0; ; i++ {
			select {
			case <-stopWriter:
				return
			default:
			}
			_, err := conn.Exec(context.Background(), `INSERT INTO analytics.user_events (event_name, user_id, event_timestamp)
SELECT 'live', 'u' || (g % 7), clock_timestamp() FROM generate_series(1, 3) g`)
			if err != nil {
				t.Error(err)
				return
			}
			inserted.Add(3)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	time.Sleep(200 * time.Millisecond)
	r := h.start(cfg)
	// Keep writing while the backfill runs and after it.
	deadline := time.Now().Add(30 * time.Second)
	for h.fake.Count() < 3000 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	close(stopWriter)
	wg.Wait()
	want := 3000 + int(inserted.Load())
	h.waitCount(want)
	time.Sleep(300 * time.Millisecond) // anything extra would arrive now
	sum := r.stop(t)

	evs := h.fake.Events()
	if len(evs) != want || h.fake.Duplicates() != 0 {
		t.Fatalf("%d events (%d duplicates), want %d (3000 backfilled + %d live) and none twice", len(evs), h.fake.Duplicates(), want, inserted.Load())
	}
	var maxID int
	if err := h.db.QueryRow(context.Background(), `SELECT max(id) FROM analytics.user_events`).Scan(&maxID); err != nil {
		t.Fatal(err)
	}
	ids := eventIDs(t, evs)
	for id := 301; id <= maxID; id++ {
		if ids[id] != 1 {
			t.Errorf("row %d arrived %d times, want once", id, ids[id])
		}
	}
	for id := 1; id <= 300; id++ {
		if ids[id] != 0 {
			t.Errorf("row %d is older than the window but arrived", id)
		}
	}
	// Per user, events arrive in time order: the backfill in timestamp
	// order, then the stream.
	last := map[string]string{}
	live := 0
	for _, ev := range evs {
		if ev.Timestamp < last[ev.ExternalID] {
			t.Errorf("user %s: event at %s arrived after one at %s", ev.ExternalID, ev.Timestamp, last[ev.ExternalID])
		}
		last[ev.ExternalID] = ev.Timestamp
		if ev.Name == "live" {
			live++
		}
	}
	// Some live rows were backfilled (committed before the snapshot), others
	// streamed: the seam was crossed while writing.
	var backfilledLive int
	sys := h.systemID()
	for _, ev := range evs {
		var p struct{ ID int }
		_ = json.Unmarshal(ev.Properties, &p)
		if ev.IdempotencyKey == cdc.BackfillKey(sys, "analytics.user_events", [][]byte{[]byte(fmt.Sprint(p.ID))}) && ev.Name == "live" {
			backfilledLive++
		}
	}
	t.Logf("%d live rows: %d backfilled, %d streamed; received %d", live, backfilledLive, live-backfilledLive, sum.Received)
	if backfilledLive == 0 || backfilledLive == live {
		t.Errorf("%d of %d live rows were backfilled; want some on each side of the seam", backfilledLive, live)
	}
	var state string
	var done, total int64
	if err := h.db.QueryRow(context.Background(), `SELECT state, rows_done, rows_total FROM census.backfills WHERE slot = 'pgsignal'`).Scan(&state, &done, &total); err != nil {
		t.Fatal(err)
	}
	if state != "done" || done != total || total != int64(3000+backfilledLive) {
		t.Errorf("census.backfills = %s %d/%d, want done %d/%d", state, done, total, 3000+backfilledLive, 3000+backfilledLive)
	}
	if n := h.logs.FilterMessage("backfill done").Len(); n != 1 {
		t.Errorf("%d \"backfill done\" log lines, want 1", n)
	}
}

// Backfilled events' keys come from the table and the primary key; their
// timestamps are the rows'; rows older than the window and rows the
// table's filter rejects are not sent; a restart with the slot in place
// does not backfill again.
func TestBackfillKeysAndRestart(t *testing.T) {
	h := backfillHarness(t, 50, 200)
	cfg := h.config()
	cfg.Tables[0].Backfill = &config.Backfill{Since: 7 * 24 * time.Hour}
	r := h.start(cfg)
	h.waitCount(200)
	r.stop(t)
	sys := h.systemID()
	rows, err := h.db.Query(context.Background(), `SELECT id, user_id, to_char(event_timestamp AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') FROM analytics.user_events WHERE event_name = 'past'`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for rows.Next() {
		var id int64
		var user, ts string
		if err := rows.Scan(&id, &user, &ts); err != nil {
			t.Fatal(err)
		}
		want[cdc.BackfillKey(sys, "analytics.user_events", [][]byte{[]byte(fmt.Sprint(id))})] = user + " " + ts
	}
	if rows.Err() != nil {
		t.Fatal(rows.Err())
	}
	for _, ev := range h.fake.Events() {
		w, ok := want[ev.IdempotencyKey]
		if !ok {
			t.Errorf("event %s %s has key %s, not a backfill key of a window row", ev.Name, ev.ExternalID, ev.IdempotencyKey)
			continue
		}
		if got := ev.ExternalID + " " + ev.Timestamp; got != w {
			t.Errorf("event %s = %s, want %s", ev.IdempotencyKey, got, w)
		}
		delete(want, ev.IdempotencyKey)
	}
	if len(want) != 0 {
		t.Errorf("%d window rows not sent", len(want))
	}
	// Restart: the slot exists and the backfill is done: only new rows.
	h.fake.Reset()
	r = h.start(cfg)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('after', 'u1')`)
	h.waitCount(1)
	time.Sleep(300 * time.Millisecond)
	r.stop(t)
	if evs := h.fake.Events(); len(evs) != 1 || evs[0].Name != "after" {
		t.Errorf("after a restart got %d events (%v), want only the new row", len(evs), evs)
	}
	// pgsignal backfill on an existing slot says why it cannot.
	cfg.Tables[0].Backfill = &config.Backfill{Since: time.Hour}
	a := New(Options{Config: cfg, Logger: zaptest.NewLogger(t), ForceBackfill: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = a.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), `slot "pgsignal" exists`) || !strings.Contains(err.Error(), "pg_drop_replication_slot") {
		t.Errorf("backfill with an existing slot: %v; want an error naming the slot and how to redo it", err)
	}
}

// A backfill interrupted (hard stop in the middle) is redone from a new
// snapshot on the next start: every row arrives, and the rows sent twice
// carry the same key, so OneSignal keeps each once.
func TestBackfillInterruptedIsRedone(t *testing.T) {
	h := backfillHarness(t, 0, 2000)
	cfg := h.config()
	cfg.Sink.BatchSize = 50
	cfg.Sink.Concurrency = 1
	cfg.Tables[0].Backfill = &config.Backfill{Since: 7 * 24 * time.Hour}
	h.fake.SetFaults(onesignaltest.Faults{Latency: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	core, logs := observer.New(zap.InfoLevel)
	a := New(Options{Config: cfg, Logger: zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))})
	done := make(chan error, 1)
	go func() { _, err := a.Run(ctx); done <- err }()
	h.waitCount(300)
	cancel() // a hard stop: nothing drains
	<-done
	first := h.fake.Count()
	if first >= 2000 {
		t.Fatalf("the backfill finished (%d events) before the stop; the test needs it interrupted", first)
	}
	if logs.FilterMessage("backfill done").Len() != 0 {
		t.Fatal("backfill reported done")
	}
	var state string
	if err := h.db.QueryRow(context.Background(), `SELECT state FROM census.backfills WHERE slot = 'pgsignal'`).Scan(&state); err != nil || state != "running" {
		t.Fatalf("backfill state %q (%v), want running", state, err)
	}
	// Rows inserted meanwhile are in the new snapshot's window.
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp) VALUES ('between', 'u1', now())`)
	h.fake.SetFaults(onesignaltest.Faults{})
	r := h.start(cfg)
	h.waitCount(2001)
	time.Sleep(300 * time.Millisecond)
	r.stop(t)
	if n, d := h.fake.Count(), h.fake.Duplicates(); n != 2001 || d < first {
		t.Errorf("%d unique events, %d duplicates; want 2001 and the %d events of the first attempt sent again under the same keys", n, d, first)
	}
	if h.logs.FilterMessageSnippet("redoing it with a new snapshot over the same windows, keeping the slot").Len() != 1 {
		t.Error("no log line saying the backfill is redone")
	}
}

// Two tables backfill together, one mapped by a transform: their rows are
// merged in time order (so each user's events arrive in time order across
// the tables), the transform applies to backfilled rows (filtering and
// enriching them), and a table's row filter applies too.
func TestBackfillTwoTablesWithTransform(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	h.exec(`CREATE TABLE analytics.users (id text PRIMARY KEY, plan text);
INSERT INTO analytics.users VALUES ('u0', 'pro'), ('u1', 'free');
CREATE TABLE analytics.orders (id int PRIMARY KEY, customer text NOT NULL, total numeric, placed_at timestamp);
-- orders every 2 minutes, events in between, over the last 3 hours
INSERT INTO analytics.orders SELECT i, 'u' || (i % 3), i * 10, (now() AT TIME ZONE 'UTC') - interval '3 hours' + i * interval '2 minutes' FROM generate_series(0, 80) i;
INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data)
SELECT CASE WHEN i % 10 = 0 THEN 'noise' ELSE 'view' END, 'u' || (i % 3), now() - interval '3 hours' + i * interval '2 minutes' + interval '1 minute', '{}'
FROM generate_series(0, 80) i`)
	cfg := h.config()
	cfg.Tables[0].Where = "event_name <> 'noise'"
	cfg.Tables[0].Backfill = &config.Backfill{Since: 2 * time.Hour}
	cfg.Tables = append(cfg.Tables, config.Table{Schema: "analytics", Name: "orders",
		Transform: `SELECT 'order' AS name, c.customer AS external_id, c.placed_at AS timestamp,
  jsonb_build_object('total', c.total, 'plan', u.plan) AS properties
FROM changes c LEFT JOIN analytics.users u ON u.id = c.customer WHERE c.total >= 100`,
		Backfill: &config.Backfill{Since: 2 * time.Hour, Column: "placed_at"}})
	if num := h.serverVersion(); num < 150000 {
		cfg.Tables[0].Where = "" // row filters need 15+
	}
	r := h.start(cfg)
	// The window holds the last 2 hours: orders 30..80 (51 rows, all with
	// total >= 100 but those below 100 are none: 30*10 = 300) and events
	// 30..80 less every tenth when filtered.
	wantOrders, wantViews := 0, 0
	for i := 30; i <= 80; i++ {
		if i*10 >= 100 {
			wantOrders++
		}
		if i%10 != 0 || cfg.Tables[0].Where == "" {
			wantViews++
		}
	}
	// The window's lower edge moves with the clock: allow the first row of
	// each table to fall out of it.
	h.waitCount(wantOrders + wantViews - 2)
	time.Sleep(500 * time.Millisecond)
	r.stop(t)
	evs := h.fake.Events()
	orders, views := 0, 0
	last := map[string]string{}
	for _, ev := range evs {
		switch ev.Name {
		case "order":
			orders++
			var p struct {
				Total float64 `json:"total"`
				Plan  *string `json:"plan"`
			}
			if err := json.Unmarshal(ev.Properties, &p); err != nil || p.Total < 300 {
				t.Errorf("order event %s: %v", ev.Properties, err)
			}
			if (ev.ExternalID == "u0") != (p.Plan != nil && *p.Plan == "pro") {
				t.Errorf("order of %s enriched with plan %v", ev.ExternalID, p.Plan)
			}
		case "view":
			views++
		case "noise":
			if cfg.Tables[0].Where != "" {
				t.Errorf("the row filter let %s through", ev.Name)
			}
			views++
		default:
			t.Errorf("unexpected event %s", ev.Name)
		}
		if ev.Timestamp < last[ev.ExternalID] {
			t.Errorf("user %s: %s at %s arrived after an event at %s", ev.ExternalID, ev.Name, ev.Timestamp, last[ev.ExternalID])
		}
		last[ev.ExternalID] = ev.Timestamp
	}
	if orders < wantOrders-1 || orders > wantOrders || views < wantViews-1 || views > wantViews || h.fake.Duplicates() != 0 {
		t.Errorf("%d orders and %d views (%d duplicates), want %d and %d", orders, views, h.fake.Duplicates(), wantOrders, wantViews)
	}
}

func (h *harness) serverVersion() int {
	h.t.Helper()
	var num int
	if err := h.db.QueryRow(context.Background(), `SELECT current_setting('server_version_num')::int`).Scan(&num); err != nil {
		h.t.Fatal(err)
	}
	return num
}

// A start that fails after the slot was created (here the window column
// is text, which the backfill finds out only then; a missing column stops
// the start before anything is created) leaves the backfill recorded as
// running: the next start redoes it, over the window recorded first — a
// row dated inside that window arrives even though, by then, it is older
// than `since`.
func TestBackfillFailedStartIsRedoneOverTheSameWindow(t *testing.T) {
	h := backfillHarness(t, 10, 40)
	cfg := h.config()
	cfg.Tables[0].Backfill = &config.Backfill{Since: 7*24*time.Hour + 3*time.Second, Column: "event_name"}
	err := h.runErr(cfg)
	if !strings.Contains(err.Error(), `is not a timestamptz, timestamp or date column`) {
		t.Fatalf("error %v, want the window column's type", err)
	}
	// Dated 7 days and 1 second ago: inside the recorded window, outside a
	// window measured 4 seconds later.
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp) VALUES ('edge', 'u1', now() - interval '7 days 1 second')`)
	time.Sleep(4 * time.Second)
	cfg.Tables[0].Backfill.Column = "event_timestamp"
	r := h.start(cfg)
	h.waitCount(41)
	time.Sleep(300 * time.Millisecond)
	r.stop(t)
	names := map[string]int{}
	for _, ev := range h.fake.Events() {
		names[ev.Name]++
	}
	if names["past"] != 40 || names["edge"] != 1 || len(h.fake.Events()) != 41 {
		t.Errorf("events by name %v, want 40 past and the edge row", names)
	}
	if h.logs.FilterMessageSnippet("redoing it with a new snapshot over the same windows, keeping the slot").Len() != 1 {
		t.Error("no log line saying the backfill is redone")
	}
}

// Window values without an event time (infinity, past the year 9999) are
// left out instead of stopping the backfill.
func TestBackfillSkipsTimelessValues(t *testing.T) {
	h := backfillHarness(t, 0, 20)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp) VALUES ('inf', 'u1', 'infinity'), ('far', 'u1', '20000-01-01 00:00:00+00')`)
	cfg := h.config()
	cfg.Tables[0].Backfill = &config.Backfill{Since: 7 * 24 * time.Hour}
	r := h.start(cfg)
	h.waitCount(20)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('live', 'u1')`)
	h.waitCount(21)
	r.stop(t)
	for _, ev := range h.fake.Events() {
		if ev.Name == "inf" || ev.Name == "far" {
			t.Errorf("event %s sent", ev.Name)
		}
	}
}

// A start-up error after the backfill imported its snapshot (here
// source.failover on a server before 17) returns at once: the backfill's
// connection and lock do not keep the pool from closing.
func TestBackfillStartErrorDoesNotHang(t *testing.T) {
	h := backfillHarness(t, 0, 5)
	if h.serverVersion() >= 170000 {
		t.Skip("failover slots work on 17+; the error needs an older server")
	}
	cfg := h.config()
	cfg.Source.Failover = true
	cfg.Tables[0].Backfill = &config.Backfill{Since: 7 * 24 * time.Hour}
	start := time.Now()
	err := h.runErr(cfg)
	if !strings.Contains(err.Error(), "failover needs PostgreSQL 17") || time.Since(start) > 15*time.Second {
		t.Errorf("after %s: %v; want the failover error at once", time.Since(start), err)
	}
}

// A second instance (high availability) that starts while the first one
// backfills waits for it instead of taking the backfill over, then waits
// for the slot and takes over the stream when the first one stops.
func TestBackfillSecondInstanceWaits(t *testing.T) {
	h := backfillHarness(t, 0, 400)
	cfg := h.config()
	// About 4 seconds of backfill: time for the second instance to start.
	cfg.Sink.BatchSize, cfg.Sink.Concurrency = 10, 1
	cfg.Tables[0].Backfill = &config.Backfill{Since: 7 * 24 * time.Hour}
	h.fake.SetFaults(onesignaltest.Faults{Latency: 100 * time.Millisecond})
	a := h.start(cfg)
	h.waitCount(20)
	core, logs := observer.New(zap.InfoLevel)
	b := New(Options{Config: cfg, Logger: zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))})
	bDone := make(chan error, 1)
	go func() { _, err := b.Run(context.Background()); bDone <- err }()
	deadline := time.Now().Add(10 * time.Second)
	for logs.FilterMessageSnippet("another pgsignal instance is backfilling").Len() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if logs.FilterMessageSnippet("another pgsignal instance is backfilling").Len() == 0 {
		t.Fatal("the second instance did not wait for the backfill")
	}
	h.waitCount(400)
	h.fake.SetFaults(onesignaltest.Faults{})
	a.stop(t)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('after', 'u1')`)
	h.waitCount(401)
	b.Stop()
	if err := <-bDone; err != nil {
		t.Fatal(err)
	}
	if h.fake.Count() != 401 || h.fake.Duplicates() != 0 || logs.FilterMessageSnippet("redoing").Len() != 0 {
		t.Errorf("%d events, %d duplicates, redo logged %d times; want 401, 0, 0", h.fake.Count(), h.fake.Duplicates(), logs.FilterMessageSnippet("redoing").Len())
	}
}

// A bookkeeping schema whose backfills table predates the recorded windows
// gets the column at start-up, and the backfill runs.
func TestBackfillOlderBackfillsTable(t *testing.T) {
	h := backfillHarness(t, 0, 10)
	h.exec(`CREATE SCHEMA census;
CREATE TABLE census.backfills (
  slot        text PRIMARY KEY,
  state       text NOT NULL,
  tables      text[] NOT NULL,
  rows_total  bigint NOT NULL DEFAULT 0,
  rows_done   bigint NOT NULL DEFAULT 0,
  started_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
)`)
	cfg := h.config()
	cfg.Tables[0].Backfill = &config.Backfill{Since: 7 * 24 * time.Hour}
	r := h.start(cfg)
	h.waitCount(10)
	r.stop(t)
	var windows string
	if err := h.db.QueryRow(context.Background(), `SELECT windows::text FROM census.backfills`).Scan(&windows); err != nil || !strings.Contains(windows, "analytics.user_events") {
		t.Errorf("windows %q (%v), want the table's window start", windows, err)
	}
}
