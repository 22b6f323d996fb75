package sink

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/internal/store"
)

// census.dead_letters keeps as bytes exactly what jsonb refuses (\u0000, a
// lone surrogate, a number out of numeric's range, bytes that are not
// UTF-8), in the same write as the letters it takes as jsonb, and what is
// over the bound truncated with its size and hash; a reason holding NUL or
// bytes that are not UTF-8 is cleaned. Writing the same letters again adds
// nothing.
func TestTableDeadLettersKeepWhatJSONBRefuses(t *testing.T) {
	defer func(n int) { maxKept = n }(maxKept)
	maxKept = 4000
	pg := pgtest.New(t, pgtest.Options{})
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := store.EnsureSchema(ctx, pool, "census"); err != nil {
		t.Fatal(err)
	}
	mk := func(seq uint64, event, row string) cdc.DeadLetter {
		l := deadLetter(seq, "u", "r")
		l.Event, l.Row = nil, nil
		if event != "" {
			l.Event = []byte(event)
		}
		if row != "" {
			l.Row = []byte(row)
		}
		return l
	}
	big := `{"big":"` + strings.Repeat("y", 5000) + `"}`
	letters := []cdc.DeadLetter{
		mk(1, "", `{"id":1,"event_data":{"a":"\u0000"}}`),
		mk(2, "", `{"id":2,"event_data":{"a":"\ud800"}}`),
		mk(3, `{"name":"poison","properties":{"a":"\u0000"}}`, `{"id":3}`),
		mk(4, `{"name":"ok","properties":{"n":1e1000000}}`, ""),
		mk(5, `{"name":"ok","properties":{"s":"caf`+"\xe9"+`"}}`, ""),
		mk(6, `{"name":"fine"}`, `{"id":6}`),
		mk(7, "", big),
	}
	letters[5].Reason = "OneSignal answered 400: \x00\xff"
	store := &TableDeadLetters{Pool: pool, Schema: "census", Slot: "s"}
	for range 2 {
		if err := store.Write(ctx, letters); err != nil {
			t.Fatal(err)
		}
	}
	ls, err := (&TableLetters{Pool: pool, Schema: "census", Slot: "s"}).List(ctx, Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != len(letters) {
		t.Fatalf("%d letters, want %d", len(ls), len(letters))
	}
	for i, l := range ls[:5] {
		want := letters[i]
		if !bytes.Equal(l.Event, want.Event) || (!bytes.Equal(l.Row, want.Row) && i != 2) {
			t.Errorf("letter %d: event %q row %q, want %q %q", i+1, l.Event, l.Row, want.Event, want.Row)
		}
		if l.Storage == nil {
			t.Errorf("letter %d has no storage", i+1)
		}
	}
	if k := ls[0].Storage.Row; k == nil || !strings.Contains(k.Why, "22P05") || k.Size != len(letters[0].Row) || k.SHA256 != sha(letters[0].Row) {
		t.Errorf("letter 1 kept as %+v", k)
	}
	// Letter 3: only the event is refused; the row stays jsonb.
	if ls[2].Storage.Event == nil || ls[2].Storage.Row != nil || string(ls[2].Row) != `{"id": 3}` {
		t.Errorf("letter 3: storage %+v row %s", ls[2].Storage, ls[2].Row)
	}
	if ls[5].Storage != nil || string(ls[5].Event) != `{"name":"fine"}` || ls[5].Reason != `OneSignal answered 400: \u0000`+"\ufffd" {
		t.Errorf("letter 6: storage %+v event %s reason %q", ls[5].Storage, ls[5].Event, ls[5].Reason)
	}
	if k := ls[6].Storage.Row; k == nil || !k.Truncated || k.Size != len(big) || k.SHA256 != sha([]byte(big)) || string(ls[6].Row) != big[:4000] {
		t.Errorf("letter 7 kept as %+v", k)
	}
	var asBytes int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM census.dead_letters WHERE event_bytes IS NOT NULL OR source_row_bytes IS NOT NULL`).Scan(&asBytes); err != nil || asBytes != 6 {
		t.Errorf("%d letters with bytes (%v), want 6", asBytes, err)
	}
}

// A dead_letters table created by an earlier version gets the bytes
// columns at start-up.
func TestTableDeadLettersUpgrade(t *testing.T) {
	pg := pgtest.New(t, pgtest.Options{})
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE SCHEMA old; CREATE TABLE old.dead_letters (
  id bigserial PRIMARY KEY, slot text NOT NULL, commit_lsn pg_lsn NOT NULL, ordinal bigint NOT NULL,
  table_name text NOT NULL, idempotency_key uuid, event jsonb, source_row jsonb, reason text NOT NULL,
  attempts integer NOT NULL DEFAULT 0, first_failed_at timestamptz NOT NULL DEFAULT now(),
  last_failed_at timestamptz NOT NULL DEFAULT now(), created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (slot, commit_lsn, ordinal))`); err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureSchema(ctx, pool, "old"); err != nil {
		t.Fatal(err)
	}
	l := deadLetter(1, "", "no user")
	l.Row = []byte(`{"a":"\u0000"}`)
	if err := (&TableDeadLetters{Pool: pool, Schema: "old", Slot: "s"}).Write(ctx, []cdc.DeadLetter{l}); err != nil {
		t.Fatal(err)
	}
	ls, err := (&TableLetters{Pool: pool, Schema: "old", Slot: "s"}).List(ctx, Filter{})
	if err != nil || len(ls) != 1 || !bytes.Equal(ls[0].Row, l.Row) {
		t.Fatalf("listed %+v, %v", ls, err)
	}
}
