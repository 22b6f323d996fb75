package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A source.dsn URL whose password holds an unescaped "/", "@" or "#" stops
// run, check (text and --json) and status before any connection, with an
// error that quotes nothing of the dsn and says how to write it.
func TestDSNPasswordNeedsEncoding(t *testing.T) {
	cases := []struct {
		name, dsn string
		why       string
	}{
		// libpq reads host "localhost" and database "w0rd!Leak@127.0.0.1:1/appdb".
		{"slash", "postgres://approle:p@localhost/w0rd!Leak@127.0.0.1:1/appdb",
			`an "@" ends up in the database name, which happens when the password holds a "/"`},
		// libpq reads host "ss@127.0.0.1".
		{"at", "postgres://approle:p@ss@127.0.0.1:1/appdb",
			`an "@" ends up in the host name`},
		{"hash", "postgres://approle:p#ss@127.0.0.1:1/appdb",
			`the user information holds a "#"`},
	}
	secrets := []string{"p@localhost", "w0rd", "Leak", "p@ss", "p#ss", "approle", "appdb", "127.0.0.1:1"}
	dir := t.TempDir()
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("dsn%d.yaml", i))
			cfg := fmt.Sprintf(`source:
  dsn: %q
onesignal:
  app_id: "5eb5a37e-b458-11e3-ac11-000c2940e62c"
  api_key: "${TEST_ONESIGNAL_KEY}"
  url: "http://127.0.0.1:1"
sink:
  dead_letter_file: %q
server:
  listen: "127.0.0.1:0"
tables:
  - table: analytics.user_events
    name: event_name
    external_id: user_id
`, c.dsn, filepath.Join(dir, "dead.jsonl"))
			if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"run"}, {"check"}, {"check", "--json"}, {"status"}, {"status", "--json"}} {
				start := time.Now()
				cmd := exec.Command(binary, append(append([]string{}, args...), "--config", path)...)
				cmd.Env = append(os.Environ(), "TEST_ONESIGNAL_KEY=os_v2_app_dsn-test-key")
				out, err := cmd.CombinedOutput()
				var ee *exec.ExitError
				if !errorAs(err, &ee) || ee.ExitCode() != 1 {
					t.Fatalf("%v: exit %v, want 1\n%s", args, err, out)
				}
				if took := time.Since(start); took > 5*time.Second {
					t.Fatalf("%v took %s: it must fail before connecting", args, took)
				}
				for _, want := range []string{"source.dsn (line 2): the postgres:// URL would not be read as written: " + c.why,
					`Percent-encode the user name and the password in a URL ("@" is %40, "/" is %2F, "#" is %23`,
					"set PGPASSWORD", "key=value dsn"} {
					if !strings.Contains(string(out), want) {
						t.Fatalf("%v: output lacks %q:\n%s", args, want, out)
					}
				}
				for _, s := range secrets {
					if strings.Contains(string(out), s) {
						t.Fatalf("%v: output holds %q of the dsn:\n%s", args, s, out)
					}
				}
			}
		})
	}
}
