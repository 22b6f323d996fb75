package main

import (
	"os"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// A migration that swaps the mapped table while the binary streams (full
// mode) loses nothing: the rows written to the new table before pgsignal
// noticed, and after, arrive once each (at 37942e1 pgsignal ran on, logged
// nothing, and never sent them).
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
INSERT INTO analytics.user_events (event_name, user_id) VALUES ('after', 'u2');
COMMIT;`)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('after', 'u3')`)
	e.waitCount(3, 60*time.Second, p)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('later', 'u4')`)
	e.waitCount(4, 30*time.Second, p)
	p.term(t)
	logText, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(logText), "pgsignal added it to the publication") {
		t.Fatalf("no warning about the new table\n%s", logText)
	}
	var got []string
	for _, ev := range e.fake.Events() {
		got = append(got, ev.Name+"|"+ev.ExternalID)
	}
	sort.Strings(got) // several users, several lanes
	if strings.Join(got, " ") != "after|u2 after|u3 before|u1 later|u4" {
		t.Fatalf("events %v", got)
	}
}
