package app

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

const roPassword = "Sekr3t-ro-passw0rd"

// Read-only mode with a user that has only SELECT and REPLICATION (no
// CREATE anywhere): pgsignal writes nothing to the database, resumes from
// the slot's confirmed_flush_lsn after a restart, and writes its dead
// letters to the file. No secret appears in any log line, even when the run
// fails (API key refused).
func TestReadOnlyModeWithMinimalUser(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	h.exec(`CREATE ROLE census_ro LOGIN REPLICATION PASSWORD '` + roPassword + `';
GRANT USAGE ON SCHEMA analytics TO census_ro;
GRANT SELECT ON analytics.user_events TO census_ro;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE CREATE ON DATABASE postgres FROM PUBLIC;
CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WITH (publish = 'insert')`)
	u, err := url.Parse(h.pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword("census_ro", roPassword)
	cfg := h.config()
	cfg.Source.DSN = u.String()
	cfg.Source.Mode = "read-only"
	cfg.Sink.DeadLetterFile = filepath.Join(t.TempDir(), "dead.jsonl")

	r := h.start(cfg)
	h.insertBatch(0, 50)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('nouser', NULL)`)
	h.waitCount(50)
	r.stop(t)
	h.insertBatch(50, 50)
	r = h.start(cfg)
	h.waitCount(100)
	sum := r.stop(t)
	if h.fake.Count() != 100 || h.fake.Duplicates() != 0 {
		t.Fatalf("%d events, %d duplicates; want 100, 0", h.fake.Count(), h.fake.Duplicates())
	}
	if sum.Received != 50 {
		t.Fatalf("second run received %d rows, want 50 (it must resume from the slot)", sum.Received)
	}
	var objects int
	if err := h.db.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = 'census')
  + (SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner WHERE r.rolname = 'census_ro')`).Scan(&objects); err != nil {
		t.Fatal(err)
	}
	if objects != 0 {
		t.Fatalf("read-only mode created %d objects", objects)
	}
	f, err := os.Open(cfg.Sink.DeadLetterFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 1 || lines[0]["reason"] != `external_id column "user_id" is NULL` {
		t.Fatalf("dead-letter file: %v", lines)
	}

	// A failing run: the API key is refused.
	h.fake.SetFaults(onesignaltest.Faults{ForbidAfter: 1})
	h.insertBatch(100, 20)
	cfg.OneSignal.APIKey = h.fake.APIKey()
	core, logs := observer.New(zap.DebugLevel)
	a := New(Options{Config: cfg, Logger: zap.New(core)})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, runErr := a.Run(ctx)
	if runErr == nil || !strings.Contains(runErr.Error(), "OneSignal refused the API key") {
		t.Fatalf("run error %v", runErr)
	}
	// Everything logged by the runs, and the error, are free of secrets.
	all := runErr.Error()
	for _, e := range h.logs.All() {
		all += e.Message + fmt.Sprint(e.ContextMap())
	}
	for _, e := range logs.All() {
		all += e.Message + fmt.Sprint(e.ContextMap())
	}
	for _, secret := range []string{roPassword, h.fake.APIKey()} {
		if strings.Contains(all, secret) {
			t.Fatalf("a secret appears in the logs or the error")
		}
	}
}
