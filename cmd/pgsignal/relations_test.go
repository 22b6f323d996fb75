package main

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// The binary, in full mode, stops with an error naming the table and the
// statements when a migration swaps the mapped table while it streams, and
// a restart refuses too (at 37942e1 it ran on, logged nothing, and after a
// restart added the table at info level: the rows in between were lost).
func TestProcTableSwap(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('before', 'u1')`)
	e.waitCount(1, 30*time.Second, p)
	e.exec(`BEGIN;
ALTER TABLE analytics.user_events RENAME TO user_events_old;
CREATE TABLE analytics.user_events (LIKE analytics.user_events_old INCLUDING ALL);
COMMIT;`)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('after', 'u2')`)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("pgsignal kept running after the swap\n%s", p.tail())
	}
	logText, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	if p.err == nil || !strings.Contains(string(logText), "table analytics.user_events is now a different table") ||
		!strings.Contains(string(logText), `ALTER PUBLICATION \"pgsignal\" ADD TABLE \"analytics\".\"user_events\";`) {
		t.Fatalf("exit %v\n%s", p.err, logText)
	}
	p = e.startProc(cfg)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the restart streams\n%s", p.tail())
	}
	if p.err == nil || !strings.Contains(p.tail(), "is now a different table") {
		t.Fatalf("restart exit %v\n%s", p.err, p.tail())
	}
	if n := e.fake.Count(); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}
