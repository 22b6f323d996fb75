package setupsql

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// queryOptions are the golden options of the query method.
func queryOptions(readOnly bool) Options {
	o := goldenOptions(readOnly)
	o.Query = true
	return o
}

// The query method's scripts match the golden files exactly (go test
// -update rewrites them): no REPLICATION, no publication, no slot.
func TestGoldenQueryMethod(t *testing.T) {
	for file, readOnly := range map[string]bool{"query-full.sql": false, "query-readonly.sql": true} {
		t.Run(file, func(t *testing.T) {
			s, err := Generate(queryOptions(readOnly))
			if err != nil {
				t.Fatal(err)
			}
			got := s.SQL()
			path := filepath.Join("testdata", file)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Fatalf("%s differs (go test -update rewrites it); got:\n%s", path, got)
			}
			for _, st := range s.Statements {
				if st.Kind == KindReplication || st.Kind == KindPublication {
					t.Fatalf("the query method's script has %s", st.Title)
				}
				if readOnly && st.Kind == KindSchema {
					t.Fatalf("the read-only script has %s", st.Title)
				}
			}
			for _, st := range s.Statements {
				for _, bad := range []string{"REPLICATION", "PUBLICATION", "pg_create_logical_replication_slot"} {
					if strings.Contains(strings.ToUpper(st.SQL), strings.ToUpper(bad)) {
						t.Fatalf("statement %q holds %s:\n%s", st.Title, bad, st.SQL)
					}
				}
			}
		})
	}
}

// The query method's script, applied twice to a real server where PUBLIC
// has no CONNECT, lets the user log in and SELECT the tables (and, in full
// mode, create tables in the bookkeeping schema), and gives it neither
// REPLICATION nor any other right on the tables; no publication is made.
func TestApplyQueryMethod(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t, pgtest.Options{})
	conn, err := pgx.Connect(ctx, pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	mustExec(t, conn, `REVOKE CONNECT ON DATABASE postgres FROM PUBLIC;
CREATE SCHEMA analytics;
CREATE TABLE analytics.user_events (id bigserial PRIMARY KEY, event_name text, user_id text);
INSERT INTO analytics.user_events (event_name, user_id) VALUES ('signup', 'u1');`)

	for _, c := range []struct {
		user     string
		readOnly bool
	}{{"poller", false}, {"reader", true}} {
		t.Run(c.user, func(t *testing.T) {
			s, err := Generate(Options{User: c.user, Schema: "census_" + c.user, ReadOnly: c.readOnly, Query: true,
				Tables: []Table{{Schema: "analytics", Name: "user_events"}}})
			if err != nil {
				t.Fatal(err)
			}
			for run := 1; run <= 2; run++ {
				var out strings.Builder
				if n, err := Apply(ctx, conn, s, &out); err != nil || n != len(s.Statements) {
					t.Fatalf("run %d: applied %d of %d: %v\n%s", run, n, len(s.Statements), err, out.String())
				}
				t.Logf("run %d:\n%s", run, out.String())
			}

			user, err := pgx.Connect(ctx, strings.Replace(pg.DSN(""), "postgres@", c.user+"@", 1))
			if err != nil {
				t.Fatalf("%s cannot log in: %v", c.user, err)
			}
			defer user.Close(ctx)
			var name string
			if err := user.QueryRow(ctx, `SELECT event_name FROM analytics.user_events WHERE id = 1`).Scan(&name); err != nil || name != "signup" {
				t.Fatalf("%s: SELECT = %q, %v", c.user, name, err)
			}
			var repl, super, insert bool
			var pubs int
			if err := user.QueryRow(ctx, `SELECT rolreplication, rolsuper, has_table_privilege('analytics.user_events', 'INSERT'),
  (SELECT count(*) FROM pg_publication)
FROM pg_roles WHERE rolname = current_user`).Scan(&repl, &super, &insert, &pubs); err != nil {
				t.Fatal(err)
			}
			if repl || super || insert || pubs != 0 {
				t.Fatalf("%s: REPLICATION %v, superuser %v, INSERT on the table %v, %d publications; want none", c.user, repl, super, insert, pubs)
			}
			var schemas int
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM pg_namespace WHERE nspname = $1`, "census_"+c.user).Scan(&schemas); err != nil {
				t.Fatal(err)
			}
			if c.readOnly {
				if schemas != 0 {
					t.Fatalf("read-only mode created the bookkeeping schema")
				}
				return
			}
			if schemas != 1 {
				t.Fatalf("full mode: %d bookkeeping schemas, want 1", schemas)
			}
			if _, err := user.Exec(ctx, `CREATE TABLE census_poller.probe (id int); INSERT INTO census_poller.probe VALUES (1); DROP TABLE census_poller.probe`); err != nil {
				t.Fatalf("%s cannot keep tables in its bookkeeping schema: %v", c.user, err)
			}
		})
	}
}
