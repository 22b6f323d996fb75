package app

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// Review: a transform that waits for a lock (a migration or VACUUM FULL
// holding the lookup table it joins for longer than transform_timeout)
// times out for reasons that have nothing to do with the rows. Each row is
// then tried alone, times out again, and is dead-lettered: the slot moves
// past rows that would have mapped a few seconds later. A timeout is not a
// deterministic failure of the row.
func TestReviewTransformLockWaitDeadLettersRows(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	h.exec(`CREATE TABLE analytics.plans (user_id text PRIMARY KEY, plan text); INSERT INTO analytics.plans VALUES ('u1', 'pro'), ('u2', 'free')`)
	cfg := h.config()
	cfg.Tables[0] = config.Table{Schema: "analytics", Name: "user_events",
		Transform: `SELECT c.event_name AS name, c.user_id AS external_id,
  jsonb_build_object('plan', (SELECT p.plan FROM analytics.plans p WHERE p.user_id = c.user_id)) AS properties
FROM changes c`,
		TransformTimeout: 300 * time.Millisecond}
	r := h.start(cfg)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('warm', 'u1')`)
	h.waitCount(1) // the transform is compiled
	locker, err := pgx.Connect(context.Background(), h.pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer locker.Close(context.Background())
	if _, err := locker.Exec(context.Background(), `BEGIN; LOCK TABLE analytics.plans IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('e', 'u1'), ('e', 'u2')`)
	time.Sleep(3 * time.Second) // the lock is held for 3 s, e.g. a short migration
	if _, err := locker.Exec(context.Background(), `COMMIT`); err != nil {
		t.Fatal(err)
	}
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('after', 'u1')`)
	waitFor(t, func() bool {
		s := r.app.sink
		return s != nil && s.Stats().Delivered+s.Stats().DeadLettered >= 4
	})
	sum := r.stop(t)
	if sum.DeadLettered != 0 || sum.Delivered != 4 {
		t.Fatalf("delivered %d, dead-lettered %d; want the 4 rows delivered once the lock is gone, none dead-lettered", sum.Delivered, sum.DeadLettered)
	}
}
