package app

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// Three transactions of 1, 10 and 1,000 rows become exactly 1,011 events,
// every field as inserted, in commit order per user, with distinct keys.
func TestStreamThreeTransactions(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	r := h.start(h.config())

	base := time.Date(2025, 10, 21, 19, 9, 32, 263000000, time.UTC)
	sizes := []int{1, 10, 1000}
	type row struct{ name, user, ts, data string }
	var want []row
	n := 0
	for _, size := range sizes {
		tx, err := h.db.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < size; i++ {
			rw := row{
				name: fmt.Sprintf("ev_%d", n%7),
				user: fmt.Sprintf("user_%d", n%13),
				ts:   base.Add(time.Duration(n) * time.Second).Format("2006-01-02T15:04:05.000Z"),
				data: fmt.Sprintf(`{"n": %d, "price": 24.99, "tags": ["a", "b"]}`, n),
			}
			if _, err := tx.Exec(context.Background(),
				`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data) VALUES ($1, $2, $3, $4)`,
				rw.name, rw.user, base.Add(time.Duration(n)*time.Second), rw.data); err != nil {
				t.Fatal(err)
			}
			want = append(want, rw)
			n++
		}
		if err := tx.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	h.waitCount(1011)
	sum := r.stop(t)

	got := h.fake.Events()
	if len(got) != 1011 || h.fake.Duplicates() != 0 {
		t.Fatalf("got %d events, %d duplicates; want 1011, 0", len(got), h.fake.Duplicates())
	}
	if sum.Delivered != 1011 || sum.DeadLettered != 0 {
		t.Fatalf("summary: %+v", sum)
	}
	// Index by n (from properties) and check every field.
	keys := map[string]bool{}
	seen := map[int]bool{}
	lastN := map[string]int{}
	for _, ev := range got {
		props := mustJSON(t, ev.Properties)
		i := int(props["n"].(float64))
		w := want[i]
		if ev.Name != w.name || ev.ExternalID != w.user || ev.Timestamp != w.ts {
			t.Fatalf("event %d: got name=%q external_id=%q timestamp=%q; want %q %q %q", i, ev.Name, ev.ExternalID, ev.Timestamp, w.name, w.user, w.ts)
		}
		if jsonString(props) != fmt.Sprintf(`{"n":%d,"price":24.99,"tags":["a","b"]}`, i) {
			t.Fatalf("event %d properties %s", i, ev.Properties)
		}
		if len(ev.IdempotencyKey) != 36 || keys[ev.IdempotencyKey] {
			t.Fatalf("event %d: bad or repeated idempotency key %q", i, ev.IdempotencyKey)
		}
		keys[ev.IdempotencyKey] = true
		seen[i] = true
		if prev, ok := lastN[ev.ExternalID]; ok && prev > i {
			t.Fatalf("user %s: event %d accepted after %d (commit order broken)", ev.ExternalID, i, prev)
		}
		lastN[ev.ExternalID] = i
	}
	if len(seen) != 1011 {
		t.Fatalf("distinct rows delivered: %d", len(seen))
	}
}

// A graceful stop while reading waits for room in a slow sink delivers the
// event it held and stops as soon as the sink drains, not at the shutdown
// timeout; the rest arrives after a restart.
func TestStreamStopWhileBlockedDrainsPromptly(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	cfg := h.config()
	cfg.Sink.BatchSize, cfg.Sink.MaxPendingEvents, cfg.Sink.Concurrency = 5, 10, 1
	cfg.ShutdownTimeout = 30 * time.Second
	h.fake.SetFaults(onesignaltest.Faults{Latency: 200 * time.Millisecond})
	r := h.start(cfg)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) SELECT 'e', 'u' || i FROM generate_series(1, 200) i`)
	h.waitCount(5)
	start := time.Now()
	r.app.Stop()
	select {
	case <-r.done:
	case <-time.After(20 * time.Second):
		t.Fatal("the stop waited for the shutdown timeout")
	}
	if r.err != nil || time.Since(start) > 10*time.Second || h.logs.FilterMessageSnippet("shutdown timeout").Len() != 0 {
		t.Fatalf("stop took %s: %v", time.Since(start), r.err)
	}
	h.fake.SetFaults(onesignaltest.Faults{})
	r = h.start(cfg)
	h.waitCount(200)
	r.stop(t)
	if h.fake.Count() != 200 {
		t.Errorf("%d events, want 200", h.fake.Count())
	}
}
