package main

import (
	"context"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// In a SQL_ASCII database jsonb refuses a \u escape above U+007F (0A000):
// the dead letter of a row whose text holds U+2028 (escaped in its JSON) is
// kept as bytes instead of being retried for ever, and the stream goes on.
func TestDeadLetterInSQLASCIIWithEscapes(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	ascii := e.newASCIIDatabase()
	cfg := e.writeTextConfig("ascii", e.pg.DSN("ascii"), "full", defaultTables)
	p := e.startProc(cfg)
	e.waitStreaming(p)
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO analytics.user_events (event_name, user_id) VALUES (E'line\xe2\x80\xa8sep', NULL)`,
		`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('after', 'u1')`,
	} {
		if _, err := ascii.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	e.waitCount(1, 60*time.Second, p)
	var n int64
	var bytesKept bool
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := ascii.QueryRow(ctx, `SELECT count(*), bool_or(source_row_bytes IS NOT NULL OR event_bytes IS NOT NULL) FROM census.dead_letters`).Scan(&n, &bytesKept)
		if err == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead letters: %d, %v\n%s", n, err, p.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !bytesKept {
		t.Fatalf("the letter was stored as jsonb, which this database refuses for \\u2028")
	}
	if ev := e.fake.Events(); len(ev) != 1 || ev[0].Name != "after" {
		t.Fatalf("events %+v, want the row after the letter", ev)
	}
	p.term(t)
}
