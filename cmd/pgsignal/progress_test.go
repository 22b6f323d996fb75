package main

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// pgsignal backfill on a terminal (script(1) gives it one) draws a progress
// line that ends at every row of the window; off a terminal its output has
// no progress line, only the logs.
func TestBackfillProgressOnTerminal(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("script(1) is needed to give pgsignal a terminal")
	}
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data)
SELECT 'e', 'u' || g, now() - interval '1 hour', '{}' FROM generate_series(1, 3000) g`)
	cfg := e.writeConfig("full", "")
	// timeout(1) stops it (SIGINT, then exit status 124) once the
	// backfill is long done.
	cmd := exec.Command("script", "-qec", "timeout -s INT 6 "+binary+" backfill --since 2h --config "+cfg, "/dev/null")
	cmd.Env = append(os.Environ(), "TEST_ONESIGNAL_KEY="+e.fake.APIKey())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 124) {
		t.Fatalf("%v\n%q", err, out)
	}
	if !strings.Contains(string(out), "\r\x1b[Kbackfill: 3,000/3,000 rows (100%), ") || !strings.Contains(string(out), `"msg":"backfill done","rows":3000`) {
		t.Fatalf("no progress line that ends at 3,000 rows:\n%q", out)
	}
	if e.fake.Count() != 3000 {
		t.Fatalf("%d events", e.fake.Count())
	}

	// Off a terminal: the logs only.
	e.exec(`SELECT pg_drop_replication_slot('pgsignal')`)
	e.exec(`DROP SCHEMA census CASCADE`)
	p := e.startCommand("backfill", cfg, "--since", "2h")
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(p.tail(), `"msg":"backfill done"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no backfill done:\n%s", p.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.term(t)
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "\r") || strings.Contains(string(b), "rows (100%)") {
		t.Fatalf("a progress line off a terminal:\n%s", b)
	}
}
