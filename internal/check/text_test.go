package check

import (
	"context"
	"strings"
	"testing"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// check accepts what run accepts for the timestamp column: epoch time in an
// integer or numeric column with timestamp_unit, a timestamptz, timestamp or
// date column without it; otherwise it fails with a fix that can be applied
// (no ALTER ... TYPE timestamptz of a bigint, which PostgreSQL refuses). A
// SQL_ASCII database is warned about, with the fix; UTF8 passes.
func TestCheckTimestampUnitAndEncoding(t *testing.T) {
	ctx := context.Background()
	pg := pgtest.New(t, pgtest.Options{})
	fake := startFake(t)
	for _, stmt := range []string{
		`CREATE SCHEMA analytics`,
		`CREATE TABLE analytics.user_events (id bigserial PRIMARY KEY, event_name text, user_id text,
  event_timestamp timestamptz DEFAULT now(), event_data jsonb, ts_ms bigint, ts_s numeric, ts_int integer, ts_real float8, ts_text text)`,
		`CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WITH (publish = 'insert')`,
		`CREATE DATABASE ascii TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'`,
	} {
		if err := pg.Exec(ctx, stmt); err != nil {
			t.Fatal(err)
		}
	}
	asciiConn, err := pg.Connect(ctx, "ascii")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := asciiConn.Exec(ctx, `CREATE SCHEMA analytics;
CREATE TABLE analytics.user_events (id bigserial PRIMARY KEY, event_name text, user_id text, event_timestamp timestamptz, event_data jsonb);
CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WITH (publish = 'insert')`); err != nil {
		t.Fatal(err)
	}
	asciiConn.Close(ctx)

	const columns = "columns analytics.user_events"
	cases := []struct {
		name               string
		db                 string
		mutate             func(*config.Table)
		item               string
		status             Status
		detail, fix, nofix string
	}{
		{"bigint with ms", "", func(t *config.Table) { t.Timestamp, t.TimestampUnit = "ts_ms", "ms" },
			columns, Pass, "timestamp ← ts_ms (bigint)", "", ""},
		{"numeric with s", "", func(t *config.Table) { t.Timestamp, t.TimestampUnit = "ts_s", "s" },
			columns, Pass, "timestamp ← ts_s (numeric)", "", ""},
		{"integer without a unit", "", func(t *config.Table) { t.Timestamp = "ts_int" },
			columns, Fail, `timestamp column "ts_int" is integer, not timestamptz, timestamp or date`,
			"set tables[0].timestamp_unit to s (seconds) or ms (milliseconds)", "ALTER TABLE"},
		{"float with a unit", "", func(t *config.Table) { t.Timestamp, t.TimestampUnit = "ts_real", "s" },
			columns, Fail, `timestamp column "ts_real" is double precision; timestamp_unit "s" needs an integer or numeric column holding epoch time`,
			"map tables[0].timestamp to an integer or numeric column", "ALTER TABLE"},
		{"timestamptz with a unit", "", func(t *config.Table) { t.TimestampUnit = "ms" },
			columns, Fail, `timestamp column "event_timestamp" is timestamp with time zone; timestamp_unit "ms" needs an integer or numeric column`,
			"or remove tables[0].timestamp_unit", "ALTER TABLE"},
		{"text without a unit", "", func(t *config.Table) { t.Timestamp = "ts_text" },
			columns, Fail, `timestamp column "ts_text" is text, not timestamptz, timestamp or date`,
			`ALTER TABLE "analytics"."user_events" ALTER COLUMN "ts_text" TYPE timestamptz USING "ts_text"::timestamptz;`, ""},
		{"UTF8 database", "", nil, itemEncoding, Pass, "UTF8", "", ""},
		{"SQL_ASCII database", "ascii", nil, itemEncoding, Warn,
			`SQL_ASCII: database "ascii" stores text bytes as they were given, without checking or converting them; a row whose name, external_id or properties hold bytes that are not valid UTF-8`,
			"the database should use UTF8: create one with CREATE DATABASE ... TEMPLATE template0 ENCODING 'UTF8'", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig(pg.DSN(c.db), fake)
			if c.mutate != nil {
				c.mutate(&cfg.Tables[0])
			}
			rep := Run(ctx, Options{Config: cfg})
			var dump strings.Builder
			_ = rep.WriteText(&dump)
			t.Log("\n" + dump.String())
			it := find(t, rep, c.item)
			if it.Status != c.status || !strings.Contains(it.Detail, c.detail) || !strings.Contains(it.Fix, c.fix) ||
				c.nofix != "" && strings.Contains(it.Fix, c.nofix) {
				t.Fatalf("got %+v\nwant %s %q, fix %q without %q", it, c.status, c.detail, c.fix, c.nofix)
			}
			if rep.OK != (c.status != Fail) {
				t.Fatalf("report OK = %v", rep.OK)
			}
		})
	}
}
