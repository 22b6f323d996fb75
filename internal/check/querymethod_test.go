package check

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// queryMethodSQL creates the tables of the query-method cases, on a server
// with wal_level = replica (the query method needs no logical decoding),
// and a user with SELECT only.
const queryMethodSQL = `CREATE SCHEMA analytics;
CREATE TABLE analytics.user_events (event_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, event_name text, user_id text);
CREATE TABLE analytics."Odd Events" (pk int PRIMARY KEY, "Seq" bigserial, event_name text, user_id text);
CREATE TABLE analytics.nokey (id bigserial, event_name text, user_id text);
CREATE INDEX ON analytics.nokey (id);
CREATE TABLE analytics.noseq (id bigint PRIMARY KEY, event_name text, user_id text);
CREATE TABLE analytics.textcur (id text PRIMARY KEY, event_name text, user_id text);
CREATE SEQUENCE analytics.shared_seq;
CREATE TABLE analytics.fromdefault (id bigint PRIMARY KEY DEFAULT nextval('analytics.shared_seq'), event_name text, user_id text);
CREATE TABLE analytics.cached (id bigserial PRIMARY KEY, event_name text, user_id text);
ALTER SEQUENCE analytics.cached_id_seq CACHE 20;
CREATE TABLE analytics.partial (id bigserial, event_name text, user_id text, PRIMARY KEY (event_name, user_id));
CREATE INDEX ON analytics.partial (id) WHERE id > 10;
CREATE ROLE reader LOGIN;
GRANT USAGE ON SCHEMA analytics TO reader;
GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO reader;
CREATE SCHEMA bk;
GRANT USAGE, CREATE ON SCHEMA bk TO reader`

// queryConfig is testConfig with the query method, reading table name by
// cursor.
func queryConfig(dsn, table, cursor string) *config.Config {
	c := testConfig(dsn, nil)
	c.OneSignal.URL = "http://127.0.0.1:1" // the OneSignal items are not the point here
	c.Source.Method = config.MethodQuery
	c.Source.Schema = "bk"
	c.Tables = []config.Table{{Schema: "analytics", Name: table, Cursor: cursor, EventName: "event_name", ExternalID: "user_id"}}
	return c
}

// With source.method: query, check verifies the cursor column (an integer
// filled from a sequence or identity, without a caching sequence, led by a
// btree index), the primary key and SELECT, and none of the logical
// method's items: a user without REPLICATION on a server with wal_level =
// replica passes.
func TestCheckQueryMethodItems(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t, pgtest.Options{Conf: map[string]string{"wal_level": "replica"}})
	for _, stmt := range strings.Split(queryMethodSQL, ";\n") {
		if err := pg.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	readerDSN := strings.Replace(pg.DSN(""), "postgres@", "reader@", 1)
	var version int
	conn, err := pgx.Connect(ctx, pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&version); err != nil {
		t.Fatal(err)
	}

	// The good table: every database item passes, and the logical items
	// are not there.
	rep := Run(ctx, Options{Config: queryConfig(readerDSN, "user_events", "event_id")})
	var dump strings.Builder
	_ = rep.WriteText(&dump)
	t.Logf("\n%s", dump.String())
	var names []string
	for _, it := range rep.Items {
		names = append(names, it.Name)
		if it.Name == "onesignal credentials" {
			continue
		}
		if it.Status != Pass {
			t.Errorf("item %+v is not a pass", it)
		}
	}
	want := []string{"reachability", "tls", "login", "server version", "server encoding", "primary or standby",
		"select analytics.user_events", "bookkeeping schema", "cursor analytics.user_events",
		"primary key analytics.user_events", "columns analytics.user_events"}
	if got := strings.Join(names, ", "); !strings.HasPrefix(got, strings.Join(want, ", ")+", onesignal") {
		t.Fatalf("items %s\nwant %s, then the OneSignal items", got, strings.Join(want, ", "))
	}
	for name, detail := range map[string]string{
		"primary or standby":                "primary",
		"cursor analytics.user_events":      `"event_id" (bigint), an identity column (sequence analytics.user_events_event_id_seq), covered by a btree index`,
		"primary key analytics.user_events": `("event_id"): the events' idempotency keys come from it`,
		"columns analytics.user_events":     "name ← event_name (text), external_id ← user_id (text)",
		"server version":                    "the query method reads 9.6 and later",
	} {
		if it := find(t, rep, name); it.Detail != detail && !strings.Contains(it.Detail, detail) {
			t.Errorf("%s: detail %q, want %q", name, it.Detail, detail)
		}
	}

	cases := []struct {
		name, table, cursor string
		item                string
		status              Status
		detail, fix         string
	}{
		{"no index, quoted names", "Odd Events", "Seq", `cursor analytics."Odd Events"`, Warn,
			`"Seq" (bigint), filled from sequence analytics."Odd Events_Seq_seq"; but no btree index leads with "Seq": every poll reads the whole table`,
			`CREATE INDEX CONCURRENTLY ON "analytics"."Odd Events" ("Seq");`},
		{"partial index does not count", "partial", "id", "cursor analytics.partial", Warn,
			`no btree index leads with "id"`, `CREATE INDEX CONCURRENTLY ON "analytics"."partial" ("id");`},
		{"no primary key", "nokey", "id", "primary key analytics.nokey", Fail,
			`"analytics"."nokey" has no primary key: the query method derives each event's idempotency key from it`,
			`add a primary key: ALTER TABLE "analytics"."nokey" ADD PRIMARY KEY (...);`},
		{"no sequence", "noseq", "id", "cursor analytics.noseq", Warn,
			`cursor column "id" is not filled from a sequence or identity (default: none): pgsignal reads the rows whose cursor is above the highest it has read, so a row inserted later with a lower value`,
			`ALTER TABLE "analytics"."noseq" ALTER COLUMN "id" ADD GENERATED BY DEFAULT AS IDENTITY;`},
		{"a caching sequence", "cached", "id", "cursor analytics.cached", Warn,
			`sequence analytics.cached_id_seq has CACHE 20: each session takes 20 values at a time`,
			`ALTER SEQUENCE analytics.cached_id_seq CACHE 1;`},
		{"a sequence the column does not own", "fromdefault", "id", "cursor analytics.fromdefault", Pass,
			`"id" (bigint), filled from sequence analytics.shared_seq, covered by a btree index`, ""},
		{"not an integer", "textcur", "id", "cursor analytics.textcur", Fail,
			`cursor column "id" is text, not an integer (smallint, integer or bigint)`, "set tables[0].cursor to an integer column"},
		{"no such column", "user_events", "nope", "cursor analytics.user_events", Fail,
			`"analytics"."user_events" has no column "nope" (tables[0].cursor)`, "set tables[0].cursor to the column new rows are read by"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := Run(ctx, Options{Config: queryConfig(readerDSN, c.table, c.cursor)})
			it := find(t, rep, c.item)
			if it.Status != c.status || !strings.Contains(it.Detail, c.detail) || !strings.Contains(it.Fix, c.fix) {
				var b strings.Builder
				_ = rep.WriteText(&b)
				t.Fatalf("got %+v\nwant %s %q, fix %q\n%s", it, c.status, c.detail, c.fix, b.String())
			}
		})
	}

	// A generated column (PostgreSQL 12+) is read by the query method
	// (logical replication sends it only from PostgreSQL 18).
	cfg := queryConfig(readerDSN, "user_events", "event_id")
	if version >= 120000 {
		if err := pg.Exec(ctx, `ALTER TABLE analytics.user_events ADD COLUMN gen text GENERATED ALWAYS AS (user_id || '!') STORED`); err != nil {
			t.Fatal(err)
		}
		cfg.Tables[0].ExternalID = "gen"
		if it := find(t, Run(ctx, Options{Config: cfg}), "columns analytics.user_events"); it.Status != Pass {
			t.Fatalf("a generated column: %+v", it)
		}
		cfg.Tables[0].ExternalID = "user_id"
	}

	// On a standby, read-only mode passes and shows the replay lag; full
	// mode fails, since it writes the bookkeeping schema.
	standby := pgtest.NewStandby(t, pg, pgtest.Options{Conf: map[string]string{"wal_level": "replica"}})
	if err := pg.Exec(ctx, `INSERT INTO analytics.user_events (event_name, user_id) VALUES ('signup', 'u1')`); err != nil {
		t.Fatal(err)
	}
	if err := standby.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	standbyDSN := strings.Replace(standby.DSN(""), "postgres@", "reader@", 1)
	cfg = queryConfig(standbyDSN, "user_events", "event_id")
	cfg.Source.Mode = config.ModeReadOnly
	rep = Run(ctx, Options{Config: cfg})
	dump.Reset()
	_ = rep.WriteText(&dump)
	t.Logf("standby, read-only:\n%s", dump.String())
	it := find(t, rep, "primary or standby")
	if it.Status != Pass || !strings.HasPrefix(it.Detail, "a standby (the query method reads it in read-only mode): ") ||
		!strings.Contains(it.Detail, "replay lag ") || !strings.Contains(it.Detail, "received 0/") || !strings.Contains(it.Detail, "not replayed yet") {
		t.Fatalf("standby item: %+v", it)
	}
	for _, name := range []string{"select analytics.user_events", "cursor analytics.user_events", "primary key analytics.user_events"} {
		if it := find(t, rep, name); it.Status != Pass {
			t.Fatalf("on the standby: %+v", it)
		}
	}
	if it := find(t, rep, "bookkeeping schema"); it.Status != Skip {
		t.Fatalf("read-only mode: %+v", it)
	}
	cfg.Source.Mode = config.ModeFull
	it = find(t, Run(ctx, Options{Config: cfg}), "primary or standby")
	if it.Status != Fail || !strings.Contains(it.Detail, "full mode writes its bookkeeping schema") || !strings.Contains(it.Fix, "source.mode: read-only") {
		t.Fatalf("standby, full mode: %+v", it)
	}
}
