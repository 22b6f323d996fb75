package app

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zaptest"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/replication"
)

// runErr runs pgsignal with cfg and returns the error it stops with before
// streaming (the test fails if it starts streaming).
func (h *harness) runErr(cfg *config.Config) error {
	h.t.Helper()
	if err := cfg.Validate(); err != nil {
		h.t.Fatalf("config: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := New(Options{Config: cfg, Logger: zaptest.NewLogger(h.t), OnStreaming: func() {
		h.t.Error("pgsignal started streaming; want a start-up error")
		cancel()
	}})
	_, err := a.Run(ctx)
	if err == nil {
		h.t.Fatal("Run succeeded; want a start-up error")
	}
	return err
}

// pool returns a connection pool to the test database, closed at the end
// of the test.
func (h *harness) pool() *pgxpool.Pool {
	h.t.Helper()
	p, err := pgxpool.New(context.Background(), h.pg.DSN(""))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(p.Close)
	return p
}

// rowFilter returns the publication's row filter of the seed table ("" for
// none).
func (h *harness) rowFilter(publication string) string {
	h.t.Helper()
	var f *string
	if err := h.db.QueryRow(context.Background(), `SELECT rowfilter FROM pg_publication_tables
  WHERE pubname = $1 AND schemaname = 'analytics' AND tablename = 'user_events'`, publication).Scan(&f); err != nil {
		h.t.Fatal(err)
	}
	if f == nil {
		return ""
	}
	return *f
}

// filterHarness starts PostgreSQL 15 or later with the seed table.
func filterHarness(t *testing.T) *harness {
	h := newHarness(t, pgtest.Options{})
	var num int
	if err := h.db.QueryRow(context.Background(), `SELECT current_setting('server_version_num')::int`).Scan(&num); err != nil {
		t.Fatal(err)
	}
	if num < replication.MinRowFilterVersion {
		t.Skipf("row filters need PostgreSQL 15+, the server is %d (the version error is TestFilterVersionCheck)", num)
	}
	h.exec(seedTable)
	return h
}

// Only the rows the filter accepts arrive, and the others never leave the
// server: pgsignal receives exactly the matching rows.
func TestFilterRowFilter(t *testing.T) {
	h := filterHarness(t)
	cfg := h.config()
	cfg.Tables[0].Where = "event_name = 'purchase'"
	r := h.start(cfg)
	if got, want := h.rowFilter("pgsignal"), "(event_name = 'purchase'::text)"; got != want {
		t.Errorf("publication row filter = %q, want %q", got, want)
	}
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('login', 'u1'), ('purchase', 'u1'), ('view', 'u2')`)
	h.exec(`BEGIN;
INSERT INTO analytics.user_events (event_name, user_id) VALUES ('login', 'u3');
INSERT INTO analytics.user_events (event_name, user_id) VALUES ('purchase', 'u3');
COMMIT;
INSERT INTO analytics.user_events (event_name, user_id) VALUES (NULL, 'u4'), ('purchase', 'u5')`)
	h.waitCount(3)
	sum := r.stop(t)
	var got []string
	for _, ev := range h.fake.Events() {
		got = append(got, ev.Name+"|"+ev.ExternalID)
	}
	sort.Strings(got) // lanes deliver out of order
	if want := "purchase|u1 purchase|u3 purchase|u5"; strings.Join(got, " ") != want {
		t.Errorf("events = %q, want %s", got, want)
	}
	if sum.Received != 3 || sum.Delivered != 3 || sum.DeadLettered != 0 {
		t.Errorf("received %d, delivered %d, dead-lettered %d; want 3, 3, 0 (filtered rows must not reach pgsignal)",
			sum.Received, sum.Delivered, sum.DeadLettered)
	}
}

// An existing publication whose filter differs from the configuration is
// altered in full mode; a table pgsignal does not stream keeps its filter.
func TestFilterChangedAltersPublication(t *testing.T) {
	h := filterHarness(t)
	h.exec(`CREATE TABLE public.other (id int PRIMARY KEY, k text);
CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WHERE (event_name = 'login'), public.other WHERE (k = 'x') WITH (publish = 'insert')`)
	cfg := h.config()
	cfg.Tables[0].Where = "event_name IN ('purchase', 'refund')"
	r := h.start(cfg)
	if got, want := h.rowFilter("pgsignal"), "(event_name = ANY (ARRAY['purchase'::text, 'refund'::text]))"; got != want {
		t.Errorf("publication row filter = %q, want %q", got, want)
	}
	var other string
	if err := h.db.QueryRow(context.Background(), `SELECT rowfilter FROM pg_publication_tables WHERE pubname = 'pgsignal' AND tablename = 'other'`).Scan(&other); err != nil {
		t.Fatal(err)
	}
	if other != "(k = 'x'::text)" {
		t.Errorf("row filter of public.other = %q, want it kept", other)
	}
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('login', 'u1'), ('refund', 'u1'), ('purchase', 'u2')`)
	h.waitCount(2)
	if sum := r.stop(t); sum.Received != 2 {
		t.Errorf("received %d rows, want 2", sum.Received)
	}
	// The same filter written differently changes nothing.
	res, err := replication.SyncPublication(context.Background(), h.pool(), "pgsignal",
		[]replication.PublishedTable{{TableRef: replication.TableRef{Schema: "analytics", Name: "user_events"},
			Where: "event_name = ANY (ARRAY['purchase', 'refund'])"}}, true)
	if err != nil || res.Created || len(res.Altered) != 0 {
		t.Errorf("SyncPublication with an equivalent filter = %+v, %v; want no change", res, err)
	}
	// Without the filter, the publication streams every row again.
	res, err = replication.SyncPublication(context.Background(), h.pool(), "pgsignal",
		[]replication.PublishedTable{{TableRef: replication.TableRef{Schema: "analytics", Name: "user_events"}}}, true)
	want := `ALTER PUBLICATION "pgsignal" DROP TABLE "analytics"."user_events"; ALTER PUBLICATION "pgsignal" ADD TABLE "analytics"."user_events";`
	if err != nil || strings.Join(res.Altered, " ") != want {
		t.Errorf("SyncPublication without a filter = %+v, %v; want Altered [%s]", res, err, want)
	}
	if f := h.rowFilter("pgsignal"); f != "" {
		t.Errorf("row filter = %q after removing it, want none", f)
	}
}

// Read-only mode does not alter the publication: a different filter is an
// error that prints the SQL.
func TestFilterReadOnlyMismatch(t *testing.T) {
	h := filterHarness(t)
	h.exec(`CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WHERE (event_name = 'login') WITH (publish = 'insert')`)
	cfg := h.config()
	cfg.Source.Mode = config.ModeReadOnly
	cfg.Sink.DeadLetterFile = t.TempDir() + "/dl.jsonl"
	cfg.Tables[0].Where = "event_name = 'purchase'"
	err := h.runErr(cfg)
	want := `publication "pgsignal" does not match the configuration (tables, row filters or publish option); fix it with:
  ALTER PUBLICATION "pgsignal" DROP TABLE "analytics"."user_events";
  ALTER PUBLICATION "pgsignal" ADD TABLE "analytics"."user_events" WHERE (event_name = 'purchase');`
	if err.Error() != want || !errors.Is(err, replication.ErrPermanent) {
		t.Errorf("error:\n  %v\nwant (permanent):\n  %s", err, want)
	}
	if f := h.rowFilter("pgsignal"); f != "(event_name = 'login'::text)" {
		t.Errorf("read-only mode changed the row filter to %q", f)
	}
}

// A filter PostgreSQL rejects stops pgsignal at start-up with PostgreSQL's
// message; nothing is created.
func TestFilterRejected(t *testing.T) {
	h := filterHarness(t)
	tests := []struct {
		name, where string
		updates     bool
		want        []string
	}{
		{"unknown column", "kind = 'purchase'", false, []string{
			`row filter of table analytics.user_events (where: kind = 'purchase') is not valid: ERROR: column "kind" does not exist (SQLSTATE 42703)`}},
		{"syntax error", "event_name = = 'x'", false, []string{
			`row filter of table analytics.user_events (where: event_name = = 'x') is not valid: ERROR: syntax error at or near "="`}},
		{"volatile function", "event_timestamp >= now() - interval '7 days'", false, []string{
			`publication "pgsignal": PostgreSQL rejects a row filter (CREATE PUBLICATION "pgsignal" FOR TABLE "analytics"."user_events" WHERE (event_timestamp >= now() - interval '7 days') WITH (publish = 'insert');): ERROR: invalid publication WHERE expression (SQLSTATE 0A000)`}},
		{"column outside the replica identity with updates", "event_name = 'purchase'", true, []string{
			`the row filter of table analytics.user_events uses column "event_name", which is not in the table's replica identity, and publication "pgsignal" publishes updates or deletes: PostgreSQL would reject every UPDATE and DELETE of the table; filter only on replica identity columns (the primary key), or give the table REPLICA IDENTITY FULL (ALTER TABLE "analytics"."user_events" REPLICA IDENTITY FULL;)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := h.config()
			cfg.Tables[0].Where = tt.where
			if tt.updates {
				cfg.Tables[0].Emit = []string{config.EmitInsert, config.EmitUpdate}
			}
			err := h.runErr(cfg)
			if !errors.Is(err, replication.ErrPermanent) {
				t.Errorf("error is not permanent: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n  %v\ndoes not contain\n  %s", err, w)
				}
			}
			var n int
			if err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM pg_publication`).Scan(&n); err != nil || n != 0 {
				t.Errorf("%d publications exist (%v), want none", n, err)
			}
		})
	}
}

// A filter on a primary key column is allowed with updates; the publication
// then publishes updates.
func TestFilterWithUpdatesOnKey(t *testing.T) {
	h := filterHarness(t)
	res, err := replication.SyncPublication(context.Background(), h.pool(), "pgsignal",
		[]replication.PublishedTable{{TableRef: replication.TableRef{Schema: "analytics", Name: "user_events"},
			Where: "id > 10", Updates: true}}, true)
	if err != nil || !res.Created {
		t.Fatalf("SyncPublication = %+v, %v; want created", res, err)
	}
	var ins, upd, del bool
	if err := h.db.QueryRow(context.Background(), `SELECT pubinsert, pubupdate, pubdelete FROM pg_publication WHERE pubname = 'pgsignal'`).Scan(&ins, &upd, &del); err != nil {
		t.Fatal(err)
	}
	if !ins || !upd || del {
		t.Errorf("publishes insert %v, update %v, delete %v; want true, true, false", ins, upd, del)
	}
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('a', 'u'); UPDATE analytics.user_events SET event_name = 'b'`)
}

// Row filters need PostgreSQL 15: an older server is a clear error.
func TestFilterVersionCheck(t *testing.T) {
	filtered := []replication.PublishedTable{
		{TableRef: replication.TableRef{Schema: "analytics", Name: "user_events"}, Where: "event_name = 'purchase'"},
		{TableRef: replication.TableRef{Schema: "public", Name: "orders"}},
	}
	err := replication.CheckRowFilterVersion(140012, "14.12 (Debian 14.12-1)", filtered)
	want := "the where of table analytics.user_events needs row filters, which PostgreSQL has from version 15 on; the server is PostgreSQL 14.12 (Debian 14.12-1) (server_version_num 140012): remove where and filter in a SQL transform (tables[].transform) or in the application, or upgrade the server to PostgreSQL 15 or later"
	if err == nil || err.Error() != want || !errors.Is(err, replication.ErrPermanent) {
		t.Errorf("CheckRowFilterVersion(14) = %v\nwant (permanent) %s", err, want)
	}
	if err := replication.CheckRowFilterVersion(150000, "15.0", filtered); err != nil {
		t.Errorf("CheckRowFilterVersion(15) = %v, want nil", err)
	}
	if err := replication.CheckRowFilterVersion(100023, "10.23", filtered[1:]); err != nil {
		t.Errorf("CheckRowFilterVersion(10) without a filter = %v, want nil", err)
	}
}

// The publication SQL carries the filters and the publish option.
func TestFilterPublicationSQL(t *testing.T) {
	tables := []replication.PublishedTable{
		{TableRef: replication.TableRef{Schema: "analytics", Name: "user_events"}, Where: "event_name = 'purchase'"},
		{TableRef: replication.TableRef{Schema: "Odd", Name: "t"}, Updates: true},
	}
	want := `CREATE PUBLICATION "pgsignal" FOR TABLE "analytics"."user_events" WHERE (event_name = 'purchase'), "Odd"."t" WITH (publish = 'insert, update');`
	if got := replication.CreatePublicationSQL("pgsignal", tables); got != want {
		t.Errorf("CreatePublicationSQL =\n  %s\nwant\n  %s", got, want)
	}
}

// A table that emits updates makes an existing insert-only publication
// publish updates too (full mode), keeping what it already publishes; read-only
// mode prints the statement instead.
func TestFilterEmitUpdatesAltersPublish(t *testing.T) {
	h := filterHarness(t)
	h.exec(`CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WITH (publish = 'insert, truncate')`)
	tables := []replication.PublishedTable{{TableRef: replication.TableRef{Schema: "analytics", Name: "user_events"}, Updates: true}}
	want := `ALTER PUBLICATION "pgsignal" SET (publish = 'insert, update, truncate');`
	_, err := replication.SyncPublication(context.Background(), h.pool(), "pgsignal", tables, false)
	if err == nil || !strings.HasSuffix(err.Error(), "\n  "+want) {
		t.Errorf("read-only SyncPublication = %v, want an error ending with %s", err, want)
	}
	res, err := replication.SyncPublication(context.Background(), h.pool(), "pgsignal", tables, true)
	if err != nil || res.Created || len(res.Altered) != 1 || res.Altered[0] != want {
		t.Fatalf("SyncPublication = %+v, %v; want Altered [%s]", res, err, want)
	}
	var upd, trunc bool
	if err := h.db.QueryRow(context.Background(), `SELECT pubupdate, pubtruncate FROM pg_publication WHERE pubname = 'pgsignal'`).Scan(&upd, &trunc); err != nil {
		t.Fatal(err)
	}
	if !upd || !trunc {
		t.Errorf("publishes update %v, truncate %v; want both", upd, trunc)
	}
}
