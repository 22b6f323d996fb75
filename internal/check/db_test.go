package check

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
)

const schemaSQL = `CREATE SCHEMA analytics;
CREATE TABLE analytics.user_events (
  id bigserial PRIMARY KEY, event_name text, user_id text, event_timestamp timestamptz DEFAULT now(),
  event_data jsonb, ts_text text, props_text text, gen text GENERATED ALWAYS AS (user_id || '!') STORED);
CREATE VIEW analytics.v AS SELECT * FROM analytics.user_events;
CREATE TABLE analytics.nokey (event_name text, user_id text, at timestamptz);
CREATE ROLE lim LOGIN REPLICATION;
CREATE SCHEMA bk;
GRANT USAGE, CREATE ON SCHEMA bk TO lim;
CREATE PUBLICATION collist FOR TABLE analytics.user_events (id, event_name) WITH (publish = 'insert');
CREATE PUBLICATION filtered FOR TABLE analytics.user_events WHERE (user_id <> 'bot') WITH (publish = 'insert');
CREATE PUBLICATION noinsert FOR TABLE analytics.user_events WITH (publish = 'update');
CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WITH (publish = 'insert');`

// Each case runs the whole check against one misconfigured piece of a real
// server and asserts that item's status, detail and fix.
func TestDatabaseItems(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t, pgtest.Options{Conf: map[string]string{"max_replication_slots": "3", "max_slot_wal_keep_size": "1GB"}})
	fake := startFake(t)
	for _, stmt := range strings.Split(schemaSQL, ";\n") {
		if err := pg.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	for _, stmt := range []string{
		`SELECT pg_create_logical_replication_slot('s1', 'pgoutput')`,
		`SELECT pg_create_physical_replication_slot('phys')`,
		`SELECT pg_create_logical_replication_slot('s2', 'pgoutput')`,
		`INSERT INTO analytics.user_events (event_name, user_id) SELECT 'e', 'u' FROM generate_series(1, 100)`,
	} {
		if err := pg.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	superDSN := pg.DSN("")
	limDSN := strings.Replace(superDSN, "postgres@", "lim@", 1)
	type want struct {
		item         string
		status       Status
		detail, fix  string
		reportFailed bool
	}
	cases := []struct {
		name   string
		dsn    string
		mutate func(*config.Config)
		want   want
	}{
		{"timestamp not a time", superDSN, func(c *config.Config) { c.Tables[0].Timestamp = "ts_text" },
			want{"columns analytics.user_events", Fail, `timestamp column "ts_text" is text, not timestamptz, timestamp or date`,
				`ALTER TABLE "analytics"."user_events" ALTER COLUMN "ts_text" TYPE timestamptz USING "ts_text"::timestamptz;`, true}},
		{"properties not json", superDSN, func(c *config.Config) { c.Tables[0].Properties = []string{"props_text"} },
			want{"columns analytics.user_events", Fail, `properties column "props_text" is text, not json or jsonb`,
				"write tables[0].properties as a list, [props_text]", true}},
		{"properties list of text", superDSN, func(c *config.Config) {
			c.Tables[0].Properties, c.Tables[0].PropertiesIsList = []string{"props_text", "id"}, true
		}, want{"columns analytics.user_events", Pass, "properties ← props_text (text), properties ← id (bigint)", "", false}},
		{"generated column", superDSN, func(c *config.Config) { c.Tables[0].ExternalID = "gen" },
			want{"columns analytics.user_events", Fail, `column "gen" is generated`, "map tables[0].external_id to a stored", true}},
		{"missing column", superDSN, func(c *config.Config) { c.Tables[0].EventName = "kind" },
			want{"columns analytics.user_events", Fail, `"analytics"."user_events" has no column "kind" (tables[0].name)`,
				`set tables[0].name to one of the columns of "analytics"."user_events": "id", "event_name", "user_id"`, true}},
		{"a view", superDSN, func(c *config.Config) { c.Tables[0].Name = "v" },
			want{"select analytics.v", Fail, `"analytics"."v" is a view; logical replication publishes tables only`, "tables[0].table", true}},
		{"missing table", superDSN, func(c *config.Config) { c.Tables[0].Name = "nope" },
			want{"columns analytics.nope", Skip, "the table was not found (see select analytics.nope)", "", true}},
		{"column list", superDSN, func(c *config.Config) { c.Source.Publication = "collist" },
			want{"publication", Fail, `its column list for "analytics"."user_events" leaves out "user_id", "event_timestamp", "event_data"`,
				`ALTER PUBLICATION "collist" DROP TABLE "analytics"."user_events";`, true}},
		{"row filter", superDSN, func(c *config.Config) { c.Source.Publication = "filtered" },
			want{"publication", Warn, `has a row filter: only inserts WHERE (user_id <> 'bot'::text) become events`, "", false}},
		{"no inserts", superDSN, func(c *config.Config) { c.Source.Publication = "noinsert" },
			want{"publication", Fail, `"noinsert" does not publish inserts`, `ALTER PUBLICATION "noinsert" SET (publish = 'insert');`, true}},
		{"publication created by owner", superDSN, func(c *config.Config) { c.Source.Publication = "later" },
			want{"publication", Pass, "pgsignal creates it at its first start", "", false}},
		{"publication needs owner", limDSN, func(c *config.Config) { c.Source.Publication = "later" },
			want{"publication", Fail, `"later" does not exist, and pgsignal cannot create it`,
				`CREATE PUBLICATION "later" FOR TABLE "analytics"."user_events" WITH (publish = 'insert');`, true}},
		{"no select", limDSN, nil,
			want{"select analytics.user_events", Fail, `"lim" lacks USAGE on schema "analytics"`,
				"GRANT USAGE ON SCHEMA \"analytics\" TO \"lim\";\nGRANT SELECT ON \"analytics\".\"user_events\" TO \"lim\";", true}},
		{"no schema rights", limDSN, nil,
			want{"bookkeeping schema", Fail, `"census" does not exist and "lim" lacks CREATE on database "postgres"`,
				"CREATE SCHEMA IF NOT EXISTS \"census\";\nGRANT USAGE, CREATE ON SCHEMA \"census\" TO \"lim\";", true}},
		{"schema not ours", limDSN, func(c *config.Config) { c.Source.Schema = "analytics" },
			want{"bookkeeping schema", Fail, `"analytics" exists, but "lim" neither owns it nor has USAGE and CREATE on it`,
				`GRANT USAGE, CREATE ON SCHEMA "analytics" TO "lim";`, true}},
		{"existing schema needs no CREATE on the database", limDSN, func(c *config.Config) { c.Source.Schema = "bk" },
			want{"bookkeeping schema", Pass, `"bk" exists and "lim" has USAGE and CREATE on it`, "", true}},
		{"schema will be created", superDSN, nil,
			want{"bookkeeping schema", Pass, `"census" does not exist yet; pgsignal creates it`, "", false}},
		{"no free slot", superDSN, func(c *config.Config) { c.Source.Slot = "pgsignal" },
			want{"replication slots", Fail, `3 of max_replication_slots = 3 used; none is free for slot "pgsignal"`,
				"ALTER SYSTEM SET max_replication_slots = 4;  -- as a superuser, then restart PostgreSQL\nor drop a slot nobody reads (inactive: phys, s1, s2)", true}},
		{"existing slot", superDSN, func(c *config.Config) { c.Source.Slot = "s1" },
			want{"slot", Pass, `slot "s1" exists (logical, pgoutput), wal_status reserved, confirmed up to `, "", false}},
		{"physical slot", superDSN, func(c *config.Config) { c.Source.Slot = "phys" },
			want{"slot", Fail, `slot "phys" is a physical slot`, `SELECT pg_drop_replication_slot('phys');`, true}},
		{"transform prepares", superDSN, func(c *config.Config) {
			c.Tables[0] = transformTable("SELECT c.event_name AS name, c.user_id AS external_id FROM changes c")
		},
			want{"columns analytics.user_events", Pass, "the transform prepares and returns the event's columns", "", false}},
		{"transform does not prepare", superDSN, func(c *config.Config) {
			c.Tables[0] = transformTable("SELECT c.nope AS name, c.user_id AS external_id FROM changes c")
		}, want{"columns analytics.user_events", Fail, `column c.nope does not exist`, "correct tables[0].transform: a SELECT over changes", true}},
		{"backfill on a text column", superDSN, func(c *config.Config) { c.Tables[0].Backfill = &config.Backfill{Since: time.Hour, Column: "ts_text"} },
			want{"columns analytics.user_events", Fail, `backfill column "ts_text" is text, not timestamptz, timestamp or date`, "set tables[0].backfill.column", true}},
		{"backfill without a primary key", superDSN, func(c *config.Config) {
			c.Tables[0] = config.Table{Schema: "analytics", Name: "nokey", EventName: "event_name", ExternalID: "user_id", Timestamp: "at",
				Backfill: &config.Backfill{Since: time.Hour}}
		}, want{"columns analytics.nokey", Fail, `"analytics"."nokey" has no primary key`, `ALTER TABLE "analytics"."nokey" ADD PRIMARY KEY`, true}},
		{"read-only mode", superDSN, func(c *config.Config) { c.Source.Mode = config.ModeReadOnly; c.Source.Slot = "s1" },
			want{"bookkeeping schema", Skip, "read-only mode keeps no bookkeeping schema", "", false}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(c.dsn, fake)
			cfg.Source.Slot = "s1"
			if c.mutate != nil {
				c.mutate(cfg)
			}
			rep := Run(ctx, Options{Config: cfg})
			var dump strings.Builder
			_ = rep.WriteText(&dump)
			t.Log("\n" + dump.String())
			it := find(t, rep, c.want.item)
			if it.Status != c.want.status || !strings.Contains(it.Detail, c.want.detail) || !strings.Contains(it.Fix, c.want.fix) {
				t.Fatalf("got %+v\nwant %+v", it, c.want)
			}
			if rep.OK == c.want.reportFailed {
				var b strings.Builder
				_ = rep.WriteText(&b)
				t.Fatalf("report OK = %v:\n%s", rep.OK, b.String())
			}
		})
	}
}

// transformTable is the test table mapped by a transform.
func transformTable(sql string) config.Table {
	return config.Table{Schema: "analytics", Name: "user_events", Transform: sql}
}
