package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// In a LATIN1 database, census.dead_letters.reason cannot hold '€' or a CJK
// character (SQLSTATE 22P05). A letter whose reason quotes such text (here
// OneSignal's error title) is still stored, with those characters escaped
// as \uXXXX in the reason, and the stream goes on; it used to be refused
// (ErrLetterRefused) and stop pgsignal on every restart. A replay's new
// reason is stored the same way.
func TestDeadLetterReasonInLatin1(t *testing.T) {
	const title = "refusé: €100 超過"
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{Reject: func(a onesignaltest.Accepted) string {
		if a.Name == "bad" {
			return title
		}
		return ""
	}})
	e.exec(`CREATE DATABASE latin1 TEMPLATE template0 ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'`)
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, e.pg.DSN("latin1")+"&client_encoding=UTF8")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, eventsTable); err != nil {
		t.Fatal(err)
	}
	cfg := e.writeTextConfig("latin1", e.pg.DSN("latin1"), "full", defaultTables)
	p := e.startProc(cfg)
	e.waitStreaming(p)
	for _, q := range []string{
		`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('bad', 'u1')`,
		`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('after', 'u2')`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	e.waitCount(1, 60*time.Second, p)
	var n int64
	var reason string
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := pool.QueryRow(ctx, `SELECT count(*), coalesce(string_agg(reason, '|'), '') FROM census.dead_letters`).Scan(&n, &reason)
		if err == nil && n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dead letters: %d, %v\n%s", n, err, p.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("figures: reason %q", reason)
	if want := `refusé: \u20ac100 \u8d85\u904e`; !strings.Contains(reason, want) {
		t.Fatalf("reason %q does not hold %q", reason, want)
	}
	if ev := e.fake.Events(); len(ev) != 1 || ev[0].Name != "after" {
		t.Fatalf("events %+v, want the row after the letter", ev)
	}
	p.term(t)
	// A replay OneSignal refuses again stores its reason the same way.
	out, err := e.runCLIResult(cfg, "dead-letters", "replay", "--all")
	t.Logf("replay: %v\n%s", err, out)
	var attempts int
	if err := pool.QueryRow(ctx, `SELECT attempts, reason FROM census.dead_letters`).Scan(&attempts, &reason); err != nil {
		t.Fatal(err)
	}
	if want := `refusé: \u20ac100 \u8d85\u904e`; attempts != 2 || !strings.Contains(reason, want) {
		t.Fatalf("after the replay: attempts %d, reason %q; want 2 and %q", attempts, reason, want)
	}
}
