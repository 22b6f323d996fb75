package app

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/config"
)

// TestQueryTransformWhereDeadLetters: the query method maps rows as the
// logical method does: a SQL transform (joins, filters, splits a row in two,
// a row it fails on becomes a dead letter), a plain mapping with a where,
// and the dead letters in the bookkeeping schema; no slot.
func TestQueryTransformWhereDeadLetters(t *testing.T) {
	h := transformHarness(t)
	cfg := h.transformConfig()
	cfg.Source.Method = config.MethodQuery
	cfg.Source.PollInterval = 20 * time.Millisecond
	cfg.Tables[0].Cursor = "id"
	cfg.Tables[1].Cursor = "id"
	cfg.Tables[1].Where = "user_id <> 'skip'"
	r := h.start(cfg)
	deadline := time.Now().Add(30 * time.Second)
	for {
		var n int
		_ = h.db.QueryRow(context.Background(), `SELECT count(*) FROM census.query_positions`).Scan(&n)
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no first position in census.query_positions in 30s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.exec(`BEGIN;
INSERT INTO analytics.logins (user_id) VALUES ('u1'), ('skip');
INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data) VALUES
  ('purchase', 'u1', '2026-11-01 10:00:00+00', '{"qty": 2}'),
  ('noise',    'u2', '2026-11-01 10:00:01+00', '{"qty": 1}'),
  ('purchase', 'u3', '2026-11-01 10:00:02+00', '{"qty": 10}'),
  ('purchase', 'u2', '2026-11-01 10:00:03+00', '{"qty": 0}');
COMMIT`)
	h.waitCount(4)
	var letters int
	for time.Now().Before(deadline) {
		_ = h.db.QueryRow(context.Background(), `SELECT count(*) FROM census.dead_letters`).Scan(&letters)
		if letters == 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	sum := r.stop(t)
	var got []string
	for _, ev := range h.fake.Events() {
		got = append(got, fmt.Sprintf("%s|%s|%s", ev.Name, ev.ExternalID, compactJSON(t, ev.Properties)))
	}
	sort.Strings(got)
	want := []string{
		"big_purchase|u3|{\"qty\":10}",
		"login|u1|null",
		"purchase|u1|{\"qty\":2,\"plan\":\"pro\",\"share\":50}",
		"purchase|u3|{\"qty\":10,\"plan\":null,\"share\":10}",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") || h.fake.Duplicates() != 0 {
		t.Errorf("events:\n%s\nwant:\n%s\n(%d duplicates)", strings.Join(got, "\n"), strings.Join(want, "\n"), h.fake.Duplicates())
	}
	var reason, row string
	if err := h.db.QueryRow(context.Background(), `SELECT reason, source_row::text FROM census.dead_letters`).Scan(&reason, &row); err != nil {
		t.Fatalf("dead letter: %v", err)
	}
	if !strings.Contains(reason, "division by zero") || !strings.Contains(row, `"qty": 0`) {
		t.Errorf("dead letter %q for %s, want the SQL error for the qty 0 row", reason, row)
	}
	// 5 rows read that are mapped (the 'skip' login is filtered by the
	// server), the noise row filtered by the transform.
	if sum.Received != 5 || sum.Delivered != 4 || sum.DeadLettered != 1 {
		t.Errorf("received %d, delivered %d, dead-lettered %d; want 5, 4, 1", sum.Received, sum.Delivered, sum.DeadLettered)
	}
	var slots int
	if err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots`).Scan(&slots); err != nil || slots != 0 {
		t.Errorf("%d slots (%v); the query method creates none", slots, err)
	}
}
