package setupsql

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// hostile is a table name that would inject a statement if it were not
// quoted.
const hostile = `x"; DROP TABLE analytics.user_events; --`

// Applying the script twice succeeds, creates what it says, and the quoted
// names (`odd; name`, a hostile one) inject nothing. A user that does not own
// a table is told that the publication needs an owner.
func TestApplyTwice(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t, pgtest.Options{})
	conn, err := pgx.Connect(ctx, pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	mustExec(t, conn, `CREATE SCHEMA analytics;
CREATE TABLE analytics.user_events (id bigserial PRIMARY KEY, event_name text, user_id text);
CREATE TABLE analytics."odd; name" (id int);
CREATE TABLE analytics.`+pgcat.QuoteIdent(hostile)+` (id int);`)

	o := Options{User: "census", Password: "pw-1", Schema: "census", Publication: "pgsignal", Slot: "pgsignal",
		Tables: []Table{{Schema: "analytics", Name: "user_events"}, {Schema: "analytics", Name: "odd; name"}, {Schema: "analytics", Name: hostile}}}
	s, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	for run := 1; run <= 2; run++ {
		var out strings.Builder
		n, err := Apply(ctx, conn, s, &out)
		if err != nil || n != len(s.Statements) {
			t.Fatalf("run %d: applied %d of %d: %v\n%s", run, n, len(s.Statements), err, out.String())
		}
		t.Logf("run %d:\n%s", run, out.String())
		want := map[int][]string{
			1: {`✓ user "census": created`, `✓ publication "pgsignal": created`},
			2: {`✓ user "census": exists`, `✓ publication "pgsignal": exists and covers every table`},
		}[run]
		for _, w := range want {
			if !strings.Contains(out.String(), w) {
				t.Fatalf("run %d: report lacks %q:\n%s", run, w, out.String())
			}
		}
		if strings.Contains(out.String(), "pw-1") {
			t.Fatal("the report shows the password")
		}
	}

	var repl bool
	var tables int
	if err := conn.QueryRow(ctx, `SELECT rolreplication FROM pg_roles WHERE rolname = 'census'`).Scan(&repl); err != nil || !repl {
		t.Fatalf("rolreplication = %v, %v", repl, err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_publication_tables WHERE pubname = 'pgsignal'`).Scan(&tables); err != nil || tables != 3 {
		t.Fatalf("publication holds %d tables, %v; want 3", tables, err)
	}
	var selectable, schemaCreate bool
	if err := conn.QueryRow(ctx, `SELECT has_table_privilege('census', 'analytics."odd; name"', 'SELECT'),
  has_schema_privilege('census', 'census', 'CREATE')`).Scan(&selectable, &schemaCreate); err != nil || !selectable || !schemaCreate {
		t.Fatalf("SELECT %v, CREATE on census %v: %v", selectable, schemaCreate, err)
	}

	// A table added to the configuration later is added to the publication.
	mustExec(t, conn, `CREATE TABLE analytics.later (id int)`)
	o.Tables = append(o.Tables, Table{Schema: "analytics", Name: "later"})
	o.ResetPassword = true
	s, err = Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if _, err := Apply(ctx, conn, s, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, w := range []string{`✓ password of "census": password set`, `✓ publication "pgsignal": exists; added "analytics"."later"`} {
		if !strings.Contains(out.String(), w) {
			t.Fatalf("report lacks %q:\n%s", w, out.String())
		}
	}

	// A user that does not own a table to add is told to run it as the owner.
	mustExec(t, conn, `CREATE TABLE analytics.other (id int); CREATE ROLE admin1 LOGIN CREATEROLE;`)
	adminConn, err := pgx.Connect(ctx, strings.Replace(pg.DSN(""), "postgres@", "admin1@", 1))
	if err != nil {
		t.Fatal(err)
	}
	defer adminConn.Close(ctx)
	o.Tables = append(o.Tables, Table{Schema: "analytics", Name: "other"})
	detail, problem, err := checkPublication(ctx, adminConn, o)
	if err != nil {
		t.Fatal(err)
	}
	if want := `"admin1" does not own "analytics"."other" (owner "postgres"). Only the owner of a table (or a superuser) may add to the publication it`; !strings.Contains(problem, want) {
		t.Fatalf("problem %q (detail %q) lacks %q", problem, detail, want)
	}
	o.Tables = append(o.Tables, Table{Schema: "analytics", Name: "missing"})
	if _, problem, _ := checkPublication(ctx, adminConn, o); !strings.Contains(problem, `"analytics"."missing" does not exist`) {
		t.Fatalf("problem for a missing table: %q", problem)
	}
	s, err = Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	// SELECT is granted per table, so the missing table stops the setup
	// at its grant, before the publication.
	if _, err := Apply(ctx, conn, s, &out); !errors.Is(err, ErrFailed) || !strings.Contains(out.String(), "✗ SELECT on \"analytics\".\"missing\": relation \"analytics.missing\" does not exist") {
		t.Fatalf("Apply with a missing table: %v\n%s", err, out.String())
	}
}

// The read-only script applies too, twice, and creates no schema.
func TestApplyReadOnly(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t, pgtest.Options{})
	conn, err := pgx.Connect(ctx, pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	mustExec(t, conn, `CREATE TABLE public.events (id int)`)
	if p, err := DetectPlatform(ctx, conn); err != nil || p != Postgres {
		t.Fatalf("DetectPlatform = %q, %v", p, err)
	}
	s, err := Generate(Options{User: "reader", ReadOnly: true, Publication: "pub", Slot: "slot",
		Tables: []Table{{Schema: "public", Name: "events"}}})
	if err != nil {
		t.Fatal(err)
	}
	for run := 0; run < 2; run++ {
		var out strings.Builder
		if _, err := Apply(ctx, conn, s, &out); err != nil {
			t.Fatalf("%v\n%s", err, out.String())
		}
	}
	var schemas int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = 'census'`).Scan(&schemas); err != nil || schemas != 0 {
		t.Fatalf("census schemas: %d, %v", schemas, err)
	}
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
