package main

import (
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
