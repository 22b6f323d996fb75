package app

import (
	"context"
	"fmt"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// TestUnixSocketBacklogExactlyOnce: over the server's Unix socket the
// replication connection reads ahead (a bounded 4 MiB buffer filled by a
// goroutine of its own). A backlog written while pgsignal was stopped, 3,000
// one-row transactions and one of 60,000 rows (some 20 MB of pgoutput, five
// times the buffer), is delivered exactly once: every row, no duplicate.
func TestUnixSocketBacklogExactlyOnce(t *testing.T) {
	const small, bulk = 3000, 60000
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	cfg := h.config()
	cfg.Source.DSN = h.pg.SocketDSN("")
	r := h.start(cfg)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp) VALUES ('first', 'u0', now())`)
	h.waitCount(1)
	if n := h.logs.FilterMessage("streaming").FilterField(zap.Bool("read_ahead", true)).Len(); n != 1 {
		t.Fatalf("%d 'streaming' lines with read_ahead true, want 1 (the Unix socket reads ahead)", n)
	}
	r.stop(t)

	ctx := context.Background()
	h.exec(`SET synchronous_commit = off`)
	for i := 1; i <= small; i++ {
		if _, err := h.db.Exec(ctx, `INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data)
VALUES ('small', $1, now(), '{"n": 1}')`, fmt.Sprintf("u%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	h.exec(fmt.Sprintf(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data)
SELECT 'bulk', 'u' || i, now(), jsonb_build_object('pad', repeat(md5(i::text), 6))
FROM generate_series(%d, %d) i`, small+1, small+bulk))

	start := time.Now()
	r = h.start(cfg)
	defer r.stop(t)
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	want := 1 + small + bulk
	if err := h.fake.WaitForCount(ctx, want); err != nil {
		t.Fatalf("waiting for %d events (have %d): %v", want, h.fake.Count(), err)
	}
	t.Logf("figures: %d events of the backlog delivered in %s", small+bulk, time.Since(start).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond)
	events := h.fake.Events()
	if len(events) != want || h.fake.Duplicates() != 0 {
		t.Fatalf("%d events, %d duplicates; want %d and 0", len(events), h.fake.Duplicates(), want)
	}
	seen := make(map[string]bool, want)
	for _, ev := range events {
		seen[ev.ExternalID] = true
	}
	for i := range want {
		if id := fmt.Sprintf("u%d", i); !seen[id] {
			t.Fatalf("no event for %s", id)
		}
	}
}
