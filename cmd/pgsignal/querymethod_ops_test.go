package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// queryTables is the seed's table read by the query method.
const queryTables = defaultTables + "    cursor: id\n"

// With source.method: query, on a server without logical decoding
// (wal_level = replica): setup --apply creates a user with CONNECT, SELECT
// and the bookkeeping schema but no REPLICATION and no publication; check
// passes for that user with the query method's items and none of the
// slot's; status shows the method and no slot, in full and read-only mode.
func TestQueryMethodSetupCheckStatus(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgtest.Options{Conf: map[string]string{"wal_level": "replica"}}, onesignaltest.Options{})
	censusDSN := strings.Replace(e.pg.DSN(""), "postgres@", "census:${CENSUS_PASSWORD}@", 1)
	cfg := e.writeCheckConfig("query", censusDSN, "full\n  method: query", queryTables)
	env := []string{"CENSUS_PASSWORD=pw-census", "TEST_ONESIGNAL_KEY=" + e.fake.APIKey()}

	out, errOut, code := runCheckCLI(t, env, "setup", "--config", cfg, "--apply", "--admin-dsn="+e.pg.DSN(""), "--password-env", "CENSUS_PASSWORD")
	t.Logf("setup:\n%s%s", out, errOut)
	if code != 0 {
		t.Fatalf("setup exit %d", code)
	}
	assertLines(t, out, `✓ user "census": created`, "✓ CONNECT on the database", `✓ SELECT on "analytics"."user_events"`,
		`✓ bookkeeping schema "census"`, "setup done")
	for _, bad := range []string{"REPLICATION", "publication", "wal_level"} {
		if strings.Contains(out, bad) {
			t.Fatalf("setup output mentions %s", bad)
		}
	}
	var repl bool
	var pubs int
	if err := e.pool.QueryRow(ctx, `SELECT rolreplication, (SELECT count(*) FROM pg_publication) FROM pg_roles WHERE rolname = 'census'`).Scan(&repl, &pubs); err != nil || repl || pubs != 0 {
		t.Fatalf("census: REPLICATION %v, %d publications, %v", repl, pubs, err)
	}

	out, errOut, code = runCheckCLI(t, env, "check", "--config", cfg)
	t.Logf("check:\n%s", out)
	if code != 0 || strings.Contains(out, "✗") || strings.Contains(out, "\n! ") {
		t.Fatalf("check exit %d:\n%s%s", code, out, errOut)
	}
	assertLines(t, out, "✓ primary or standby: primary\n",
		`✓ cursor analytics.user_events: "id" (bigint), filled from sequence analytics.user_events_id_seq, covered by a btree index`,
		`✓ primary key analytics.user_events: ("id")`, `✓ bookkeeping schema: "census" exists and "census" has USAGE and CREATE on it`,
		"OK: every required check passed\n")
	for _, bad := range []string{"wal_level", "replication", "slot", "publication"} {
		if strings.Contains(out, bad) {
			t.Fatalf("check of the query method mentions %s", bad)
		}
	}

	for _, mode := range []string{"full", "read-only"} {
		cfg := e.writeCheckConfig("query-"+mode, censusDSN, mode+"\n  method: query", queryTables)
		out, errOut, code := runCheckCLI(t, env, "status", "--config", cfg)
		t.Logf("status (%s):\n%s", mode, out)
		if code != 0 {
			t.Fatalf("status exit %d:\n%s%s", code, out, errOut)
		}
		assertLines(t, out, "method query: no replication slot", "positions: not available", "dead letters: 0")
		if strings.Contains(out, "slot pgsignal") {
			t.Fatalf("status of the query method shows a slot")
		}
		js, _, code := runCheckCLI(t, env, "status", "--config", cfg, "--json")
		var rep map[string]any
		if err := json.Unmarshal([]byte(js), &rep); err != nil || code != 0 {
			t.Fatalf("status --json: exit %d, %v\n%s", code, err, js)
		}
		if _, ok := rep["slot"]; ok || rep["method"] != "query" || rep["query"] == nil {
			t.Fatalf("status --json: %s", js)
		}
	}
}
