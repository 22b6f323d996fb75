package check

import (
	"context"
	"strings"
	"testing"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// relCase is a check run on one configuration and its expected item.
type relCase struct {
	name   string
	mutate func(*config.Config)
	item   string
	status Status
	detail string
	fix    string
}

func runRelCases(t *testing.T, pg *pgtest.Server, cases []relCase) {
	t.Helper()
	fake := startFake(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(pg.DSN(""), fake)
			c.mutate(cfg)
			rep := Run(context.Background(), Options{Config: cfg})
			var dump strings.Builder
			_ = rep.WriteText(&dump)
			t.Log("\n" + dump.String())
			it := find(t, rep, c.item)
			if it.Status != c.status || !strings.Contains(it.Detail, c.detail) || !strings.Contains(it.Fix, c.fix) {
				t.Fatalf("got %+v\nwant %s %q %q", it, c.status, c.detail, c.fix)
			}
		})
	}
}

// A partitioned table in a publication that does not publish via the root
// is a problem check reports (at 37942e1 it passed, and the rows were
// dropped): read-only mode fails with the statement, full mode warns that
// pgsignal sets it; via the root it passes.
func TestPartitionedPublicationItem(t *testing.T) {
	pg := pgtest.New(t, pgtest.Options{})
	ctx := context.Background()
	for _, stmt := range []string{
		`CREATE TABLE public.events (id bigint, user_id text, at timestamptz NOT NULL) PARTITION BY RANGE (at)`,
		`CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`,
		`CREATE PUBLICATION noroot FOR TABLE public.events WITH (publish = 'insert')`,
		`CREATE PUBLICATION viaroot FOR TABLE public.events WITH (publish = 'insert', publish_via_partition_root = true)`,
	} {
		if err := pg.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	events := func(pub, mode string) func(*config.Config) {
		return func(c *config.Config) {
			c.Tables = []config.Table{{Schema: "public", Name: "events", EventNameValue: "ev", ExternalID: "user_id"}}
			c.Source.Publication, c.Source.Mode = pub, mode
			c.Sink.DeadLetterFile = "/tmp/pgsignal-check-dl.jsonl"
		}
	}
	runRelCases(t, pg, []relCase{
		{"read-only without via root", events("noroot", config.ModeReadOnly), itemPub, Fail,
			"does not publish via the partition root", `ALTER PUBLICATION "noroot" SET (publish_via_partition_root = true);`},
		{"full without via root", events("noroot", config.ModeFull), itemPub, Warn,
			"pgsignal sets publish_via_partition_root at its first start", ""},
		{"via root", events("viaroot", config.ModeReadOnly), itemPub, Pass, "publishes the inserts of every configured table", ""},
	})
}

// check fails a configuration whose update events would make PostgreSQL
// reject the UPDATEs of a table without a replica identity (at 37942e1 it
// passed).
func TestUpdateIdentityItem(t *testing.T) {
	pg := pgtest.New(t, pgtest.Options{})
	ctx := context.Background()
	for _, stmt := range []string{
		`CREATE TABLE public.profile (id int PRIMARY KEY, user_id text)`,
		`CREATE TABLE public.clicks (user_id text)`,
		`CREATE TABLE public.keyed (id int PRIMARY KEY, user_id text)`,
	} {
		if err := pg.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	tables := func(second string) func(*config.Config) {
		return func(c *config.Config) {
			c.Tables = []config.Table{
				{Schema: "public", Name: "profile", EventNameValue: "p", ExternalID: "user_id", Emit: []string{"insert", "update"}},
				{Schema: "public", Name: second, EventNameValue: "c", ExternalID: "user_id"},
			}
		}
	}
	runRelCases(t, pg, []relCase{
		{"no replica identity", tables("clicks"), itemUpdates, Fail,
			"reject every UPDATE of public.clicks", "ALTER TABLE public.clicks REPLICA IDENTITY FULL;"},
		{"primary keys", tables("keyed"), itemUpdates, Pass, "publishing updates breaks no UPDATE", ""},
	})
}
