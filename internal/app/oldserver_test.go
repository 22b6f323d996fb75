package app

import (
	"strings"
	"testing"

	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// Before PostgreSQL 14 (no logical decoding messages in pgoutput) a table
// swapped while pgsignal streams cannot be added with its rows: pgsignal
// stops, naming the table and the statements that fix it, and the rows
// re-inserted as told are sent after a restart, each once.
func TestStreamTableSwapStopsBefore14(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	if v := h.serverVersion(); v >= 140000 {
		t.Skipf("PostgreSQL 14+ adds a swapped-in table with its rows (TestTableSwapWhileStreaming); the server is %d", v)
	}
	h.exec(seedTable)
	r := h.startFast(h.config())
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('before', 'u1')`)
	h.waitCount(1)
	h.exec(strings.Replace(swapSQL, "COMMIT;", `INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (2, 'after', 'u2'), (3, 'after', 'u3');
COMMIT;`, 1))
	err := r.ended(t)
	if err == nil {
		t.Fatal("pgsignal went on; want it to stop")
	}
	for _, want := range []string{
		`table analytics.user_events is now a different table`,
		`which publication "pgsignal" does not hold: its rows are not streamed. pgsignal stops rather than lose them.`,
		`ALTER PUBLICATION "pgsignal" ADD TABLE "analytics"."user_events";`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q lacks %q", err, want)
		}
	}
	// The fix, as the error words it, for the rows written since the swap.
	h.exec(`BEGIN;
LOCK TABLE "analytics"."user_events" IN SHARE ROW EXCLUSIVE MODE;
ALTER PUBLICATION "pgsignal" ADD TABLE "analytics"."user_events";
CREATE TEMP TABLE pgsignal_resend ON COMMIT DROP AS SELECT * FROM "analytics"."user_events" WHERE id > 1;
DELETE FROM "analytics"."user_events" WHERE id > 1;
INSERT INTO "analytics"."user_events" OVERRIDING SYSTEM VALUE SELECT * FROM pgsignal_resend;
COMMIT;`)
	r = h.start(h.config())
	h.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (4, 'later', 'u4')`)
	h.waitCount(4)
	r.stop(t)
	if got := strings.Join(h.eventList(), " "); got != "after|u2 after|u3 before|u1 later|u4" || h.fake.Duplicates() != 0 {
		t.Fatalf("events %q, %d duplicates", got, h.fake.Duplicates())
	}
}
