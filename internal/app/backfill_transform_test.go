package app

import (
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/config"
)

// A backfill on a transform table needs no column when the transform's
// timestamp is a plain column of changes: the window is measured on it.
func TestBackfillTransformTimestampColumn(t *testing.T) {
	h := backfillHarness(t, 5, 30)
	cfg := h.config()
	tb := &cfg.Tables[0]
	tb.EventName, tb.ExternalID, tb.Timestamp, tb.Properties = "", "", "", nil
	tb.Transform = `SELECT 'seen_' || c.event_name AS name, c.user_id AS external_id, c.event_timestamp AS timestamp FROM changes c`
	tb.Backfill = &config.Backfill{Since: 7 * 24 * time.Hour}
	if got := tb.BackfillColumn(); got != "event_timestamp" {
		t.Fatalf("backfill column %q, want event_timestamp", got)
	}
	r := h.start(cfg)
	h.waitCount(30)
	time.Sleep(300 * time.Millisecond)
	r.stop(t)
	names := map[string]int{}
	for _, ev := range h.fake.Events() {
		names[ev.Name]++
	}
	if names["seen_past"] != 30 || len(names) != 1 {
		t.Fatalf("events by name %v, want the 30 window rows only", names)
	}
}
