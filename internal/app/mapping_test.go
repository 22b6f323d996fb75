package app

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// Two tables in two schemas with different mappings, one with a constant name.
func TestStreamTwoTablesTwoSchemas(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	h.exec(`CREATE SCHEMA shop; CREATE TABLE shop.orders (order_id bigint PRIMARY KEY, customer text, amount numeric, placed_at timestamp)`)
	cfg := h.config()
	cfg.Tables = append(cfg.Tables, config.Table{Schema: "shop", Name: "orders", EventNameValue: "order_placed",
		NamePrefix: "shop_", ExternalID: "customer", Timestamp: "placed_at", Properties: []string{"order_id", "amount"}, PropertiesIsList: true})
	r := h.start(cfg)
	h.exec(`BEGIN;
INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data) VALUES ('login', 'alice', '2025-01-02 03:04:05.678+00', '{"via": "web"}');
INSERT INTO shop.orders VALUES (7, 'alice', 19.90, '2025-01-02 03:05:00');
COMMIT;
INSERT INTO shop.orders VALUES (8, 'bob', 5, '2025-01-03 00:00:00');`)
	h.waitCount(3)
	r.stop(t)
	var got []string
	for _, ev := range h.fake.Events() {
		got = append(got, fmt.Sprintf("%s|%s|%s|%s", ev.Name, ev.ExternalID, ev.Timestamp, ev.Properties))
	}
	sort.Strings(got)
	want := []string{
		`login|alice|2025-01-02T03:04:05.678Z|{"via": "web"}`,
		`shop_order_placed|alice|2025-01-02T03:05:00.000Z|{"order_id":7,"amount":19.90}`,
		`shop_order_placed|bob|2025-01-03T00:00:00.000Z|{"order_id":8,"amount":5}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A NULL external_id and an oversize row become dead letters with reasons;
// the rows around them are delivered.
func TestStreamDeadLetters(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	r := h.start(h.config())
	big := strings.Repeat("x", 3000)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES
  ('before', 'u1', '{}'), ('nouser', NULL, '{}'), ('big', 'u2', jsonb_build_object('blob', $1::text)),
  ('emptyname', 'u3', '{}'), ('', 'u3', '{}'), ('notobject', 'u4', '[1,2]'), ('after', 'u5', NULL)`, big)
	h.waitCount(3)
	sum := r.stop(t)
	var names []string
	for _, ev := range h.fake.Events() {
		names = append(names, ev.Name)
	}
	sort.Strings(names)
	if strings.Join(names, ",") != "after,before,emptyname" {
		t.Fatalf("delivered %v", names)
	}
	if sum.Delivered != 3 || sum.DeadLettered != 4 {
		t.Fatalf("summary %+v", sum)
	}
	rows, err := h.db.Query(context.Background(), `SELECT ordinal, table_name, reason, source_row->>'event_name', event IS NULL
FROM census.dead_letters ORDER BY ordinal`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for rows.Next() {
		var ord int
		var table, reason, name string
		var noEvent bool
		if err := rows.Scan(&ord, &table, &reason, &name, &noEvent); err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d|%s|%s|%s|%v", ord, table, name, reason, noEvent))
	}
	want := []string{
		`1|analytics.user_events|nouser|external_id column "user_id" is NULL|true`,
		`2|analytics.user_events|big|event is 3155 bytes; OneSignal accepts at most 2024 bytes per event|true`,
		`4|analytics.user_events||event name column "event_name" is empty|true`,
		`5|analytics.user_events|notobject|properties column "event_data" holds an array, not a JSON object|true`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("dead letters:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
