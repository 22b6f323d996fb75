package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// Review (h11): in read-only mode a letter's id was its line number in the
// file, and each discard rewrites the file, so the ids listed before a
// discard named other letters after it: `discard --id 2` after
// `discard --id 1` removed the wrong letter.
func TestReviewReadOnlyLetterIDsShiftAfterDiscard(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeReadOnly("")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data)
SELECT 'ev', NULL, jsonb_build_object('n', i) FROM generate_series(0, 2) AS i`)
	e.waitConfirmedPast(e.walLSN(), 30*time.Second, p)
	p.term(t)
	ids := map[string]string{}
	for _, l := range e.listJSON(cfg) {
		ids[string(l["row"])] = string(l["id"])
	}
	idOf := func(n int) string {
		for row, id := range ids {
			if strings.Contains(row, fmt.Sprintf(`"event_data":{"n":%d}`, n)) {
				return id
			}
		}
		t.Fatalf("no letter for n=%d in %v", n, ids)
		return ""
	}
	first, second := idOf(0), idOf(1)
	// Two discards, each with the id the listing showed.
	if out := e.runCLI(cfg, "dead-letters", "discard", "--id", first); !strings.Contains(out, "discarded 1") {
		t.Fatalf("discard %s: %s", first, out)
	}
	out, _ := e.runCLIResult(cfg, "dead-letters", "discard", "--id", second)
	t.Logf("discard --id %s: %s", second, out)
	var left []string
	for _, l := range e.listJSON(cfg) {
		left = append(left, string(l["row"]))
	}
	if len(left) != 1 || !strings.Contains(left[0], `"event_data":{"n":2}`) {
		t.Fatalf("letters left %v; want only n=2 (the listed ids of n=0 and n=1 were discarded)", left)
	}
}
