package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// Review: a transaction committed while a backfill is interrupted inserts
// a row, deletes it and inserts another row with the same primary key (two
// events in the stream's terms: inserts are events, deletes are not). The
// redone backfill sends the second row; the stream then takes BOTH inserts
// as "sent by the backfill" (the live row has the key and xmin = the
// transaction), so the first row's event is never sent.
func TestReviewBackfillRedoSameKeyTwiceInOneTransaction(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.exec(`CREATE TABLE analytics.orders (id int PRIMARY KEY, customer text NOT NULL, placed_at timestamptz NOT NULL);
INSERT INTO analytics.orders SELECT i, 'c' || i, now() - i * interval '1 hour' FROM generate_series(1, 3) i;`)
	cfg := e.writeTablesConfig("redo.yaml", `  - table: analytics.orders
    name_value: order
    external_id: customer
    properties: [id]
    timestamp: placed_at
    backfill:
      since: 1d
`, "", "shutdown_timeout: 2s")
	e.fake.SetFaults(onesignaltest.Faults{Rate500: 1})
	p := e.startProc(cfg)
	e.waitLog(p, "backfill started", time.Minute)
	// A row replaced within its transaction (e.g. a client that retries
	// with the same id after a failed step in one transaction).
	e.exec(`BEGIN;
INSERT INTO analytics.orders VALUES (20, 'cA', now());
DELETE FROM analytics.orders WHERE id = 20;
INSERT INTO analytics.orders VALUES (20, 'cB', now());
COMMIT`)
	p.stopWithin(t, time.Minute)
	if n := e.queryInt(`SELECT count(*) FROM census.backfills WHERE state = 'running'`); n != 1 {
		t.Fatalf("backfill not left running (%d)", n)
	}
	e.fake.SetFaults(onesignaltest.Faults{})
	p = e.startProc(cfg)
	e.waitStreaming(p)
	e.exec(`INSERT INTO analytics.orders VALUES (30, 'cZ', now())`)
	e.waitCount(5, time.Minute, p)
	time.Sleep(2 * time.Second) // anything later arrives now
	p.term(t)
	got := e.eventsByRow()
	t.Logf("events: %v", sortedKeys(got))
	for _, k := range []string{"cA/{\"id\":20}", "cB/{\"id\":20}", "c1/{\"id\":1}", "cZ/{\"id\":30}"} {
		if got["order/"+k] == 0 {
			t.Errorf("order %s never arrived", k)
		}
	}
	if got[fmt.Sprintf("order/cA/{\"id\":%d}", 20)] == 0 {
		t.Fatalf("the first insert of row 20 (cA) was lost: the stream took it for the backfill's")
	}
}
