package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// defaultTables is the tables section for the events table newEnv creates.
const defaultTables = `  - table: analytics.user_events
    name: event_name
    external_id: user_id
    timestamp: event_timestamp
    properties: event_data
`

// writeCheckConfig writes a config file named name for dsn and mode; the
// API key comes from $TEST_ONESIGNAL_KEY.
func (e *env) writeCheckConfig(name, dsn, mode, tables string) string {
	e.t.Helper()
	cfg := fmt.Sprintf(`source:
  dsn: %q
  mode: %s
onesignal:
  app_id: %q
  api_key: "${TEST_ONESIGNAL_KEY}"
  url: %q
  timeout: 10s
sink:
  dead_letter_file: %q
tables:
%s`, dsn, mode, e.fake.AppID(), e.fake.URL(), filepath.Join(e.dir, "dead.jsonl"), tables)
	path := filepath.Join(e.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// runCheckCLI runs the binary with args and extra environment variables
// and returns its stdout, stderr and exit code.
func runCheckCLI(t *testing.T, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errorAs(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// assertLines checks that out holds every wanted text.
func assertLines(t *testing.T, out string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Fatalf("output lacks %q:\n%s", w, out)
		}
	}
}

// wal_level = replica fails its item, with the fix, and the slot cannot be
// created.
func TestCheckWALLevelReplica(t *testing.T) {
	e := newEnv(t, pgtest.Options{Conf: map[string]string{"wal_level": "replica"}}, onesignaltest.Options{})
	cfg := e.writeCheckConfig("replica", e.pg.DSN(""), "full", defaultTables)
	out, errOut, code := runCheckCLI(t, []string{"TEST_ONESIGNAL_KEY=" + e.fake.APIKey()}, "check", "--config", cfg)
	t.Logf("check:\n%s", out)
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	assertLines(t, out,
		"✗ wal_level: replica; logical decoding needs wal_level = logical\n"+
			"    fix: ALTER SYSTEM SET wal_level = logical;  -- as a superuser, then restart PostgreSQL\n",
		`- slot: slot "pgsignal" does not exist and cannot be created while wal_level is not logical`,
		"✓ onesignal credentials",
		"FAILED: 1 of ")
}

// Each misconfiguration fails its item with the fix; nothing secret is
// printed.
func TestCheckMisconfigured(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.exec(`CREATE ROLE norepl LOGIN; GRANT USAGE ON SCHEMA analytics TO norepl; GRANT SELECT ON analytics.user_events TO norepl`)
	const dsnSecret = "dsn-secret-pw"
	superDSN := strings.Replace(e.pg.DSN(""), "postgres@", "postgres:"+dsnSecret+"@", 1)
	noreplDSN := strings.Replace(e.pg.DSN(""), "postgres@", "norepl:"+dsnSecret+"@", 1)
	goodKey := "TEST_ONESIGNAL_KEY=" + e.fake.APIKey()
	cases := []struct {
		name, dsn, mode, tables, key string
		want                         []string
	}{
		{"user without REPLICATION", noreplDSN, "full", defaultTables, goodKey, []string{
			"✗ replication privilege: \"norepl\" has neither the REPLICATION attribute nor rds_replication\n" +
				"    fix: ALTER ROLE \"norepl\" WITH REPLICATION;  -- as a superuser (or pgsignal setup --apply)\n",
			"- replication connection: the user lacks the REPLICATION privilege",
			"✓ select analytics.user_events: SELECT granted",
		}},
		{"missing publication in read-only mode", superDSN, "read-only", defaultTables, goodKey, []string{
			"✗ publication: \"pgsignal\" does not exist; read-only mode does not create it\n" +
				"    fix: as an owner of the tables, on the primary (or pgsignal setup --apply):\n" +
				"         CREATE PUBLICATION \"pgsignal\" FOR TABLE \"analytics\".\"user_events\" WITH (publish = 'insert');\n",
			"- bookkeeping schema: read-only mode keeps no bookkeeping schema",
		}},
		{"missing mapped column", superDSN, "full", strings.Replace(defaultTables, "external_id: user_id", "external_id: user_idx", 1), goodKey, []string{
			"✗ columns analytics.user_events: \"analytics\".\"user_events\" has no column \"user_idx\" (tables[0].external_id)\n" +
				"    fix: set tables[0].external_id to one of the columns of \"analytics\".\"user_events\": \"id\", \"event_name\", \"user_id\", \"event_timestamp\", \"event_data\"\n",
		}},
		{"wrong API key", superDSN, "full", defaultTables, "TEST_ONESIGNAL_KEY=os_v2_app_wrong-key-value", []string{
			"✗ onesignal credentials: API key refused: OneSignal answered 403 for app " + e.fake.AppID() + "\n" +
				"    fix: set onesignal.api_key (or onesignal.api_key_file) to the App API key of app " + e.fake.AppID(),
			"✓ publication: \"pgsignal\" does not exist yet; pgsignal creates it at its first start",
		}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := e.writeCheckConfig(fmt.Sprintf("case%d", i), c.dsn, c.mode, c.tables)
			out, errOut, code := runCheckCLI(t, []string{c.key}, "check", "--config", cfg)
			t.Logf("check:\n%s", out)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
			}
			assertLines(t, out, c.want...)
			for _, secret := range []string{dsnSecret, "wrong-key-value", e.fake.APIKey()} {
				if strings.Contains(out+errOut, secret) {
					t.Fatalf("%q in the output:\n%s%s", secret, out, errOut)
				}
			}
			assertEveryFailHasFix(t, out)

			js, _, code := runCheckCLI(t, []string{c.key}, "check", "--config", cfg, "--json")
			if code != 1 {
				t.Fatalf("--json exit %d, want 1", code)
			}
			var rep struct {
				OK    bool
				Items []struct{ Name, Status, Detail, Fix string }
			}
			if err := json.Unmarshal([]byte(js), &rep); err != nil || rep.OK {
				t.Fatalf("--json: ok=%v, %v\n%s", rep.OK, err, js)
			}
		})
	}
}

// assertEveryFailHasFix checks that every ✗ line is followed by a fix.
func assertEveryFailHasFix(t *testing.T, out string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "✗ ") && (i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "    fix: ")) {
			t.Fatalf("%q has no fix:\n%s", l, out)
		}
	}
}
