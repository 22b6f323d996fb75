package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/internal/store"
	"github.com/pgsignal/pgsignal/sink"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// enrichTransform enriches with the users table, filters out noise, splits
// large purchases into a second event and divides by the quantity (zero
// fails at run time).
const enrichTransform = `SELECT c.event_name AS name, c.user_id AS external_id, c.event_timestamp AS timestamp,
       coalesce(c.event_data, '{}') || jsonb_build_object('plan', u.plan, 'share', 100 / (c.event_data->>'qty')::int) AS properties
FROM changes c LEFT JOIN analytics.users u ON u.id = c.user_id
WHERE c.event_name <> 'noise'
UNION ALL
SELECT 'big_purchase', c.user_id, c.event_timestamp, jsonb_build_object('qty', (c.event_data->>'qty')::int)
FROM changes c WHERE c.event_name = 'purchase' AND (c.event_data->>'qty')::int >= 10`

func transformHarness(t *testing.T) *harness {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	h.exec(`CREATE TABLE analytics.users (id text PRIMARY KEY, plan text);
INSERT INTO analytics.users VALUES ('u1', 'pro'), ('u2', 'free');
CREATE TABLE analytics.logins (id bigserial PRIMARY KEY, user_id text NOT NULL)`)
	return h
}

func (h *harness) transformConfig() *config.Config {
	cfg := h.config()
	cfg.Tables = []config.Table{
		{Schema: "analytics", Name: "user_events", Transform: enrichTransform},
		{Schema: "analytics", Name: "logins", EventNameValue: "login", ExternalID: "user_id"},
	}
	return cfg
}

// A transform joins, filters, computes and splits rows; a row it fails on
// becomes a dead letter with the SQL error while the rest go on; rows of a
// plainly mapped table in the same transactions keep commit order per user.
func TestTransformEndToEnd(t *testing.T) {
	h := transformHarness(t)
	r := h.start(h.transformConfig())
	h.exec(`BEGIN;
INSERT INTO analytics.logins (user_id) VALUES ('u1');
INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data) VALUES
  ('purchase', 'u1', '2026-11-01 10:00:00+00', '{"qty": 2}'),
  ('noise',    'u2', '2026-11-01 10:00:01+00', '{"qty": 1}'),
  ('purchase', 'u3', '2026-11-01 10:00:02+00', '{"qty": 10}'),
  ('purchase', 'u2', '2026-11-01 10:00:03+00', '{"qty": 0}'),
  ('view',     'u2', '2026-11-01 10:00:04+00', '{"qty": 5}');
INSERT INTO analytics.logins (user_id) VALUES ('u1');
COMMIT`)
	h.waitCount(6)
	time.Sleep(300 * time.Millisecond) // anything extra would arrive now
	sum := r.stop(t)

	var got []string
	byUser := map[string][]string{}
	for _, ev := range h.fake.Events() {
		got = append(got, fmt.Sprintf("%s|%s|%s|%s", ev.Name, ev.ExternalID, ev.Timestamp, compactJSON(t, ev.Properties)))
		byUser[ev.ExternalID] = append(byUser[ev.ExternalID], ev.Name)
	}
	sort.Strings(got)
	want := []string{
		"big_purchase|u3|2026-11-01T10:00:02.000Z|{\"qty\":10}",
		"purchase|u1|2026-11-01T10:00:00.000Z|{\"qty\":2,\"plan\":\"pro\",\"share\":50}",
		"purchase|u3|2026-11-01T10:00:02.000Z|{\"qty\":10,\"plan\":null,\"share\":10}",
		"view|u2|2026-11-01T10:00:04.000Z|{\"qty\":5,\"plan\":\"free\",\"share\":20}",
	}
	var gotTransformed []string
	logins := 0
	for _, g := range got {
		if strings.HasPrefix(g, "login|") {
			logins++
			continue
		}
		gotTransformed = append(gotTransformed, g)
	}
	if strings.Join(gotTransformed, "\n") != strings.Join(want, "\n") || logins != 2 {
		t.Errorf("events:\n%s\nwant:\n%s\nand 2 logins (got %d)", strings.Join(gotTransformed, "\n"), strings.Join(want, "\n"), logins)
	}
	if u1 := strings.Join(byUser["u1"], ","); u1 != "login,purchase,login" {
		t.Errorf("u1's events arrived as %s, want login,purchase,login (commit order)", u1)
	}
	if u3 := strings.Join(byUser["u3"], ","); u3 != "purchase,big_purchase" {
		t.Errorf("u3's events arrived as %s, want purchase,big_purchase (the transform's order)", u3)
	}
	keys := map[string]bool{}
	for _, ev := range h.fake.Events() {
		keys[ev.IdempotencyKey] = true
	}
	if len(keys) != 6 || h.fake.Duplicates() != 0 {
		t.Errorf("%d distinct keys for 6 events, %d duplicates", len(keys), h.fake.Duplicates())
	}
	var reason, row string
	if err := h.db.QueryRow(context.Background(), `SELECT reason, source_row::text FROM census.dead_letters`).Scan(&reason, &row); err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	if !strings.Contains(reason, "division by zero") || !strings.Contains(reason, "22012") {
		t.Errorf("dead letter reason %q, want the SQL error with its SQLSTATE", reason)
	}
	if !strings.Contains(row, `"user_id": "u2"`) || !strings.Contains(row, `"qty": 0`) {
		t.Errorf("dead letter row %s, want the input row", row)
	}
	// 7 rows: 1 filtered, 1 split in two, 1 dead letter.
	if sum.Received != 7 || sum.Delivered != 6 || sum.DeadLettered != 1 {
		t.Errorf("received %d, delivered %d, dead-lettered %d; want 7, 6, 1", sum.Received, sum.Delivered, sum.DeadLettered)
	}
	// Everything is handled: the slot holds no unconfirmed insert.
	var left int
	if err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM pg_logical_slot_peek_binary_changes('pgsignal', NULL, NULL,
  'proto_version', '1', 'publication_names', 'pgsignal') WHERE substr(data, 1, 1) = 'I'`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d inserts left unconfirmed in the slot (%v), want 0", left, err)
	}
}

// A transform PostgreSQL cannot prepare stops pgsignal at start-up with
// the SQL error, before any slot or event.
func TestTransformNotPreparable(t *testing.T) {
	h := transformHarness(t)
	for _, tt := range []struct {
		sql  string
		want []string
	}{
		{`SELECT c.nope AS name, c.user_id AS external_id FROM changes c`, []string{"analytics.user_events", "transform", `column c.nope does not exist`}},
		{`SELECT c.event_name AS name FROM changes c`, []string{"analytics.user_events", "external_id"}},
		{`SELECT c.event_name AS name, c.user_id AS external_id, c.event_name AS properties FROM changes c`, []string{"properties", "jsonb"}},
		{`SELEC 1`, []string{"syntax error"}},
	} {
		cfg := h.transformConfig()
		cfg.Tables[0].Transform = tt.sql
		err := h.runErr(cfg)
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("transform %q: error %q does not mention %q", tt.sql, err, w)
			}
		}
	}
	var slots int
	if err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots`).Scan(&slots); err != nil || slots != 0 {
		t.Errorf("%d slots after failed start-ups (%v), want none", slots, err)
	}
}

// PostgreSQL crashes and restarts while transformed rows stream into a slow OneSignal:
// the transform's connection and the stream both recover, and every row
// arrives (once per key).
func TestTransformSurvivesPostgresRestart(t *testing.T) {
	h := transformHarness(t)
	cfg := h.transformConfig()
	cfg.Tables[0].Transform = `SELECT c.event_name AS name, c.user_id AS external_id,
  jsonb_build_object('n', (c.event_data->>'n')::int, 'plan', u.plan) AS properties
FROM changes c LEFT JOIN analytics.users u ON u.id = c.user_id`
	cfg.Sink.BatchSize, cfg.Sink.Concurrency = 100, 2
	h.fake.SetFaults(onesignaltest.Faults{Latency: 100 * time.Millisecond})
	r := h.start(cfg)
	const n = 10000
	for i := 0; i < n; i += 1000 {
		h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data)
SELECT 'ev', 'u' || (i % 3), jsonb_build_object('n', i) FROM generate_series($1::int, $2::int) i`, i, i+999)
	}
	h.waitCount(1000)
	// A crash: no shutdown waits for the walsender to send what it has.
	if err := h.pg.Kill(); err != nil {
		t.Fatal(err)
	}
	before := h.fake.Count()
	time.Sleep(500 * time.Millisecond)
	if err := h.pg.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The harness connection died with the server.
	db, err := h.pg.Connect(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	h.fake.SetFaults(onesignaltest.Faults{})
	h.waitCount(n)
	r.stop(t)
	if before >= n/2 || h.logs.FilterMessageSnippet("reconnecting").Len() == 0 {
		t.Fatalf("the restart came too late (%d of %d events had arrived) or was not noticed", before, n)
	}
	seen := map[int]int{}
	for _, ev := range h.fake.Events() {
		var p struct {
			N    int     `json:"n"`
			Plan *string `json:"plan"`
		}
		if err := json.Unmarshal(ev.Properties, &p); err != nil {
			t.Fatal(err)
		}
		seen[p.N]++
		if (ev.ExternalID == "u1") != (p.Plan != nil && *p.Plan == "pro") {
			t.Errorf("event %d of %s has plan %v", p.N, ev.ExternalID, p.Plan)
		}
	}
	for i := 0; i < n; i++ {
		if seen[i] != 1 {
			t.Fatalf("row %d arrived %d times", i, seen[i])
		}
	}
	t.Logf("%d rows, %d duplicates absorbed by key", n, h.fake.Duplicates())
}

// compactJSON compacts raw JSON keeping its key order ("null" for nil).
func compactJSON(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	if raw == nil {
		return "null"
	}
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return b.String()
}

// A transform that fails for a reason that is not the rows' (the joined
// table is gone) holds the rows back and retries; once the table is back
// every row arrives, and none became a dead letter.
func TestTransformRetriesWhileTableMissing(t *testing.T) {
	h := transformHarness(t)
	h.stallTimeout = 1500 * time.Millisecond
	r := h.start(h.transformConfig())
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('a', 'u1', '{"qty": 1}')`)
	h.waitCount(1)
	h.exec(`ALTER TABLE analytics.users RENAME TO users_away`)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('b', 'u1', '{"qty": 1}'), ('c', 'u2', '{"qty": 1}')`)
	h.exec(`INSERT INTO analytics.logins (user_id) VALUES ('u2')`)
	deadline := time.Now().Add(10 * time.Second)
	for h.logs.FilterMessageSnippet("transform could not be evaluated").Len() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := h.fake.Count(); n != 1 {
		t.Fatalf("%d events while the transform fails, want 1 (the rows wait, and the login behind them too)", n)
	}
	// The stall is reported, naming the transform.
	for h.logs.FilterMessageSnippet("stalled").Len() == 0 && time.Now().Before(deadline.Add(5*time.Second)) {
		time.Sleep(50 * time.Millisecond)
	}
	if st := h.logs.FilterMessageSnippet("stalled").All(); len(st) != 1 || !strings.Contains(fmt.Sprint(st[0].ContextMap()["stuck"]), "SQL transform") {
		t.Errorf("stall reports %v, want one naming the SQL transform", st)
	}
	h.exec(`ALTER TABLE analytics.users_away RENAME TO users`)
	h.waitCount(4)
	sum := r.stop(t)
	var got []string
	for _, ev := range h.fake.Events() {
		got = append(got, ev.Name+"|"+ev.ExternalID)
	}
	if strings.Join(got, " ") != "a|u1 b|u1 c|u2 login|u2" && strings.Join(got, " ") != "a|u1 c|u2 b|u1 login|u2" &&
		strings.Join(got, " ") != "a|u1 c|u2 login|u2 b|u1" {
		t.Errorf("events %v", got)
	}
	if sum.DeadLettered != 0 {
		t.Errorf("%d dead letters, want none: the failure was not the rows'", sum.DeadLettered)
	}
	if e := h.logs.FilterMessageSnippet("transform could not be evaluated").All()[0]; !strings.Contains(fmt.Sprint(e.ContextMap()["error"]), "users") {
		t.Errorf("retry log %v does not name the missing table", e.ContextMap())
	}
}

// With emit: [insert, update], updated rows go through the transform too;
// without it, updates of a transformed table are not events.
func TestTransformUpdates(t *testing.T) {
	h := transformHarness(t)
	cfg := h.transformConfig()
	cfg.Tables[0].Transform = `SELECT c.event_name AS name, c.user_id AS external_id,
  jsonb_build_object('qty', (c.event_data->>'qty')::int, 'plan', u.plan) AS properties
FROM changes c LEFT JOIN analytics.users u ON u.id = c.user_id`
	cfg.Tables[0].Emit = []string{config.EmitInsert, config.EmitUpdate}
	r := h.start(cfg)
	h.exec(`INSERT INTO analytics.user_events (id, event_name, user_id, event_data) VALUES (1, 'cart', 'u1', '{"qty": 1}')`)
	h.waitCount(1)
	h.exec(`UPDATE analytics.user_events SET event_data = '{"qty": 3}', event_name = 'cart_changed' WHERE id = 1`)
	h.exec(`INSERT INTO analytics.logins (user_id) VALUES ('u1')`)
	h.exec(`UPDATE analytics.logins SET user_id = 'u2'`) // a mapped table without emit update: no event
	h.waitCount(3)
	time.Sleep(300 * time.Millisecond)
	r.stop(t)
	var got []string
	for _, ev := range h.fake.Events() {
		got = append(got, ev.Name+"|"+ev.ExternalID+"|"+compactJSON(t, ev.Properties))
	}
	want := `cart|u1|{"qty":1,"plan":"pro"} cart_changed|u1|{"qty":3,"plan":"pro"} login|u1|null`
	if strings.Join(got, " ") != want {
		t.Errorf("events %q, want %s", got, want)
	}
}

// A row whose two events are both rejected leaves two dead letters, one per
// event (they share the row's position).
func TestTransformTwoRejectedOutputs(t *testing.T) {
	h := transformHarness(t)
	cfg := h.transformConfig()
	cfg.Tables[0].Transform = `SELECT NULL::text AS name, c.user_id AS external_id FROM changes c
UNION ALL SELECT '', c.user_id FROM changes c`
	r := h.start(cfg)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('x', 'u1')`)
	h.exec(`INSERT INTO analytics.logins (user_id) VALUES ('u1')`)
	h.waitCount(1)
	sum := r.stop(t)
	rows, err := h.db.Query(context.Background(), `SELECT reason FROM census.dead_letters ORDER BY reason`)
	if err != nil {
		t.Fatal(err)
	}
	var reasons []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		reasons = append(reasons, s)
	}
	if sum.DeadLettered != 2 || len(reasons) != 2 || !strings.Contains(reasons[0], `is NULL`) || !strings.Contains(reasons[1], `is empty`) {
		t.Errorf("%d dead-lettered, stored %q; want the two events' letters", sum.DeadLettered, reasons)
	}
}

// A transform that turns each row into 2,000 events (a fan-out to a
// segment): every event arrives once, with its own key, and batches shrink
// to keep a batch's events near sink.batch_size.
func TestTransformLargeFanOut(t *testing.T) {
	h := transformHarness(t)
	cfg := h.transformConfig()
	cfg.Tables[0].Transform = `SELECT c.event_name AS name, c.user_id || '-' || g AS external_id
FROM changes c, generate_series(1, 2000) g`
	r := h.start(cfg)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) SELECT 'campaign', 'seg' || i FROM generate_series(1, 5) i`)
	h.waitCount(10000)
	time.Sleep(300 * time.Millisecond)
	sum := r.stop(t)
	keys := map[string]bool{}
	for _, ev := range h.fake.Events() {
		keys[ev.IdempotencyKey] = true
	}
	if h.fake.Count() != 10000 || len(keys) != 10000 || sum.Delivered != 10000 {
		t.Errorf("%d events, %d keys, %d delivered; want 10000 of each", h.fake.Count(), len(keys), sum.Delivered)
	}
}

// A bookkeeping schema from before one-letter-per-event (its dead_letters
// unique on the position alone) is migrated at start-up: both rejected
// events of a row are stored.
func TestDeadLettersMigratedToOnePerEvent(t *testing.T) {
	h := transformHarness(t)
	h.exec(`CREATE SCHEMA census;
CREATE TABLE census.dead_letters (
  id              bigserial PRIMARY KEY,
  slot            text NOT NULL,
  commit_lsn      pg_lsn NOT NULL,
  ordinal         bigint NOT NULL,
  table_name      text NOT NULL,
  idempotency_key uuid,
  event           jsonb,
  source_row      jsonb,
  reason          text NOT NULL,
  attempts        integer NOT NULL DEFAULT 0,
  first_failed_at timestamptz NOT NULL DEFAULT now(),
  last_failed_at  timestamptz NOT NULL DEFAULT now(),
  created_at      timestamptz NOT NULL DEFAULT now(),
  UNIQUE (slot, commit_lsn, ordinal)
)`)
	cfg := h.transformConfig()
	cfg.Tables[0].Transform = `SELECT NULL::text AS name, c.user_id AS external_id FROM changes c
UNION ALL SELECT '', c.user_id FROM changes c`
	r := h.start(cfg)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('x', 'u1')`)
	h.exec(`INSERT INTO analytics.logins (user_id) VALUES ('u1')`)
	h.waitCount(1)
	r.stop(t)
	var n int
	if err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM census.dead_letters`).Scan(&n); err != nil || n != 2 {
		t.Errorf("%d dead letters stored (%v), want 2", n, err)
	}
	var constraints int
	if err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM pg_constraint WHERE conrelid = 'census.dead_letters'::regclass AND contype = 'u'`).Scan(&constraints); err != nil || constraints != 0 {
		t.Errorf("%d unique constraints left on dead_letters (%v), want the old one dropped", constraints, err)
	}
}

// The table store keeps one letter per event: the same event written
// again (a resend after a crash) adds nothing, another event of the same
// row adds one.
func TestTableDeadLettersOnePerEvent(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	pool := h.pool()
	if err := store.EnsureSchema(context.Background(), pool, "census"); err != nil {
		t.Fatal(err)
	}
	store := &sink.TableDeadLetters{Pool: pool, Schema: "census", Slot: "s"}
	pos := cdc.Position{CommitLSN: 0x1000, Ordinal: 3}
	a := cdc.DeadLetter{Pos: pos, Table: "t", IdempotencyKey: "11111111-1111-5111-8111-111111111111", Reason: "a"}
	b := a
	b.IdempotencyKey, b.Reason = "22222222-2222-5222-8222-222222222222", "b"
	for _, batch := range [][]cdc.DeadLetter{{a}, {a, b}, {b}} {
		if err := store.Write(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	var reasons string
	if err := h.db.QueryRow(context.Background(), `SELECT string_agg(reason, ',' ORDER BY id) FROM census.dead_letters`).Scan(&reasons); err != nil || reasons != "a,b" {
		t.Errorf("letters %q (%v), want a,b", reasons, err)
	}
}
