package app

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/mapper"
	"github.com/pgsignal/pgsignal/replication"
	"github.com/pgsignal/pgsignal/sink"
)

// RebuildRow turns a row stored by mapper.RowJSON (as the file keeps it,
// and through jsonb as census.dead_letters keeps it) back into the text
// values the stream decoded, for the common types; values whose JSON form
// loses something are refused, never rebuilt wrong.
func TestRebuildRowRoundTrip(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t, pgtest.Options{})
	pool, err := replication.NewPool(ctx, replication.Source{DSN: pg.DSN("")}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE rt (
  t text, i int4, b8 int8, n numeric, f float8, f4 float4, ok bool, tz timestamptz, ts timestamp, d date,
  j json, jb jsonb, ia int[], ta text[], ba bytea, u uuid, iv interval, nul text)`); err != nil {
		t.Fatal(err)
	}
	rows := []string{
		`INSERT INTO rt VALUES ('héllo "x"' || E'\n\t\\', -7, 9223372036854775807, 1.10, 0.1, 1.5, true,
  '2024-03-01 12:34:56.789012+02', '2024-03-01 01:02:03.5', '2024-02-29',
  '{"b": 1,  "a": [1, 2]}', '{"k": {"z": null, "y": "v"}}', '{{1,2},{3,NULL}}', '{"a b","c\"d",NULL}',
  '\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '1 day 02:03:04', NULL)`,
		`INSERT INTO rt VALUES ('', 0, 0, 'NaN', 'Infinity', '-Infinity', false, 'infinity', '-infinity', '0044-03-15 BC',
  '"s"', '[]', '{}', '{}', '\x', NULL, '-1 mons', NULL)`,
		`INSERT INTO rt VALUES (NULL, NULL, NULL, 123456789012345678901234567890.000000001, 1e300, 3.4e38, NULL, NULL, NULL, NULL,
  NULL, 'null', NULL, NULL, NULL, NULL, NULL, NULL)`,
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	pc := conn.Conn().PgConn()
	tc, err := replication.ReadTableColumns(ctx, pc, replication.TableRef{Schema: "public", Name: "rt"})
	if err != nil {
		t.Fatal(err)
	}
	rel := tc.Rel
	for n, ins := range rows {
		if _, err := pool.Exec(ctx, `TRUNCATE rt`); err != nil {
			t.Fatal(err)
		}
		if _, err := pool.Exec(ctx, ins); err != nil {
			t.Fatal(err)
		}
		res := pc.ExecParams(ctx, `SELECT * FROM rt`, nil, nil, nil, nil).Read()
		if res.Err != nil || len(res.Rows) != 1 {
			t.Fatalf("read row %d: %v", n, res.Err)
		}
		want := replication.CloneValues(res.Rows[0])
		file := mapper.RowJSON(rel, want)
		var viaJSONB string
		if err := pool.QueryRow(ctx, `SELECT $1::text::jsonb::text`, string(file)).Scan(&viaJSONB); err != nil {
			t.Fatal(err)
		}
		for _, stored := range []string{string(file), viaJSONB} {
			sub, got, reason, err := RebuildRow(ctx, pool, rel, []byte(stored))
			if err != nil || reason != "" {
				t.Fatalf("row %d from %s: %q, %v", n, stored, reason, err)
			}
			if len(sub.Columns) != len(rel.Columns) {
				t.Fatalf("row %d: %d columns, want %d", n, len(sub.Columns), len(rel.Columns))
			}
			for i, c := range rel.Columns {
				w := want[i]
				if c.Name == "j" && w != nil {
					// A json value comes back as its jsonb form (the
					// stored row went through jsonb): same value.
					var norm string
					if err := pool.QueryRow(ctx, `SELECT $1::text::jsonb::text`, string(w)).Scan(&norm); err != nil {
						t.Fatal(err)
					}
					w = []byte(norm)
				}
				if (c.Name == "j" || c.Name == "jb") && string(w) == "null" {
					// RowJSON writes a json null and an SQL NULL alike:
					// it comes back as NULL.
					w = nil
				}
				if (got[i] == nil) != (w == nil) || string(got[i]) != string(w) {
					t.Errorf("row %d column %s: rebuilt %q, want %q (stored %s)", n, c.Name, got[i], w, stored)
				}
			}
		}
	}

	// A text that was not valid UTF-8, a bytea array (its elements are
	// base64 in the JSON), a column added since: refused or left out.
	refuse := []struct{ row, reason string }{
		{`{"t": {"not_utf8": "\\xe9"}, "i": 1}`, `column(s) ["t"] held text that is not valid UTF-8`},
		{`{"i": "x"}`, `PostgreSQL does not read the stored row back`},
		{`[1]`, `not a JSON object`},
	}
	for _, r := range refuse {
		_, _, reason, err := RebuildRow(ctx, pool, rel, []byte(r.row))
		if err != nil || !strings.Contains(reason, r.reason) {
			t.Errorf("%s: %q, %v; want %q", r.row, reason, err, r.reason)
		}
	}
	if _, err := pool.Exec(ctx, `ALTER TABLE rt ADD COLUMN bas bytea[]`); err != nil {
		t.Fatal(err)
	}
	tc, err = replication.ReadTableColumns(ctx, pc, replication.TableRef{Schema: "public", Name: "rt"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, reason, err := RebuildRow(ctx, pool, tc.Rel, []byte(`{"i": 1, "bas": ["AAE="]}`))
	if err != nil || !strings.Contains(reason, `column(s) bas do not read back as stored`) {
		t.Errorf("bytea[]: %q, %v", reason, err)
	}
	sub, got, reason, err := RebuildRow(ctx, pool, tc.Rel, []byte(`{"i": 1, "dropped": 2}`))
	if err != nil || reason != "" || len(sub.Columns) != 1 || sub.Columns[0].Name != "i" || string(got[0]) != "1" {
		t.Errorf("subset: %+v %q %q %v", sub, got, reason, err)
	}
}

// A letter's first failure is its row's commit time only for the stream's
// letters: an event that takes the commit time (no timestamp column) is
// re-mapped only when the letter's key is the stream's key for its
// position; a letter with another key (a backfilled row's) is refused,
// unless its event does not depend on the commit time.
func TestRemapCommitTimeOnlyFromStreamLetters(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t, pgtest.Options{})
	src := replication.Source{DSN: pg.DSN("")}
	pool, err := replication.NewPool(ctx, src, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, `CREATE TABLE ev (id int PRIMARY KEY, name text, uid text, ts timestamptz)`); err != nil {
		t.Fatal(err)
	}
	var sysID string
	if err := pool.QueryRow(ctx, `SELECT system_identifier::text FROM pg_control_system()`).Scan(&sysID); err != nil {
		t.Fatal(err)
	}
	newRemapper := func(timestamp string) *Remapper {
		cfg := &config.Config{Source: config.Source{DSN: pg.DSN(""), Slot: "pgsignal"},
			Tables: []config.Table{{Schema: "public", Name: "ev", EventName: "name", ExternalID: "uid", Timestamp: timestamp}}}
		r, err := NewRemapper(ctx, cfg, pool, src)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.Close)
		return r
	}
	pos := cdc.Position{CommitLSN: 0x1000000, Ordinal: 3}
	commit := time.Date(2025, 1, 2, 3, 4, 5, 678000000, time.UTC)
	letter := func(key, row string) sink.Letter {
		return sink.Letter{ID: 1, CommitLSN: pos.CommitLSN.String(), Ordinal: pos.Ordinal, Table: "public.ev",
			IdempotencyKey: key, Row: json.RawMessage(row), Reason: `external_id column "user_id" is NULL`, FirstFailedAt: commit}
	}
	streamKey := cdc.IdempotencyKey(sysID, "pgsignal", pos)
	otherKey := cdc.BackfillKey(sysID, "public.ev", [][]byte{[]byte("1")})
	noTS := newRemapper("")
	evs, reason, keep, err := noTS.Remap(ctx, letter(streamKey, `{"id":1,"name":"n","uid":"u","ts":null}`))
	if err != nil || reason != "" || keep || len(evs) != 1 ||
		string(evs[0]) != `{"name":"n","external_id":"u","timestamp":"2025-01-02T03:04:05.678Z","idempotency_key":"`+streamKey+`"}` {
		t.Fatalf("stream letter: %s %q %v %v", evs, reason, keep, err)
	}
	_, reason, _, err = noTS.Remap(ctx, letter(otherKey, `{"id":1,"name":"n","uid":"u","ts":null}`))
	if err != nil || !strings.Contains(reason, "which this letter does not keep (its key is not the stream's") {
		t.Fatalf("backfill letter: %q %v", reason, err)
	}
	withTS := newRemapper("ts")
	evs, reason, _, err = withTS.Remap(ctx, letter(otherKey, `{"id":1,"name":"n","uid":"u","ts":"2024-01-01T00:00:00Z"}`))
	if err != nil || reason != "" || len(evs) != 1 || !strings.Contains(string(evs[0]), `"timestamp":"2024-01-01T00:00:00.000Z","idempotency_key":"`+otherKey+`"`) {
		t.Fatalf("backfill letter with a timestamp: %s %q %v", evs, reason, err)
	}
	_, reason, _, err = withTS.Remap(ctx, letter(streamKey, `{"id":1,"name":"n","uid":"u","ts":null}`))
	if err != nil || reason != "" {
		t.Fatalf("stream letter with a NULL timestamp: %q %v", reason, err)
	}
	for _, c := range []struct{ table, reason string }{
		{"public.gone", "mapped again with the current configuration: the table public.gone is not in the configuration"},
	} {
		l := letter(streamKey, `{"id":1}`)
		l.Table = c.table
		if _, reason, _, err := noTS.Remap(ctx, l); err != nil || !strings.HasPrefix(reason, c.reason) {
			t.Errorf("%s: %q %v", c.table, reason, err)
		}
	}
}
