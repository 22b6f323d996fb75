package main

import (
	"context"
	"encoding/json"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// A typo in a mapped column stops `run` before the slot exists, naming the
// key, its line and the table's columns: no row is turned into a dead
// letter and skipped. check reports the same typos (properties_columns
// too) and no false column-list problem.
func TestRunRefusesUnknownMappedColumns(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	path := e.writeConfig("full", "")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(data), "external_id: user_id", "external_id: userid", 1)
	cfg = strings.Replace(cfg, "properties: event_data", "properties: event_data\n    properties_columns: [sesion_id]", 1)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	lineOf := func(s string) int {
		for i, l := range strings.Split(cfg, "\n") {
			if strings.Contains(l, s) {
				return i + 1
			}
		}
		t.Fatalf("no %q in the config", s)
		return 0
	}
	p := e.startProc(path)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatal("pgsignal run did not exit")
	}
	out := readFile(t, p.log)
	if p.err == nil || p.cmd.ProcessState.ExitCode() != 1 {
		t.Fatalf("exit %v, want 1:\n%s", p.err, out)
	}
	assertLines(t, out,
		"tables[0].external_id (line "+strconv.Itoa(lineOf("external_id: userid"))+"): analytics.user_events has no column \"userid\"",
		"tables[0].properties_columns[0] (line "+strconv.Itoa(lineOf("properties_columns"))+"): analytics.user_events has no column \"sesion_id\"",
		`its columns are "id", "event_name", "user_id", "event_timestamp", "event_data"`)
	if n := e.queryInt(`SELECT count(*) FROM pg_replication_slots`); n != 0 {
		t.Fatalf("%d slots created, want none", n)
	}
	if n := e.queryInt(`SELECT count(*) FROM pg_publication`); n != 0 {
		t.Fatalf("%d publications created, want none", n)
	}

	// check: the columns item names both typos; the publication item (the
	// publication does not exist yet) makes no column-list claim.
	stdout, _, code := runCheckCLI(t, []string{"TEST_ONESIGNAL_KEY=" + e.fake.APIKey()}, "check", "--config", path)
	if code != 1 {
		t.Fatalf("check exit %d, want 1:\n%s", code, stdout)
	}
	assertLines(t, stdout, `has no column "userid" (tables[0].external_id)`, `has no column "sesion_id" (tables[0].properties_columns[0])`)

	// With the publication in place (PostgreSQL 15+ lists every column in
	// attnames) the publication item still blames no column list.
	e.exec(`CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WITH (publish = 'insert')`)
	stdout, _, _ = runCheckCLI(t, []string{"TEST_ONESIGNAL_KEY=" + e.fake.APIKey()}, "check", "--config", path)
	if strings.Contains(stdout, "column list") {
		t.Fatalf("check blames a column list the publication does not have:\n%s", stdout)
	}
}

// status and dead-letters list/discard call only the database: they run
// without the OneSignal key; replay, which sends, still needs it.
func TestDatabaseCommandsNeedNoAPIKey(t *testing.T) {
	for _, mode := range []string{"full", "read-only"} {
		t.Run(mode, func(t *testing.T) {
			e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
			if mode == "read-only" {
				e.exec(`CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WITH (publish = 'insert')`)
			}
			cfg := e.writeConfig(mode, "")
			p := e.startProc(cfg)
			e.waitStreaming(p)
			e.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('signup', NULL)`)
			deadline := time.Now().Add(30 * time.Second)
			for {
				out, errOut, code := runCheckCLI(t, nil, "dead-letters", "list", "--config", cfg)
				if code != 0 {
					t.Fatalf("dead-letters list without the key: exit %d\n%s%s", code, out, errOut)
				}
				if strings.Contains(out, "external_id") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("no dead letter listed:\n%s", out)
				}
				time.Sleep(100 * time.Millisecond)
			}
			p.term(t)
			out, errOut, code := runCheckCLI(t, nil, "status", "--config", cfg)
			if code != 0 || !strings.Contains(out, "pgsignal") {
				t.Fatalf("status without the key: exit %d\n%s%s", code, out, errOut)
			}
			_, errOut, code = runCheckCLI(t, nil, "dead-letters", "replay", "--all", "--config", cfg)
			if code != 1 || !strings.Contains(errOut, "TEST_ONESIGNAL_KEY is not set") {
				t.Fatalf("replay without the key: exit %d, want 1 naming the variable\n%s", code, errOut)
			}
		})
	}
}

// One help style and documented exit codes: a requested help text exits 0
// and writes the flags as --name; a wrong command line exits 2.
func TestHelpAndExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "Exit codes: 0 success"},
		{[]string{"run", "-h"}, 0, "--config STRING"},
		{[]string{"run", "--help"}, 0, "Usage: pgsignal run [flags]"},
		{[]string{"status", "--help"}, 0, "--json"},
		{[]string{"dead-letters", "list", "--help"}, 0, "Usage: pgsignal dead-letters list [flags]"},
		{[]string{"run", "--bogus"}, 2, "flag provided but not defined: -bogus"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{[]string{"run", "--config", "/nonexistent/pgsignal.yaml"}, 1, "load config"},
	}
	for _, c := range cases {
		out, errOut, code := runCheckCLI(t, nil, c.args...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("pgsignal %v: exit %d, want %d with %q:\n%s%s", c.args, code, c.code, c.want, out, errOut)
		}
		if strings.Contains(out+errOut, "  -config") {
			t.Errorf("pgsignal %v prints -config, not --config:\n%s", c.args, errOut)
		}
	}
}

// teardown prints the SQL that removes the slot, the publication and the
// bookkeeping schema; it refuses while pgsignal streams, and --apply leaves
// nothing behind. A publication shared with another table only loses the
// configured table.
func TestTeardown(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	env := []string{"TEST_ONESIGNAL_KEY=unused"}
	out, errOut, code := runCheckCLI(t, env, "teardown", "--config", cfg, "--apply")
	if code != 1 || !strings.Contains(errOut, "the slot pgsignal is in use by process") || !strings.Contains(errOut, "stop pgsignal") {
		t.Fatalf("teardown while streaming: exit %d\n%s%s", code, out, errOut)
	}
	if n := e.queryInt(`SELECT count(*) FROM pg_replication_slots`); n != 1 {
		t.Fatalf("%d slots after a refused teardown", n)
	}
	p.term(t)

	e.exec(`CREATE TABLE public.other (id int PRIMARY KEY)`)
	e.exec(`ALTER PUBLICATION pgsignal ADD TABLE public.other`)
	out, errOut, code = runCheckCLI(t, nil, "teardown", "--config", cfg)
	if code != 0 {
		t.Fatalf("teardown: exit %d\n%s%s", code, out, errOut)
	}
	assertLines(t, out, "SELECT pg_catalog.pg_drop_replication_slot('pgsignal');",
		`ALTER PUBLICATION "pgsignal" DROP TABLE "analytics"."user_events";`, `DROP SCHEMA "census" CASCADE;`)
	if strings.Contains(out, "DROP PUBLICATION") {
		t.Fatalf("teardown drops a shared publication:\n%s", out)
	}
	if n := e.queryInt(`SELECT count(*) FROM pg_replication_slots`); n != 1 {
		t.Fatalf("printing dropped something: %d slots", n)
	}
	out, errOut, code = runCheckCLI(t, nil, "teardown", "--config", cfg, "--apply")
	if code != 0 || !strings.Contains(out, "teardown done") {
		t.Fatalf("teardown --apply: exit %d\n%s%s", code, out, errOut)
	}
	for q, want := range map[string]int64{
		`SELECT count(*) FROM pg_replication_slots`:                                  0,
		`SELECT count(*) FROM pg_namespace WHERE nspname = 'census'`:                 0,
		`SELECT count(*) FROM pg_publication_tables WHERE tablename = 'user_events'`: 0,
		`SELECT count(*) FROM pg_publication_tables WHERE tablename = 'other'`:       1,
	} {
		if n := e.queryInt(q); n != want {
			t.Errorf("%s = %d, want %d", q, n, want)
		}
	}
	e.exec(`ALTER PUBLICATION pgsignal DROP TABLE public.other`)
	out, _, code = runCheckCLI(t, nil, "teardown", "--config", cfg, "--apply")
	if code != 0 || !strings.Contains(out, `done: DROP PUBLICATION "pgsignal"`) {
		t.Fatalf("teardown of an unshared publication: exit %d\n%s", code, out)
	}
}

// --log-level debug shows each event as OneSignal accepted it: name,
// external_id, idempotency key and position.
func TestDebugLogShowsEachEvent(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	p := e.startProc(e.writeConfig("full", ""), "--log-level", "debug")
	e.waitStreaming(p)
	e.insertRows(0, 3)
	e.waitCount(3, 30*time.Second, p)
	p.term(t)
	logText := readFile(t, p.log)
	for _, ev := range e.fake.Events() {
		var found bool
		for _, line := range strings.Split(logText, "\n") {
			if strings.Contains(line, `"msg":"event accepted"`) && strings.Contains(line, `"idempotency_key":"`+ev.IdempotencyKey+`"`) &&
				strings.Contains(line, `"external_id":"`+ev.ExternalID+`"`) && strings.Contains(line, `"name":"`+ev.Name+`"`) &&
				strings.Contains(line, `"position":"`) {
				found = true
			}
		}
		if !found {
			t.Errorf("no debug line for %s/%s key %s:\n%s", ev.Name, ev.ExternalID, ev.IdempotencyKey, logText)
		}
	}
}

// On a server with wal_level = replica: setup --apply warns that a restart
// is needed, and run names wal_level and its fix instead of REPLICATION or
// max_replication_slots. setup writes SQL for source.dsn's user.
func TestFirstRunOnWalLevelReplica(t *testing.T) {
	e := newEnv(t, pgtest.Options{Conf: map[string]string{"wal_level": "replica"}}, onesignaltest.Options{})
	dsn := strings.Replace(e.pg.DSN(""), "postgres@", "app_events@", 1)
	cfg := e.writeCheckConfig("user", dsn, "full", defaultTables)
	sql, errOut, code := runCheckCLI(t, nil, "setup", "--config", cfg)
	if code != 0 || !strings.Contains(sql, `CREATE ROLE "app_events" LOGIN PASSWORD '`) || strings.Contains(sql, `"census" LOGIN`) {
		t.Fatalf("setup for the dsn's user: exit %d\n%s%s", code, sql, errOut)
	}
	if strings.Contains(errOut, "note: source.dsn logs in as") {
		t.Fatalf("setup notes a mismatch it no longer has:\n%s", errOut)
	}
	out, errOut, code := runCheckCLI(t, nil, "setup", "--config", cfg, "--apply", "--admin-dsn", e.pg.DSN(""))
	if code != 0 || !strings.Contains(out, "warning: wal_level is replica; logical decoding needs wal_level = logical, which takes a restart") {
		t.Fatalf("setup --apply on wal_level = replica: exit %d\n%s%s", code, out, errOut)
	}

	p := e.startProc(e.writeConfig("full", ""))
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatal("run did not exit")
	}
	log := readFile(t, p.log)
	assertLines(t, log, "logical decoding needs wal_level = logical: run ALTER SYSTEM SET wal_level = logical;")
	if strings.Contains(log, "max_replication_slots") {
		t.Fatalf("run blames max_replication_slots:\n%s", log)
	}
}

// census.runs: a start that fails is recorded as failed, not left running;
// a running run's counters reach status while it runs.
func TestRunsRecordFailedStartsAndCurrentCounters(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "")
	e.exec(`SELECT pg_create_physical_replication_slot('pgsignal')`)
	p := e.startProc(cfg)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatal("run did not exit")
	}
	var reason string
	if err := e.pool.QueryRow(context.Background(), `SELECT stop_reason FROM census.runs WHERE stopped_at IS NOT NULL ORDER BY id DESC LIMIT 1`).Scan(&reason); err != nil {
		t.Fatalf("the failed start left no finished run: %v\n%s", err, readFile(t, p.log))
	}
	if !strings.HasPrefix(reason, "start failed: ") || !strings.Contains(reason, "physical") {
		t.Fatalf("stop_reason = %q", reason)
	}
	if n := e.queryInt(`SELECT count(*) FROM census.runs WHERE stopped_at IS NULL`); n != 0 {
		t.Fatalf("%d runs left running", n)
	}
	e.exec(`SELECT pg_drop_replication_slot('pgsignal')`)

	p = e.startProc(cfg)
	e.waitStreaming(p)
	e.insertRows(0, 10)
	e.waitCount(10, 30*time.Second, p)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, errOut, code := runCheckCLI(t, nil, "status", "--config", cfg, "--json")
		if code != 0 {
			t.Fatalf("status: %d %s", code, errOut)
		}
		var rep struct {
			Runs []struct {
				StoppedAt       *time.Time `json:"stopped_at"`
				EventsDelivered int64      `json:"events_delivered"`
			} `json:"runs"`
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Runs) > 0 && rep.Runs[0].StoppedAt == nil && rep.Runs[0].EventsDelivered == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed the running run's 10 deliveries:\n%s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	p.term(t)
}

// A dsn without a password against a server that wants one: run and check
// say that no password was supplied and where one can come from.
func TestNoPasswordSupplied(t *testing.T) {
	e := newEnv(t, pgtest.Options{HBA: []string{"host all census 127.0.0.1/32 scram-sha-256"}}, onesignaltest.Options{})
	e.exec(`CREATE ROLE census LOGIN REPLICATION PASSWORD 'right-one'`)
	dsn := strings.Replace(e.pg.DSN(""), "postgres@", "census@", 1)
	cfg := e.writeCheckConfig("nopw", dsn, "full", defaultTables)
	env := []string{"TEST_ONESIGNAL_KEY=" + e.fake.APIKey(), "PGPASSWORD=", "PGPASSFILE=/nonexistent/pgpass"}
	out, _, code := runCheckCLI(t, env, "check", "--config", cfg)
	if code != 1 || !strings.Contains(out, "no password was supplied: source.dsn has none, PGPASSWORD is not set") {
		t.Fatalf("check: exit %d\n%s", code, out)
	}
	_, errOut, code := runCheckCLI(t, env, "run", "--config", cfg)
	if code != 1 || !strings.Contains(errOut, "no password was supplied (source.dsn has none, PGPASSWORD is not set") {
		t.Fatalf("run: exit %d\n%s", code, errOut)
	}
}

// dead-letters list --json names fields in snake_case like status and
// check; --id naming a letter that does not exist does nothing and exits 1.
func TestDeadLetterCommandsJSONAndMissingID(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('signup', NULL)`)
	deadline := time.Now().Add(30 * time.Second)
	for e.queryInt(`SELECT count(*) FROM census.dead_letters`) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter\n%s", p.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.term(t)
	out, _, code := runCheckCLI(t, nil, "dead-letters", "list", "--json", "--config", cfg)
	var ls []map[string]any
	if err := json.Unmarshal([]byte(out), &ls); err != nil || code != 0 || len(ls) != 1 {
		t.Fatalf("list --json: exit %d, %v\n%s", code, err, out)
	}
	for _, k := range []string{"id", "commit_lsn", "ordinal", "table", "idempotency_key", "row", "reason", "attempts", "first_failed_at", "last_failed_at"} {
		if _, ok := ls[0][k]; !ok {
			t.Errorf("list --json lacks %q: %v", k, ls[0])
		}
	}
	if _, ok := ls[0]["CommitLSN"]; ok {
		t.Errorf("list --json still has PascalCase names: %v", ls[0])
	}
	for _, action := range []string{"discard", "replay"} {
		env := []string{"TEST_ONESIGNAL_KEY=" + e.fake.APIKey()}
		out, errOut, code := runCheckCLI(t, env, "dead-letters", action, "--id", "99", "--config", cfg)
		if code != 1 || !strings.Contains(errOut, "no dead letter with id 99") {
			t.Errorf("%s --id 99: exit %d\n%s%s", action, code, out, errOut)
		}
	}
	if n := e.queryInt(`SELECT count(*) FROM census.dead_letters`); n != 1 {
		t.Fatalf("%d letters after the refused commands, want 1", n)
	}
}
