package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/internal/preview"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// previewConfig maps analytics.user_events by columns and analytics.orders
// by a transform that makes two events of an order (and none of a free
// one).
func (e *env) previewConfig() string {
	e.t.Helper()
	cfg := fmt.Sprintf(`source:
  dsn: %q
onesignal:
  app_id: %q
  api_key: "${TEST_ONESIGNAL_KEY}"
  url: %q
tables:
  - table: analytics.user_events
    name: event_name
    external_id: user_id
    timestamp: event_timestamp
    properties: event_data
  - table: analytics.orders
    transform: |
      SELECT 'order_placed' AS name, c.customer AS external_id, c.placed_at AS timestamp,
             jsonb_build_object('total', c.total) AS properties
      FROM changes c WHERE c.total > 0
      UNION ALL
      SELECT 'order_item', c.customer, c.placed_at, jsonb_build_object('sku', c.sku)
      FROM changes c WHERE c.total > 0
`, e.pg.DSN(""), e.fake.AppID(), e.fake.URL())
	path := filepath.Join(e.dir, "preview.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// pgsignal preview shows the latest rows of each table as the events or
// dead letters they become: good rows, a NULL user, an event over 2,024
// bytes and a transform that makes two events of a row; it reads only (no
// slot, no bookkeeping schema, no request to OneSignal).
func TestPreview(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.exec(`CREATE TABLE analytics.orders (id bigserial PRIMARY KEY, customer text, sku text, total numeric, placed_at timestamptz)`)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data) VALUES
  ('signup', 'u1', '2026-12-01 10:00:00+00', '{"plan": "free"}'),
  ('purchase', NULL, '2026-12-01 10:01:00+00', '{"sku": "a"}'),
  ('purchase', 'u2', '2026-12-01 10:02:00.123+00', jsonb_build_object('note', repeat('x', 2100))),
  ('purchase', 'u3', '2026-12-01 10:03:00+00', '{"sku": "b", "qty": 2}')`)
	e.exec(`INSERT INTO analytics.orders (customer, sku, total, placed_at) VALUES
  ('u1', 'sku-1', 9.50, '2026-12-01 11:00:00+00'),
  ('u4', 'sku-2', 0, '2026-12-01 11:05:00+00')`)
	cfg := e.previewConfig()

	out := e.runCLI(cfg, "preview")
	want := `analytics.user_events: the latest 4 row(s) by id, through its mapping
  row id=4:
    event "purchase" external_id="u3" timestamp=2026-12-01T10:03:00.000Z size=170 bytes
      properties {"qty": 2, "sku": "b"}
  row id=3:
    dead letter: event is 2260 bytes; OneSignal accepts at most 2024 bytes per event
  row id=2:
    dead letter: external_id column "user_id" is NULL
  row id=1:
    event "signup" external_id="u1" timestamp=2026-12-01T10:00:00.000Z size=162 bytes
      properties {"plan": "free"}
  4 row(s): 2 event(s), 2 dead letter(s)

analytics.orders: the latest 2 row(s) by id, through its transform
  row id=2: no event (the transform returns no row for it)
  row id=1:
    event "order_placed" external_id="u1" timestamp=2026-12-01T11:00:00.000Z size=167 bytes
      properties {"total": 9.50}
    event "order_item" external_id="u1" timestamp=2026-12-01T11:00:00.000Z size=166 bytes
      properties {"sku": "sku-1"}
  2 row(s): 2 event(s), 0 dead letter(s)
`
	if out != want {
		t.Fatalf("preview:\n%s\nwant:\n%s", out, want)
	}

	// --json, one table, --limit.
	js := e.runCLI(cfg, "preview", "--json", "--table", "analytics.user_events", "--limit", "2")
	var rep preview.Report
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	if len(rep.Tables) != 1 || len(rep.Tables[0].Rows) != 2 {
		t.Fatalf("json: %s", js)
	}
	r4, r3 := rep.Tables[0].Rows[0], rep.Tables[0].Rows[1]
	if *r4.Key[0].Value != "4" || len(r4.Events) != 1 || r4.Events[0].Name != "purchase" || r4.Events[0].ExternalID != "u3" ||
		compactJSON(t, r4.Events[0].Properties) != `{"qty":2,"sku":"b"}` || r4.Events[0].Size != 170 || len(r4.DeadLetters) != 0 {
		t.Fatalf("row 4: %s", js)
	}
	if *r3.Key[0].Value != "3" || len(r3.Events) != 0 || len(r3.DeadLetters) != 1 ||
		!strings.HasPrefix(r3.DeadLetters[0].Reason, "event is ") || !strings.Contains(compactJSON(t, r3.DeadLetters[0].Row), `"user_id":"u2"`) {
		t.Fatalf("row 3: %s", js)
	}

	// A table that is not configured is a wrong command line's error.
	if out, code := runBinary(t, []string{"TEST_ONESIGNAL_KEY=k"}, "preview", "--config", cfg, "--table", "analytics.nope"); code != 1 ||
		!strings.Contains(out, "pgsignal: --table analytics.nope: not a configured table; the configured tables are analytics.user_events, analytics.orders\n") {
		t.Fatalf("--table analytics.nope: exit %d\n%s", code, out)
	}
	// A table that cannot be read is said so; the others are previewed.
	e.exec(`ALTER TABLE analytics.user_events RENAME TO user_events_old`)
	out = e.runCLI(cfg, "preview", "--limit=1")
	if !strings.HasPrefix(out, "analytics.user_events: cannot be previewed: ") || !strings.Contains(out, "table not found") ||
		!strings.Contains(out, "\nanalytics.orders: the latest 1 row(s) by id, through its transform\n  row id=2: no event") {
		t.Fatalf("preview with a missing table:\n%s", out)
	}

	// Nothing was written: no slot, no bookkeeping schema, no request.
	if n := e.queryInt(`SELECT count(*) FROM pg_replication_slots`); n != 0 {
		t.Fatalf("%d slot(s)", n)
	}
	if n := e.queryInt(`SELECT count(*) FROM pg_namespace WHERE nspname = 'pgsignal'`); n != 0 {
		t.Fatal("the bookkeeping schema was created")
	}
	if n := e.fake.Requests(); n != 0 {
		t.Fatalf("%d request(s) to OneSignal", n)
	}
}

func compactJSON(t *testing.T, b []byte) string {
	t.Helper()
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return out.String()
}
