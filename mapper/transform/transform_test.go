package transform

import (
	"context"
	"encoding/json"
	"fmt"
	"math/bits"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/mapper"
	"github.com/pgsignal/pgsignal/replication"
)

var commitTime = time.Date(2025, 10, 21, 19, 9, 32, 263_000_000, time.UTC)

// env is a throwaway server with a pool configured like pgsignal's.
type env struct {
	pg   *pgtest.Server
	pool *pgxpool.Pool
}

// setup starts a server and runs ddl on it.
func setup(tb testing.TB, ddl string) *env {
	tb.Helper()
	pg := pgtest.New(tb, pgtest.Options{})
	ctx := context.Background()
	if ddl != "" {
		if err := pg.Exec(ctx, ddl); err != nil {
			tb.Fatal(err)
		}
	}
	pool, err := replication.NewPool(ctx, replication.Source{DSN: pg.DSN("")}, 4)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return &env{pg: pg, pool: pool}
}

func (e *env) exec(tb testing.TB, sql string) {
	tb.Helper()
	if err := e.pg.Exec(context.Background(), sql); err != nil {
		tb.Fatal(err)
	}
}

// rel reads a table's relation as pgoutput would describe it.
func (e *env) rel(tb testing.TB, schema, table string) *replication.Relation {
	tb.Helper()
	rows, err := e.pool.Query(context.Background(), `SELECT c.oid, a.attname, a.atttypid, a.atttypmod
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, schema, table)
	if err != nil {
		tb.Fatal(err)
	}
	defer rows.Close()
	var id uint32
	var cols []replication.Column
	for rows.Next() {
		var c replication.Column
		if err := rows.Scan(&id, &c.Name, &c.TypeOID, &c.TypeMod); err != nil {
			tb.Fatal(err)
		}
		cols = append(cols, c)
	}
	if err := rows.Err(); err != nil {
		tb.Fatal(err)
	}
	return replication.NewRelation(id, schema, table, cols)
}

// values runs a query and returns its rows in text form, as pgoutput sends
// them (the pool has the replication connection's session settings).
func (e *env) values(tb testing.TB, sql string) [][][]byte {
	tb.Helper()
	conn, err := e.pool.Acquire(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Release()
	res := conn.Conn().PgConn().ExecParams(context.Background(), sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		tb.Fatal(res.Err)
	}
	return res.Rows
}

// inputs makes rows of rel into inputs with positions 0/1000#0, #1, ...
func inputs(rel *replication.Relation, rows [][][]byte) []Input {
	ins := make([]Input, len(rows))
	for i, r := range rows {
		pos := cdc.Position{CommitLSN: 0x1000, Ordinal: uint32(i)}
		ins[i] = Input{Rel: rel, Values: r, Pos: pos, CommitTime: commitTime, Key: cdc.IdempotencyKey("7312345678901234567", "pgsignal", pos)}
	}
	return ins
}

func newT(tb testing.TB, e *env, specs ...Spec) *Transformer {
	tb.Helper()
	tr, err := New(e.pool, specs)
	if err != nil {
		tb.Fatal(err)
	}
	if err := tr.Check(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return tr
}

func evaluate(tb testing.TB, tr *Transformer, ins []Input) [][]*cdc.Event {
	tb.Helper()
	out, err := tr.Evaluate(context.Background(), ins)
	if err != nil {
		tb.Fatal(err)
	}
	if len(out) != len(ins) {
		tb.Fatalf("Evaluate returned %d results for %d inputs", len(out), len(ins))
	}
	return out
}

const ordersDDL = `
CREATE SCHEMA app;
CREATE TABLE app.users (id int PRIMARY KEY, external_id text, plan text);
INSERT INTO app.users VALUES (1, 'ext-1', 'pro'), (2, 'ext-2', NULL);
CREATE TABLE app.orders (id int, user_id int, amount numeric(10,2), status text, created_at timestamptz);`

// The transform enriches rows from users and filters: every kept row
// becomes exactly the expected event; filtered rows (a draft, an unknown
// user) have none.
func TestEnrichAndFilter(t *testing.T) {
	e := setup(t, ordersDDL+`
INSERT INTO app.orders VALUES
 (1, 1, 12.50, 'paid', '2024-05-01 10:00:00.123456+02'),
 (2, 1, 3, 'draft', '2024-05-01 10:01:00+00'),
 (3, 99, 7, 'paid', '2024-05-01 10:02:00+00'),
 (4, 2, 0.5, 'refunded', NULL);`)
	tr := newT(t, e, Spec{Schema: "app", Table: "orders", NamePrefix: "shop.", SQL: `
SELECT 'order_' || o.status AS name, u.external_id, o.created_at AS timestamp,
       jsonb_build_object('order', o.id, 'amount', o.amount, 'plan', u.plan) AS properties
FROM changes o JOIN app.users u ON u.id = o.user_id
WHERE o.status <> 'draft'`})
	rel := e.rel(t, "app", "orders")
	ins := inputs(rel, e.values(t, "SELECT * FROM app.orders ORDER BY id"))
	out := evaluate(t, tr, ins)
	want := []string{
		`{"name":"shop.order_paid","external_id":"ext-1","timestamp":"2024-05-01T08:00:00.123Z","idempotency_key":"` + outputKey(ins[0].Key, []byte("order_paid"), []byte("ext-1"), 0) + `","properties":{"plan": "pro", "order": 1, "amount": 12.50}}`,
		``,
		``,
		`{"name":"shop.order_refunded","external_id":"ext-2","timestamp":"2025-10-21T19:09:32.263Z","idempotency_key":"` + outputKey(ins[3].Key, []byte("order_refunded"), []byte("ext-2"), 0) + `","properties":{"plan": null, "order": 4, "amount": 0.50}}`,
	}
	for i, w := range want {
		if w == "" {
			if len(out[i]) != 0 {
				t.Errorf("input %d: want no event, got %d", i, len(out[i]))
			}
			continue
		}
		if len(out[i]) != 1 {
			t.Fatalf("input %d: want 1 event, got %d", i, len(out[i]))
		}
		ev := out[i][0]
		if ev.Reject != "" || string(ev.JSON) != w {
			t.Errorf("input %d:\n got %s (reject %q)\nwant %s", i, ev.JSON, ev.Reject, w)
		}
		if ev.Pos != ins[i].Pos || ev.IdempotencyKey == ins[i].Key || !ev.CommitTime.Equal(commitTime) || ev.Table != "app.orders" ||
			ev.ExternalID == "" || !strings.HasPrefix(ev.Name, "shop.order_") {
			t.Errorf("input %d: event fields %+v", i, ev)
		}
	}
	if s := tr.Stats(); s.Statements != 1 || s.Rows != 4 || s.RowErrors != 0 {
		t.Errorf("stats %+v, want 1 statement for 4 rows", s)
	}
}

// A transform may return several events per row: each gets a distinct key
// derived from the row's, the same at every evaluation.
func TestSeveralEventsPerRow(t *testing.T) {
	e := setup(t, ordersDDL+`
INSERT INTO app.orders SELECT g, 1, g, 'paid', '2024-01-01' FROM generate_series(1, 3) g;`)
	tr := newT(t, e, Spec{Schema: "app", Table: "orders", SQL: `
SELECT 'a' AS name, user_id::text AS external_id FROM changes
UNION ALL SELECT 'b', user_id::text FROM changes
UNION ALL SELECT 'c', user_id::text FROM changes WHERE id <> 2`})
	ins := inputs(e.rel(t, "app", "orders"), e.values(t, "SELECT * FROM app.orders ORDER BY id"))
	first := evaluate(t, tr, ins)
	second := evaluate(t, tr, ins)
	seen := map[string]bool{}
	for i := range ins {
		names := "abc"
		if i == 1 {
			names = "ab"
		}
		if len(first[i]) != len(names) {
			t.Fatalf("input %d: %d events, want %d", i, len(first[i]), len(names))
		}
		for j, ev := range first[i] {
			if ev.Reject != "" || ev.Name != names[j:j+1] || ev.Pos != ins[i].Pos {
				t.Errorf("input %d output %d: %+v", i, j, ev)
			}
			if ev.IdempotencyKey == ins[i].Key || !uuidRE.MatchString(ev.IdempotencyKey) {
				t.Errorf("input %d output %d: key %q is not a UUIDv5", i, j, ev.IdempotencyKey)
			}
			if seen[ev.IdempotencyKey] {
				t.Errorf("input %d output %d: key %s is used twice", i, j, ev.IdempotencyKey)
			}
			seen[ev.IdempotencyKey] = true
			if !strings.Contains(string(ev.JSON), `"idempotency_key":"`+ev.IdempotencyKey+`"`) {
				t.Errorf("input %d output %d: the JSON lacks the key: %s", i, j, ev.JSON)
			}
			if again := second[i][j]; again.IdempotencyKey != ev.IdempotencyKey || string(again.JSON) != string(ev.JSON) {
				t.Errorf("input %d output %d: the second evaluation differs: %s vs %s", i, j, again.JSON, ev.JSON)
			}
		}
	}
}

// A row that makes the statement fail is isolated by bisection: it alone
// is rejected with PostgreSQL's message and SQLSTATE, the other rows are
// evaluated, and the statements grow with the logarithm of the batch.
func TestRowErrorIsolated(t *testing.T) {
	const n, bad = 50, 37
	e := setup(t, ordersDDL+fmt.Sprintf(`
INSERT INTO app.orders SELECT g, g, CASE WHEN g = %d THEN 0 ELSE g + 1 END, 'paid', NULL FROM generate_series(0, %d) g;`, bad, n-1))
	tr := newT(t, e, Spec{Schema: "app", Table: "orders", SQL: `
SELECT 'paid' AS name, user_id::text AS external_id, jsonb_build_object('per_unit', 100 / amount::int) AS properties FROM changes`})
	rel := e.rel(t, "app", "orders")
	ins := inputs(rel, e.values(t, "SELECT * FROM app.orders ORDER BY id"))
	out := evaluate(t, tr, ins)
	for i := range ins {
		if len(out[i]) != 1 {
			t.Fatalf("input %d: %d events", i, len(out[i]))
		}
		ev := out[i][0]
		if i != bad {
			if ev.Reject != "" || ev.ExternalID != fmt.Sprint(i) {
				t.Errorf("input %d: %+v", i, ev)
			}
			continue
		}
		if ev.Reject != "transform failed: division by zero (SQLSTATE 22012)" {
			t.Errorf("reject reason %q", ev.Reject)
		}
		if want := string(mapper.RowJSON(rel, ins[bad].Values)); string(ev.Row) != want || ev.JSON != nil || ev.IdempotencyKey != ins[bad].Key || ev.Pos != ins[bad].Pos || ev.Table != "app.orders" {
			t.Errorf("reject event %+v, row %s, want row %s", ev, ev.Row, want)
		}
	}
	s := tr.Stats()
	// One statement for the batch, then two per halving down to one row.
	limit := uint64(1 + 2*bits.Len(uint(n-1)))
	t.Logf("stats %+v (limit %d statements)", s, limit)
	if s.Statements > limit || s.RowErrors != 1 || s.Rows != n {
		t.Errorf("stats %+v, want at most %d statements and 1 row error", s, limit)
	}

	// Two failing rows of different kinds (division by zero, a failed cast)
	// in one batch: both are rejected with their own reasons.
	tr2 := newT(t, e, Spec{Schema: "app", Table: "orders", SQL: `
SELECT 'paid' AS name, user_id::text AS external_id,
       jsonb_build_object('per_unit', 100 / amount::int, 'n', (CASE WHEN id = 5 THEN 'five' ELSE '5' END)::int) AS properties FROM changes`})
	out = evaluate(t, tr2, ins)
	for i := range ins {
		want := ""
		switch i {
		case 5:
			want = `transform failed: invalid input syntax for type integer: "five" (SQLSTATE 22P02)`
		case bad:
			want = "transform failed: division by zero (SQLSTATE 22012)"
		}
		if len(out[i]) != 1 || out[i][0].Reject != want {
			t.Errorf("input %d: %d events, first %+v; want reject %q", i, len(out[i]), out[i][0], want)
		}
	}
	t.Logf("two failing rows: %+v", tr2.Stats())
}

// A transform that starts with WITH (or WITH RECURSIVE, after a comment)
// has its list merged with the one that defines changes; a trailing
// semicolon is ignored.
func TestWithAndSemicolon(t *testing.T) {
	e := setup(t, ordersDDL+`INSERT INTO app.orders VALUES (1, 1, 2, 'paid', NULL), (2, 2, 3, 'paid', NULL);`)
	for _, tc := range []struct{ name, sql, want string }{
		{"with", `with enriched AS (SELECT c.*, u.external_id AS ext FROM changes c JOIN app.users u ON u.id = c.user_id)
SELECT 'w_' || id AS name, ext AS external_id FROM enriched`, "w_"},
		{"recursive", `-- one event per unit
/* counted */ WITH RECURSIVE units(n, uid) AS (
  SELECT 1, user_id FROM changes
  UNION ALL SELECT n + 1, uid FROM units, changes WHERE n < changes.amount)
SELECT 'unit_' || n AS name, uid::text AS external_id FROM units ORDER BY n`, "unit_"},
		{"semicolon", "SELECT 's_' || id AS name, user_id::text AS external_id FROM changes ;\n; \n", "s_"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newT(t, e, Spec{Schema: "app", Table: "orders", SQL: tc.sql})
			ins := inputs(e.rel(t, "app", "orders"), e.values(t, "SELECT * FROM app.orders ORDER BY id"))
			out := evaluate(t, tr, ins)
			var got []string
			for i := range out {
				for _, ev := range out[i] {
					if ev.Reject != "" {
						t.Fatalf("input %d: %s", i, ev.Reject)
					}
					got = append(got, ev.Name+"/"+ev.ExternalID)
				}
			}
			want := map[string]string{
				"with":      "w_1/ext-1 w_2/ext-2",
				"recursive": "unit_1/1 unit_2/1 unit_1/2 unit_2/2 unit_3/2",
				"semicolon": "s_1/1 s_2/2",
			}[tc.name]
			if strings.Join(got, " ") != want {
				t.Errorf("events %q, want %q", got, want)
			}
		})
	}
}

// Check reports what is wrong with a transform, naming the table and the
// option, with PostgreSQL's error and where it is in the transform.
func TestCheckErrors(t *testing.T) {
	e := setup(t, ordersDDL)
	for _, tc := range []struct {
		name, table, sql string
		want             []string
	}{
		{"syntax", "orders", "SELECT 'x' AS name, user_id::text AS external_id\nFORM changes",
			[]string{`syntax error at or near "FORM" (SQLSTATE 42601) at line 2, column 1 of the transform: "FORM changes"`}},
		{"unknown column", "orders", "SELECT 'x' AS name, c.nosuch AS external_id FROM changes c",
			[]string{`column c.nosuch does not exist (SQLSTATE 42703) at line 1, column 21 of the transform: "SELECT`}},
		{"unknown table", "orders", "SELECT 'x' AS name, u.external_id FROM changes c JOIN app.nosuch u ON u.id = c.user_id",
			[]string{`relation "app.nosuch" does not exist (SQLSTATE 42P01)`}},
		{"missing external_id", "orders", "SELECT 'x' AS name FROM changes",
			[]string{`returns no "external_id" column`}},
		{"properties text", "orders", "SELECT 'x' AS name, user_id AS external_id, status AS properties FROM changes",
			[]string{`"properties" column is of type text, not json or jsonb: cast it to jsonb`}},
		{"timestamp text", "orders", "SELECT 'x' AS name, user_id AS external_id, status AS timestamp FROM changes",
			[]string{`"timestamp" column is of type text, not timestamptz, timestamp or date`}},
		{"extra column", "orders", "SELECT 'x' AS name, user_id AS external_id, amount FROM changes",
			[]string{`returns the column "amount", which is not one of name, external_id, timestamp and properties`}},
		{"unnamed column", "orders", "SELECT 'x' AS name, user_id AS external_id, 1 + 1 FROM changes",
			[]string{`"?column?"`, "name the expression with AS"}},
		{"duplicate column", "orders", "SELECT 'x' AS name, 'y' AS name, user_id AS external_id FROM changes",
			[]string{`returns the column "name" twice`}},
		{"two statements", "orders", "SELECT 'x' AS name, user_id AS external_id FROM changes; SELECT 1",
			[]string{`syntax error at or near ";"`, "line 1, column 56"}},
		{"hint", "orders", "SELECT 'x' AS name, user_id AS external_id FROM changes WHERE amount = now()",
			[]string{"operator does not exist: numeric = timestamp with time zone", "hint: No operator matches"}},
		{"no table", "nosuch", "SELECT 'x' AS name, 'y' AS external_id",
			[]string{"the table app.nosuch does not exist"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := New(e.pool, []Spec{{Schema: "app", Table: tc.table, SQL: tc.sql}})
			if err != nil {
				t.Fatal(err)
			}
			err = tr.Check(context.Background())
			if err == nil {
				t.Fatal("Check passed")
			}
			msg := err.Error()
			t.Log(msg)
			for _, w := range append([]string{"table app." + tc.table + ": tables[].transform"}, tc.want...) {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
		})
	}

	// The timestamp unit needs an epoch column; New checks the options.
	tr, err := New(e.pool, []Spec{{Schema: "app", Table: "orders", TimestampUnit: "ms", SQL: "SELECT 'x' AS name, user_id AS external_id, created_at AS timestamp FROM changes"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Check(context.Background()); err == nil || !strings.Contains(err.Error(), `with timestamp_unit "ms" it must be an integer or numeric`) {
		t.Errorf("Check with timestamp_unit: %v", err)
	}
	for _, sp := range []Spec{
		{Schema: "app", Table: "orders", SQL: " ;\n"},
		{Schema: "app", Table: "orders", SQL: "SELECT 1", TimestampUnit: "h"},
		{Schema: "app", Table: "orders", SQL: "SELECT 1", TimestampZone: "Mars/Olympus"},
		{Table: "orders", SQL: "SELECT 1"},
	} {
		if _, err := New(e.pool, []Spec{sp}); err == nil {
			t.Errorf("New accepted %+v", sp)
		} else {
			t.Log(err)
		}
	}
	if _, err := New(e.pool, []Spec{{Schema: "a", Table: "b", SQL: "x"}, {Schema: "a", Table: "b", SQL: "y"}}); err == nil {
		t.Error("New accepted a table twice")
	}
}

// A failure that is not the rows' fault (a joined table dropped after
// Check) is returned, rejecting nothing, also for a new definition of the
// table; once the table is back, the same rows evaluate.
func TestNonRowError(t *testing.T) {
	e := setup(t, ordersDDL+`INSERT INTO app.orders VALUES (1, 1, 2, 'paid', NULL);`)
	tr := newT(t, e, Spec{Schema: "app", Table: "orders", SQL: `
SELECT 'paid' AS name, u.external_id FROM changes c JOIN app.users u ON u.id = c.user_id`})
	rel := e.rel(t, "app", "orders")
	ins := inputs(rel, e.values(t, "SELECT * FROM app.orders ORDER BY id"))
	evaluate(t, tr, ins)
	e.exec(t, "DROP TABLE app.users")
	for _, r := range []*replication.Relation{rel, e.rel(t, "app", "orders")} {
		out, err := tr.Evaluate(context.Background(), inputsOf(r, ins))
		if err == nil || out != nil {
			t.Fatalf("Evaluate after DROP: %v, %v", out, err)
		}
		if !strings.Contains(err.Error(), `relation "app.users" does not exist`) || !strings.Contains(err.Error(), "app.orders") {
			t.Errorf("error %v", err)
		}
		t.Log(err)
	}
	if s := tr.Stats(); s.RowErrors != 0 {
		t.Errorf("stats %+v: rows were rejected", s)
	}
	e.exec(t, "CREATE TABLE app.users (id int PRIMARY KEY, external_id text, plan text); INSERT INTO app.users VALUES (1, 'back', NULL)")
	out := evaluate(t, tr, ins)
	if len(out[0]) != 1 || out[0][0].ExternalID != "back" {
		t.Errorf("after the table is back: %+v", out[0])
	}
}

// inputsOf returns ins with their relation replaced.
func inputsOf(rel *replication.Relation, ins []Input) []Input {
	out := append([]Input(nil), ins...)
	for i := range out {
		out[i].Rel = rel
	}
	return out
}

// A new definition of the table for which the transform does not compile
// (a column it uses was dropped) rejects its rows; rows of the previous
// definition in the same batch still evaluate.
func TestNewDefinitionRejected(t *testing.T) {
	e := setup(t, ordersDDL+`INSERT INTO app.orders VALUES (1, 1, 2, 'paid', NULL);`)
	tr := newT(t, e, Spec{Schema: "app", Table: "orders", SQL: `SELECT o.status AS name, o.user_id::text AS external_id FROM changes o`})
	oldRel := e.rel(t, "app", "orders")
	old := inputs(oldRel, e.values(t, "SELECT * FROM app.orders"))
	e.exec(t, "ALTER TABLE app.orders DROP COLUMN status")
	newRel := e.rel(t, "app", "orders")
	ins := append(inputs(newRel, e.values(t, "SELECT * FROM app.orders")), old...)
	out := evaluate(t, tr, ins)
	want := `transform cannot be prepared for the table's new definition: column o.status does not exist (SQLSTATE 42703) at line 1, column 8 of the transform`
	if len(out[0]) != 1 || !strings.HasPrefix(out[0][0].Reject, want) || string(out[0][0].Row) != `{"id":1,"user_id":1,"amount":2.00,"created_at":null}` {
		t.Errorf("new definition: %+v, want reject %q", out[0][0], want)
	}
	if len(out[1]) != 1 || out[1][0].Reject != "" || out[1][0].Name != "paid" {
		t.Errorf("old definition: %+v", out[1])
	}
}

// An output that cannot become an event (NULL name) is rejected with the
// mapper's reason, prefixed, and the input row.
func TestOutputRejected(t *testing.T) {
	e := setup(t, ordersDDL+`INSERT INTO app.orders VALUES (1, 1, 2, NULL, NULL), (2, 1, 2, 'paid', NULL);`)
	tr := newT(t, e, Spec{Schema: "app", Table: "orders", SQL: `SELECT status AS name, user_id::text AS external_id FROM changes`})
	rel := e.rel(t, "app", "orders")
	ins := inputs(rel, e.values(t, "SELECT * FROM app.orders ORDER BY id"))
	out := evaluate(t, tr, ins)
	ev := out[0][0]
	if len(out[0]) != 1 || ev.Reject != `transform output: event name column "name" is NULL` ||
		string(ev.Row) != string(mapper.RowJSON(rel, ins[0].Values)) || ev.JSON != nil || ev.IdempotencyKey != outputKey(ins[0].Key, nil, []byte("1"), 0) || ev.Pos != ins[0].Pos {
		t.Errorf("NULL name: %+v row %s", ev, ev.Row)
	}
	if string(ev.Row) != `{"id":1,"user_id":1,"amount":2.00,"status":null,"created_at":null}` {
		t.Errorf("row %s", ev.Row)
	}
	if len(out[1]) != 1 || out[1][0].Reject != "" {
		t.Errorf("second row: %+v", out[1])
	}
}

// Values of every kind reach changes exactly: to_jsonb of the row in
// changes equals to_jsonb of the row in the table.
func TestTypesRoundTrip(t *testing.T) {
	e := setup(t, `
CREATE SCHEMA app;
CREATE TYPE app.mood AS ENUM ('ok', 'very "happy"');
CREATE TABLE app.typed (
  id int, ts timestamptz, ts0 timestamp(0), d date, amount numeric(12,3), f float8, doc jsonb, j json,
  tags int[], words text[], note text, vc varchar(5), ch char(3), b bytea, flag bool, iv interval, u uuid,
  m app.mood, r int4range, big bigint, gen int GENERATED ALWAYS AS (id * 2) STORED);
INSERT INTO app.typed (id, ts, ts0, d, amount, f, doc, j, tags, words, note, vc, ch, b, flag, iv, u, m, r, big) VALUES
 (1, '2024-02-29 23:59:59.999999+05:30', '2024-01-02 03:04:05', '0044-03-15 BC', -12345.678, 0.1, '{"a": [1, "x\"y"], "é": null}',
  '{ "keep" :  "spaces" }', '{{1,2},{3,NULL}}', ARRAY['a,b', 'c"d', NULL, 'e\f', '', 'NULL', ' {x} '],
  E'he said "hi" \\ back\\slash ''quote'' ünïcødé 😀\ttab\nnewline', 'abcde', 'x', '\x00ff10', true, '1 year 2 mons -3 days 04:05:06.5',
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'very "happy"', '[1,10)', 9223372036854775807),
 (2, NULL, NULL, NULL, NULL, 'NaN', 'null', NULL, '{}', '{}', '', NULL, NULL, '\x', false, NULL, NULL, NULL, 'empty', NULL),
 (3, 'infinity', '-infinity', 'infinity', 'NaN', '-Infinity', '"str"', '[]', NULL, NULL, NULL, '', '', NULL, NULL, NULL, NULL, 'ok', NULL, -1);`)
	tr := newT(t, e, Spec{Schema: "app", Table: "typed", SQL: `SELECT 'typed' AS name, 'u1' AS external_id, to_jsonb(c) AS properties FROM changes c`})
	rel := e.rel(t, "app", "typed")
	// pgoutput does not publish generated columns: leave gen out.
	rel = replication.NewRelation(rel.ID, rel.Namespace, rel.Name, rel.Columns[:len(rel.Columns)-1])
	ins := inputs(rel, e.values(t, "SELECT id, ts, ts0, d, amount, f, doc, j, tags, words, note, vc, ch, b, flag, iv, u, m, r, big FROM app.typed ORDER BY id"))
	want := e.values(t, "SELECT (to_jsonb(t) - 'gen')::text FROM app.typed t ORDER BY id")
	out := evaluate(t, tr, ins)
	for i := range ins {
		if len(out[i]) != 1 || out[i][0].Reject != "" {
			t.Fatalf("input %d: %+v", i, out[i])
		}
		ev := out[i][0]
		if !json.Valid(ev.JSON) {
			t.Fatalf("input %d: invalid JSON %s", i, ev.JSON)
		}
		var got struct {
			Properties json.RawMessage `json:"properties"`
		}
		if err := json.Unmarshal(ev.JSON, &got); err != nil {
			t.Fatal(err)
		}
		if string(got.Properties) != string(want[i][0]) {
			t.Errorf("input %d:\n got %s\nwant %s", i, got.Properties, want[i][0])
		}
	}
	t.Logf("%s", out[0][0].JSON)

	// Check reads the columns from the catalog without the generated one.
	c := tr.good["app.typed"]
	if c == nil || c.rel.Index("gen") >= 0 || len(c.rel.Columns) != len(rel.Columns) {
		t.Errorf("Check's relation: %+v", c)
	}
}

// Rows of two tables in one call are evaluated per table and returned in
// input order; tables without a transform are refused.
func TestTwoTables(t *testing.T) {
	e := setup(t, ordersDDL+`
CREATE TABLE app.visits (user_id int, page text);
INSERT INTO app.orders VALUES (1, 1, 2, 'paid', NULL);
INSERT INTO app.visits VALUES (2, '/home');`)
	tr := newT(t, e,
		Spec{Schema: "app", Table: "orders", SQL: `SELECT 'order' AS name, user_id::text AS external_id FROM changes`},
		Spec{Schema: "app", Table: "visits", SQL: `SELECT 'visit' AS name, user_id::text AS external_id, jsonb_build_object('page', page) AS properties FROM changes`})
	orders, visits := e.rel(t, "app", "orders"), e.rel(t, "app", "visits")
	if !tr.Handles(orders) || !tr.Handles(visits) || tr.Handles(e.rel(t, "app", "users")) {
		t.Error("Handles")
	}
	o := inputs(orders, e.values(t, "SELECT * FROM app.orders"))
	v := inputs(visits, e.values(t, "SELECT * FROM app.visits"))
	ins := []Input{o[0], v[0], o[0]}
	out := evaluate(t, tr, ins)
	var got []string
	for _, evs := range out {
		for _, ev := range evs {
			got = append(got, ev.Table+":"+ev.Name+":"+ev.ExternalID)
		}
	}
	if strings.Join(got, " ") != "app.orders:order:1 app.visits:visit:2 app.orders:order:1" {
		t.Errorf("events %q", got)
	}
	if s := tr.Stats(); s.Statements != 2 {
		t.Errorf("stats %+v, want one statement per table", s)
	}
	if _, err := tr.Evaluate(context.Background(), inputs(e.rel(t, "app", "users"), e.values(t, "SELECT * FROM app.users"))); err == nil {
		t.Error("Evaluate accepted a table without a transform")
	}
}

// BenchmarkEvaluate evaluates batches of 500 rows with a simple transform.
func BenchmarkEvaluate(b *testing.B) {
	const batch = 500
	e := setup(b, `CREATE TABLE public.events (id bigint, user_id text, event_name text, created_at timestamptz, amount numeric(10,2), data jsonb)`)
	tr := newT(b, e, Spec{Schema: "public", Table: "events", SQL: `
SELECT event_name AS name, user_id AS external_id, created_at AS timestamp,
       data || jsonb_build_object('amount', amount) AS properties
FROM changes`})
	rel := e.rel(b, "public", "events")
	rows := make([][][]byte, batch)
	for i := range rows {
		rows[i] = [][]byte{
			fmt.Appendf(nil, "%d", i), fmt.Appendf(nil, "user-%d", i%37), []byte("purchase"),
			[]byte("2025-10-21 19:09:32.263+00"), fmt.Appendf(nil, "%d.99", i), []byte(`{"sku": "A-1", "qty": 2}`),
		}
	}
	ins := inputs(rel, rows)
	b.ResetTimer()
	for b.Loop() {
		out, err := tr.Evaluate(context.Background(), ins)
		if err != nil {
			b.Fatal(err)
		}
		if len(out[batch-1]) != 1 || out[batch-1][0].Reject != "" {
			b.Fatalf("last row: %+v", out[batch-1])
		}
	}
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "rows/s")
}

// When the type of an output column changes after the transform was
// prepared (a table it reads was altered), Evaluate returns an error
// instead of misreading the values, and prepares it again at the next call.
// A table without columns can be transformed too.
func TestOutputColumnsChange(t *testing.T) {
	e := setup(t, ordersDDL+`
ALTER TABLE app.users ADD COLUMN props jsonb;
UPDATE app.users SET props = '{"vip": true}';
INSERT INTO app.orders VALUES (1, 1, 2, 'paid', NULL);
CREATE TABLE app.empty ();
INSERT INTO app.empty DEFAULT VALUES;`)
	tr := newT(t, e,
		Spec{Schema: "app", Table: "orders", SQL: `SELECT 'paid' AS name, u.external_id, u.props AS properties FROM changes c JOIN app.users u ON u.id = c.user_id`},
		Spec{Schema: "app", Table: "empty", SQL: `SELECT 'ping' AS name, 'u' AS external_id FROM changes UNION ALL SELECT 'pong', 'u'`})
	ins := inputs(e.rel(t, "app", "orders"), e.values(t, "SELECT * FROM app.orders"))
	out := evaluate(t, tr, ins)
	if !strings.HasSuffix(string(out[0][0].JSON), `"properties":{"vip": true}}`) {
		t.Errorf("before: %s", out[0][0].JSON)
	}
	e.exec(t, `ALTER TABLE app.users ALTER COLUMN props TYPE json USING props::json`)
	if _, err := tr.Evaluate(context.Background(), ins); err == nil || !strings.Contains(err.Error(), "output columns changed") {
		t.Fatalf("Evaluate after the type change: %v", err)
	}
	out = evaluate(t, tr, ins)
	if !strings.HasSuffix(string(out[0][0].JSON), `"properties":{"vip":true}}`) {
		t.Errorf("after: %s", out[0][0].JSON)
	}

	empty := inputs(e.rel(t, "app", "empty"), e.values(t, "SELECT * FROM app.empty"))
	empty = append(empty, empty[0])
	out = evaluate(t, tr, empty)
	for i := range out {
		if len(out[i]) != 2 || out[i][0].Name != "ping" || out[i][1].Name != "pong" || string(out[i][0].Row) != "" {
			t.Errorf("table without columns, input %d: %+v", i, out[i])
		}
	}
}

// The keys of a row's events follow the events, not their order: a
// transform that returns them in another order on a replay gives each event
// the key it had, so OneSignal drops exactly the ones it already has.
func TestOutputKeysFollowTheEvents(t *testing.T) {
	e := setup(t, ordersDDL+`
INSERT INTO app.orders SELECT g, 1, g, 'paid', '2024-01-01' FROM generate_series(1, 2) g;`)
	ab := newT(t, e, Spec{Schema: "app", Table: "orders", SQL: `
SELECT 'a' AS name, user_id::text AS external_id FROM changes
UNION ALL SELECT 'b', user_id::text FROM changes
UNION ALL SELECT 'a', user_id::text FROM changes`})
	ba := newT(t, e, Spec{Schema: "app", Table: "orders", SQL: `
SELECT 'b' AS name, user_id::text AS external_id FROM changes
UNION ALL SELECT 'a', user_id::text FROM changes
UNION ALL SELECT 'a', user_id::text FROM changes`})
	ins := inputs(e.rel(t, "app", "orders"), e.values(t, "SELECT * FROM app.orders ORDER BY id"))
	x, y := evaluate(t, ab, ins), evaluate(t, ba, ins)
	for i := range ins {
		keys := func(evs []*cdc.Event) map[string]string {
			m := map[string]string{}
			n := map[string]int{}
			for _, ev := range evs {
				m[fmt.Sprintf("%s#%d", ev.Name, n[ev.Name])] = ev.IdempotencyKey
				n[ev.Name]++
			}
			return m
		}
		kx, ky := keys(x[i]), keys(y[i])
		if len(kx) != 3 || fmt.Sprint(kx) != fmt.Sprint(ky) {
			t.Errorf("row %d: keys by event %v in one order, %v in the other", i, kx, ky)
		}
	}
}

// A row whose transform returns more than MaxEventsPerRow events becomes
// one dead letter saying so; the batch's other rows are evaluated.
func TestTooManyEventsForOneRow(t *testing.T) {
	e := setup(t, ordersDDL+`
INSERT INTO app.orders SELECT g, g, g, 'paid', '2024-01-01' FROM generate_series(1, 2) g;`)
	tr := newT(t, e, Spec{Schema: "app", Table: "orders", SQL: fmt.Sprintf(`
SELECT 'e' AS name, user_id::text AS external_id FROM changes, generate_series(1, CASE WHEN id = 1 THEN %d ELSE 3 END)`, MaxEventsPerRow+1)})
	ins := inputs(e.rel(t, "app", "orders"), e.values(t, "SELECT * FROM app.orders ORDER BY id"))
	got := evaluate(t, tr, ins)
	if len(got[0]) != 1 || !strings.Contains(got[0][0].Reject, fmt.Sprintf("returned %d events for this row; at most %d", MaxEventsPerRow+1, MaxEventsPerRow)) {
		t.Errorf("row 1: %d events, first %+v; want one dead letter", len(got[0]), got[0][0])
	}
	if len(got[1]) != 3 || got[1][0].Reject != "" {
		t.Errorf("row 2: %d events; want 3", len(got[1]))
	}
}
