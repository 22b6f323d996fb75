package setupsql

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// Setup publishes a partitioned table via its root, also when the
// publication already holds it without (at 37942e1 the script then failed:
// pg_publication_tables listed the partitions, and ADD TABLE said 42710).
func TestApplyPartitioned(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t, pgtest.Options{})
	conn, err := pgx.Connect(ctx, pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	mustExec(t, conn, `CREATE TABLE public.events (id bigint, user_id text, at timestamptz NOT NULL) PARTITION BY RANGE (at);
CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE PUBLICATION pgsignal FOR TABLE public.events WITH (publish = 'insert')`)
	o := Options{User: "census", Password: "pw", Schema: "census", Publication: "pgsignal", Slot: "pgsignal",
		Tables: []Table{{Schema: "public", Name: "events"}}}
	s, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if n, err := Apply(ctx, conn, s, &out); err != nil || n != len(s.Statements) {
		t.Fatalf("applied %d of %d: %v\n%s", n, len(s.Statements), err, out.String())
	}
	var via bool
	var tables string
	if err := conn.QueryRow(ctx, `SELECT p.pubviaroot, (SELECT string_agg(schemaname || '.' || tablename, ',') FROM pg_publication_tables WHERE pubname = p.pubname)
FROM pg_publication p WHERE pubname = 'pgsignal'`).Scan(&via, &tables); err != nil {
		t.Fatal(err)
	}
	if !via || tables != "public.events" {
		t.Fatalf("pubviaroot %v, tables %s", via, tables)
	}
}
