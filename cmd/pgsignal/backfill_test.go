package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// kill -9 in the middle of `pgsignal backfill`, while rows keep being
// inserted; the restarted backfill redoes the window from a new snapshot
// and then streams. Every row arrives exactly once (by key and by row), the
// window's older rows before the newer ones, and status shows it done.
func TestFaultKill9DuringBackfill(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "  batch_size: 100\n  concurrency: 2")
	const past = 20000
	// Rows 0..past-1 lie in the last six days (n is their "n" property);
	// rows from before the window are never sent.
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data)
SELECT 'old', 'user_' || (i % 97), now() - interval '9 days', jsonb_build_object('n', -1 - i) FROM generate_series(0, 999) i`)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data)
SELECT 'ev', 'user_' || (i % 97), now() - interval '6 days' + i * interval '20 seconds', jsonb_build_object('n', i)
FROM generate_series(0, $1::int - 1) i`, past)
	e.fake.SetFaults(onesignaltest.Faults{Latency: 15 * time.Millisecond})
	p := e.startCommand("backfill", cfg, "--since", "7d")
	e.waitCount(4000, 2*time.Minute, p)
	p.kill9(t)
	first := e.fake.Count()
	t.Logf("kill -9 after %d backfilled events accepted", first)
	if first >= past {
		t.Fatalf("the backfill finished before the kill (%d events)", first)
	}
	// Rows committed while pgsignal is down, and while it backfills again.
	e.insertRows(past, 500)
	e.fake.SetFaults(onesignaltest.Faults{})
	p = e.startCommand("backfill", cfg, "--since", "7d")
	e.waitStreaming(p)
	e.insertRows(past+500, 500)
	e.waitCount(past+1000, 2*time.Minute, p)
	p.term(t)
	e.checkExactlyOnce(past + 1000)
	if d := e.fake.Duplicates(); d < first {
		t.Errorf("%d duplicates absorbed; the redo should resend the %d events of the first attempt under the same keys", d, first)
	}
	// Per user, the backfilled rows came in time order.
	last := map[string]string{}
	for _, ev := range e.fake.Events() {
		if ev.Timestamp < last[ev.ExternalID] {
			t.Fatalf("user %s: event at %s after one at %s", ev.ExternalID, ev.Timestamp, last[ev.ExternalID])
		}
		last[ev.ExternalID] = ev.Timestamp
	}
	out := e.runCLI(cfg, "status")
	if !strings.Contains(out, "backfill: done, 20500 of 20500 rows (analytics.user_events)") {
		t.Errorf("status does not show the finished backfill:\n%s", out)
	}
	if n := e.queryInt(`SELECT count(*) FROM census.backfills WHERE state = 'done' AND rows_done = rows_total`); n != 1 {
		t.Errorf("census.backfills has %d finished rows, want 1", n)
	}
	// Progress was logged with rows done, total and rate.
	if log := readFile(t, p.log); !strings.Contains(log, `"rows_done":20500,`) || !strings.Contains(log, `"rows_total":20500,"rows_per_second":`) {
		t.Errorf("no progress line with rows_total in the log")
	}
}

// kill -9 twice while rows stream through a SQL transform that splits each
// row into two events: after the restarts every row's two events arrive,
// each key once.
func TestFaultKill9WithTransform(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	path := e.writeConfig("full", "  batch_size: 200")
	data := readFile(t, path)
	i := strings.Index(data, "    name: event_name")
	data = data[:i] + `    transform: |
      SELECT c.event_name AS name, c.user_id AS external_id, c.event_data AS properties FROM changes c
      UNION ALL
      SELECT 'copy', c.user_id, jsonb_build_object('n', -1 - (c.event_data->>'n')::int) FROM changes c
`
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	e.fake.SetFaults(onesignaltest.Faults{Latency: 5 * time.Millisecond})
	const rows = 20000
	p := e.startProc(path)
	e.waitStreaming(p)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < rows; i += 500 {
			e.insertRows(i, 500)
		}
	}()
	for _, at := range []int{8000, 24000} {
		e.waitCount(at, 2*time.Minute, p)
		p.kill9(t)
		t.Logf("kill -9 after %d events accepted", e.fake.Count())
		p = e.startProc(path)
	}
	<-done
	e.waitCount(2*rows, 2*time.Minute, p)
	p.term(t)
	seen := make([]int, 2*rows)
	for _, ev := range e.fake.Events() {
		var n int
		if _, err := fmt.Sscanf(string(ev.Properties), `{"n": %d}`, &n); err != nil {
			t.Fatalf("event properties %s", ev.Properties)
		}
		if n < 0 {
			n = rows - 1 - n // copies: -1-i -> rows+i
		}
		seen[n]++
	}
	for n, c := range seen {
		if c != 1 {
			t.Fatalf("event %d accepted %d times (want once each: %d events for %d rows)", n, c, 2*rows, rows)
		}
	}
	t.Logf("figures: %d rows, %d events accepted once each, %d duplicates absorbed", rows, 2*rows, e.fake.Duplicates())
}
