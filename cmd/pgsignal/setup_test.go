package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// setupTables are the event table newEnv creates and one whose name needs
// quoting.
const setupTables = defaultTables + `  - table: 'analytics."odd; name"'
    name_value: odd
    external_id: user_id
`

// setup --apply, run twice, creates a user that can stream: it logs in with
// the generated password (scram-sha-256 is enforced for it), has
// REPLICATION and reads the tables, and pgsignal check passes for it. The
// printed SQL runs twice too. The password is shown once and never again.
func TestSetupApplyAndCheck(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, pgtest.Options{
		HBA:  []string{"host all census 127.0.0.1/32 scram-sha-256"},
		Conf: map[string]string{"max_slot_wal_keep_size": "10GB"},
	}, onesignaltest.Options{})
	e.exec(`CREATE TABLE analytics."odd; name" (id int, user_id text)`)
	censusDSN := strings.Replace(e.pg.DSN(""), "postgres@", "census:${CENSUS_PASSWORD}@", 1)
	cfg := e.writeCheckConfig("setup", censusDSN, "full", setupTables)
	admin := "--admin-dsn=" + e.pg.DSN("")

	// Printing needs neither the API key nor the database password.
	sql, errOut, code := runCheckCLI(t, nil, "setup", "--config", cfg)
	if code != 0 {
		t.Fatalf("setup exit %d:\n%s", code, errOut)
	}
	assertLines(t, sql, `CREATE ROLE "census" LOGIN PASSWORD '`, `"analytics"."odd; name"`, `CREATE SCHEMA IF NOT EXISTS "census";`,
		`WITH (publish = 'insert');`)
	assertLines(t, errOut, "not used by setup")

	out1, errOut, code := runCheckCLI(t, nil, "setup", "--config", cfg, "--apply", admin)
	t.Logf("first apply:\n%s", out1)
	if code != 0 {
		t.Fatalf("first apply exit %d:\n%s%s", code, out1, errOut)
	}
	m := regexp.MustCompile(`password of "census" \(generated, shown only this once; store it now, e\.g\. as PGPASSWORD for pgsignal\): (\S+)\n`).FindStringSubmatch(out1)
	if m == nil {
		t.Fatalf("no password in:\n%s", out1)
	}
	password := m[1]
	assertLines(t, out1, "applying as \"postgres\" to database \"postgres\" (platform postgres, detected)",
		`✓ user "census": created`, `✓ publication "pgsignal": created`, "setup done")

	out2, errOut, code := runCheckCLI(t, nil, "setup", "--config", cfg, "--apply", admin)
	t.Logf("second apply:\n%s", out2)
	if code != 0 {
		t.Fatalf("second apply exit %d:\n%s%s", code, out2, errOut)
	}
	assertLines(t, out2, `✓ user "census": exists`, `"census" existed: its password is unchanged`,
		`✓ publication "pgsignal": exists and covers every table`)
	if strings.Contains(out2, password) || strings.Contains(out1, "'"+password+"'") {
		t.Fatal("the password was shown again")
	}

	// The printed script runs twice as well (the user exists: its password
	// is kept).
	for i := 0; i < 2; i++ {
		e.exec(sql)
	}

	// The user logs in with the password, has REPLICATION and reads the
	// tables.
	userDSN := strings.Replace(e.pg.DSN(""), "postgres@", "census:"+password+"@", 1)
	conn, err := pgx.Connect(ctx, userDSN)
	if err != nil {
		t.Fatalf("connect as census: %v", err)
	}
	defer conn.Close(ctx)
	var repl bool
	var n int
	if err := conn.QueryRow(ctx, `SELECT rolreplication FROM pg_roles WHERE rolname = current_user`).Scan(&repl); err != nil || !repl {
		t.Fatalf("rolreplication = %v, %v", repl, err)
	}
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM analytics.user_events) + (SELECT count(*) FROM analytics."odd; name")`).Scan(&n); err != nil {
		t.Fatalf("SELECT as census: %v", err)
	}
	if _, err := pgx.Connect(ctx, strings.Replace(userDSN, password, "wrong", 1)); err == nil {
		t.Fatal("a wrong password was accepted: the test does not prove the password")
	}

	// pgsignal check passes, with no warning, in text and JSON.
	env := []string{"CENSUS_PASSWORD=" + password, "TEST_ONESIGNAL_KEY=" + e.fake.APIKey()}
	out, errOut, code := runCheckCLI(t, env, "check", "--config", cfg)
	t.Logf("check:\n%s", out)
	if code != 0 || strings.Contains(out, "✗") || strings.Contains(out, "\n! ") {
		t.Fatalf("check exit %d:\n%s%s", code, out, errOut)
	}
	assertLines(t, out, `✓ login: logged in as "census" to database "postgres"`+"\n", "✓ replication privilege: the REPLICATION attribute",
		`✓ select analytics."odd; name": SELECT granted`, `✓ bookkeeping schema: "census" exists and "census" has USAGE and CREATE on it`,
		`✓ publication: "pgsignal" publishes the inserts of every configured table`, "OK: every required check passed\n")
	js, _, code := runCheckCLI(t, env, "check", "--config", cfg, "--json")
	var rep struct {
		OK    bool `json:"ok"`
		Items []struct{ Name, Status, Detail, Fix string }
	}
	if err := json.Unmarshal([]byte(js), &rep); err != nil || !rep.OK || code != 0 || len(rep.Items) < 17 {
		t.Fatalf("--json: exit %d, %v\n%s", code, err, js)
	}
	for _, it := range rep.Items {
		if it.Status != "pass" {
			t.Fatalf("item %+v is not a pass", it)
		}
	}
	for _, o := range []string{out, js, errOut} {
		if strings.Contains(o, password) || strings.Contains(o, e.fake.APIKey()) {
			t.Fatal("a secret in the check output")
		}
	}

	// pgsignal streams as that user: it creates its slot and bookkeeping
	// tables, and both tables' inserts reach OneSignal. check still passes
	// afterwards, with the slot in place.
	t.Setenv("CENSUS_PASSWORD", password)
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('signup', 'u1', '{"plan": "pro"}')`)
	e.exec(`INSERT INTO analytics."odd; name" (id, user_id) VALUES (1, 'u2')`)
	e.waitCount(2, time.Minute, p)
	p.term(t)
	out, _, code = runCheckCLI(t, env, "check", "--config", cfg)
	if code != 0 {
		t.Fatalf("check after streaming: exit %d\n%s", code, out)
	}
	assertLines(t, out, `✓ slot: slot "pgsignal" exists (logical, pgoutput), wal_status reserved`)

	// A wrong password fails the login item, with its fix.
	out, _, code = runCheckCLI(t, []string{"CENSUS_PASSWORD=not-the-password", env[1]}, "check", "--config", cfg)
	if code != 1 {
		t.Fatalf("check with a wrong password: exit %d\n%s", code, out)
	}
	assertLines(t, out, `✗ login: "census" cannot log in to database "postgres": password authentication failed for user "census" (SQLSTATE 28P01)`,
		"    fix: check the password", "- tls: login failed")
	if strings.Contains(out, "not-the-password") {
		t.Fatal("the wrong password in the output")
	}

	// --password-env sets the password of the existing user.
	out, errOut, code = runCheckCLI(t, []string{"NEW_CENSUS_PW=fresh-pw-123"}, "setup", "--config", cfg, "--apply", admin, "--password-env", "NEW_CENSUS_PW")
	if code != 0 || strings.Contains(out, "fresh-pw-123") {
		t.Fatalf("apply with --password-env: exit %d\n%s%s", code, out, errOut)
	}
	assertLines(t, out, `✓ password of "census": password set`)
	c2, err := pgx.Connect(ctx, strings.Replace(userDSN, password, "fresh-pw-123", 1))
	if err != nil {
		t.Fatalf("connect with the new password: %v", err)
	}
	c2.Close(ctx)
}

// The read-only script skips the bookkeeping schema and says how to create
// the slot up front; flags are checked.
func TestSetupReadOnlyAndFlags(t *testing.T) {
	e := &env{t: t, dir: t.TempDir()}
	fake, err := onesignaltest.Start(onesignaltest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	e.fake = fake
	cfg := e.writeCheckConfig("ro", "postgres://census@db.internal/analytics", "read-only", setupTables)
	sql, errOut, code := runCheckCLI(t, []string{"PW=pw-from-env"}, "setup", "--config", cfg, "--platform", "rds", "--password-env", "PW")
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	assertLines(t, sql, "pgsignal setup (read-only mode)", `GRANT "rds_replication" TO "census";`,
		`ALTER ROLE "census" WITH PASSWORD 'pw-from-env';`,
		"--   SELECT pg_create_logical_replication_slot('pgsignal', 'pgoutput');")
	if strings.Contains(sql, "CREATE SCHEMA") {
		t.Fatalf("read-only script creates a schema:\n%s", sql)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--apply"}, "--apply needs --admin-dsn"},
		{[]string{"--admin-dsn", "postgres://x@y/z"}, "--admin-dsn is used only with --apply"},
		{[]string{"--platform", "aws"}, `unknown platform "aws"`},
		{[]string{"--password-env", "PGSIGNAL_UNSET_VAR"}, "PGSIGNAL_UNSET_VAR is not set or empty"},
	} {
		_, errOut, code := runCheckCLI(t, nil, append([]string{"setup", "--config", cfg}, c.args...)...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Fatalf("%v: exit %d, stderr:\n%s", c.args, code, errOut)
		}
	}
}
