package app

import (
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/replication"
)

// swapSQL is the migration of issue 11 §2: the mapped table is renamed and
// a new, empty one takes its name.
const swapSQL = `BEGIN;
ALTER TABLE analytics.user_events RENAME TO user_events_old;
CREATE TABLE analytics.user_events (LIKE analytics.user_events_old INCLUDING ALL);
COMMIT;`

// startFast starts the app like h.start, with the catalog read every
// 100 ms.
func (h *harness) startFast(cfg *config.Config) *running {
	h.t.Helper()
	if err := cfg.Validate(); err != nil {
		h.t.Fatalf("config: %v", err)
	}
	streaming := make(chan struct{})
	r := &running{done: make(chan struct{})}
	core, logs := observer.New(zap.DebugLevel)
	h.logs = logs
	logger := zap.New(zapcore.NewTee(zaptest.NewLogger(h.t).Core(), core))
	r.app = New(Options{Config: cfg, Logger: logger, RelationCheck: 100 * time.Millisecond,
		OnStreaming: func() { close(streaming) }})
	go func() {
		defer close(r.done)
		r.sum, r.err = r.app.Run(context.Background())
	}()
	select {
	case <-streaming:
	case <-r.done:
		h.t.Fatalf("app stopped before streaming: %v", r.err)
	case <-time.After(30 * time.Second):
		h.t.Fatal("app did not start streaming in 30s")
	}
	return r
}

// ended waits for the app to stop by itself and returns its error.
func (r *running) ended(t *testing.T) error {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		r.app.Stop()
		<-r.done
		t.Fatal("pgsignal kept running; want it to stop with an error")
	}
	return r.err
}

// get returns the status and body of a GET on the app's handler.
func httpGet(a *App, path string) (int, string) {
	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

// A migration that swaps the mapped table while pgsignal streams (full
// mode) loses nothing: pgsignal adds the new table to the publication and
// sends the rows written to it before, each once, and goes on (at 37942e1
// it ran on, nothing logged, and the new table's rows were never sent); a
// restart keeps following it.
func TestTableSwapWhileStreaming(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	if v := h.serverVersion(); v < 140000 {
		t.Skipf("adding a swapped-in table with its rows needs logical decoding messages in pgoutput (PostgreSQL 14+), the server is %d: before 14 pgsignal stops with the fix (TestStreamTableSwapStopsBefore14)", v)
	}
	h.exec(seedTable)
	r := h.startFast(h.config())
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('before', 'u1')`)
	h.waitCount(1)
	// Rows 2 and 3 are in the new table before any catalog read.
	h.exec(strings.Replace(swapSQL, "COMMIT;", `INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (2, 'after', 'u2'), (3, 'after', 'u3');
COMMIT;`, 1))
	h.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (4, 'after', 'u4')`)
	h.waitCount(4)
	waitFor(t, func() bool { return h.logs.FilterMessageSnippet("pgsignal added it to the publication").Len() == 1 })
	if n := h.logs.FilterMessageSnippet("pgsignal added it to the publication").All()[0].ContextMap()["rows_resent"]; n != int64(2) && n != int64(3) {
		t.Fatalf("rows_resent %v, want 2 or 3 (row 4 may come before or after)", n)
	}
	h.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (5, 'later', 'u5')`)
	h.waitCount(5)
	sum := r.stop(t)
	if sum.DeadLettered != 0 {
		t.Fatalf("dead letters %d", sum.DeadLettered)
	}
	r = h.start(h.config())
	h.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (6, 'later', 'u6')`)
	h.waitCount(6)
	r.stop(t)
	if got := strings.Join(h.eventList(), " "); got != "after|u2 after|u3 after|u4 before|u1 later|u5 later|u6" {
		t.Fatalf("events %q", got)
	}
}

// A copying migration (new table filled from the old one, then the names
// swapped) sends again none of the copied rows: they were sent already.
func TestTableSwapCopiedRows(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	r := h.startFast(h.config())
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('old', 'u1'), ('old', 'u2')`)
	h.waitCount(2)
	h.exec(`BEGIN;
CREATE TABLE analytics.user_events_new (LIKE analytics.user_events INCLUDING ALL);
INSERT INTO analytics.user_events_new SELECT * FROM analytics.user_events;
ALTER TABLE analytics.user_events RENAME TO user_events_old;
ALTER TABLE analytics.user_events_new RENAME TO user_events;
COMMIT;`)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('new', 'u3')`)
	h.waitCount(3)
	waitFor(t, func() bool { return h.logs.FilterMessageSnippet("pgsignal added it to the publication").Len() == 1 })
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('new', 'u4')`)
	h.waitCount(4)
	r.stop(t)
	if got := strings.Join(h.eventList(), " "); got != "new|u3 new|u4 old|u1 old|u2" {
		t.Fatalf("events %q", got)
	}
}

// A mapped column renamed while pgsignal streams fails /readyz, is logged
// once and counted, and clears when the column is back (at 37942e1 every
// row became a dead letter while /readyz said ready).
func TestMappedColumnRenamed(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	r := h.startFast(h.config())
	h.exec(`ALTER TABLE analytics.user_events RENAME COLUMN user_id TO uid`)
	h.exec(`INSERT INTO analytics.user_events (event_name, uid) VALUES ('e', 'u1')`)
	h.exec(`INSERT INTO analytics.user_events (event_name, uid) VALUES ('e', 'u2')`)
	waitFor(t, func() bool { return r.app.sink != nil && r.app.sink.Stats().DeadLettered == 2 })
	code, body := httpGet(r.app, "/readyz")
	if code != 503 || !strings.Contains(body, `table analytics.user_events: mapped column(s) ["user_id"] not found`) {
		t.Fatalf("/readyz %d %s", code, body)
	}
	if _, m := httpGet(r.app, "/metrics"); !strings.Contains(m, "pgsignal_table_errors 1") || !strings.Contains(m, "pgsignal_table_errors_total 1") {
		t.Fatal("metrics lack pgsignal_table_errors 1")
	}
	if n := h.logs.FilterMessageSnippet("no row of the table can become an event").Len(); n != 1 {
		t.Fatalf("%d error lines, want 1", n)
	}
	h.exec(`ALTER TABLE analytics.user_events RENAME COLUMN uid TO user_id`)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('e', 'u3')`)
	h.waitCount(1)
	if code, body := httpGet(r.app, "/readyz"); code != 200 {
		t.Fatalf("/readyz after the fix %d %s", code, body)
	}
	sum := r.stop(t)
	if sum.DeadLettered != 2 || sum.Delivered != 1 {
		t.Fatalf("summary %+v", sum)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met in 30s")
}

// Read-only mode stops on the swap with an error naming the table and the
// statements (fails /readyz, counted), and a restart refuses until they
// ran; then the rows arrive, each once.
func TestTableSwapReadOnly(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	h.exec(`CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WITH (publish = 'insert')`)
	cfg := h.config()
	cfg.Source.Mode = config.ModeReadOnly
	cfg.Sink.DeadLetterFile = t.TempDir() + "/dl.jsonl"
	r := h.startFast(cfg)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('before', 'u1')`)
	h.waitCount(1)
	h.exec(swapSQL)
	h.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (2, 'after', 'u2'), (3, 'after', 'u3')`)
	err := r.ended(t)
	if err == nil || !errors.Is(err, replication.ErrPermanent) ||
		!strings.Contains(err.Error(), "table analytics.user_events is now a different table") ||
		!strings.Contains(err.Error(), "is now analytics.user_events_old") ||
		!strings.Contains(err.Error(), `ALTER PUBLICATION "pgsignal" ADD TABLE "analytics"."user_events";`) {
		t.Fatalf("run error %v", err)
	}
	if code, body := httpGet(r.app, "/readyz"); code != 503 || !strings.Contains(body, "is now a different table") {
		t.Fatalf("/readyz %d %s", code, body)
	}
	if _, body := httpGet(r.app, "/metrics"); !strings.Contains(body, "pgsignal_table_errors_total 1") {
		t.Fatalf("metrics lack pgsignal_table_errors_total 1")
	}
	if h.logs.FilterMessage("stopping: a configured table cannot be streamed").Len() != 1 {
		t.Fatal("no error logged")
	}
	if err := h.runErr(cfg); !strings.Contains(err.Error(), `ADD TABLE "analytics"."user_events"`) {
		t.Fatalf("restart error %v", err)
	}
	// The statements of the error, with the rows written since the swap.
	msg := err.Error()
	stmts := msg[strings.Index(msg, "  BEGIN;") : strings.Index(msg, "COMMIT;")+len("COMMIT;")]
	h.exec(strings.ReplaceAll(stmts, "<rows written since the migration>", "true"))
	r = h.start(cfg)
	h.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (4, 'later', 'u4')`)
	h.waitCount(4)
	r.stop(t)
	if got := strings.Join(h.eventList(), " "); got != "after|u2 after|u3 before|u1 later|u4" {
		t.Fatalf("events %q", got)
	}
}

// A migration that adds the new table to the publication in the
// transaction that creates it misses no row: pgsignal follows the new
// table without stopping, and a restart keeps it.
func TestTableSwapPublishedAtCreation(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	r := h.startFast(h.config())
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('before', 'u1')`)
	h.exec(strings.Replace(swapSQL, "COMMIT;", `ALTER PUBLICATION pgsignal ADD TABLE analytics.user_events; COMMIT;`, 1))
	h.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (2, 'after', 'u2')`)
	h.waitCount(2)
	waitFor(t, func() bool { return h.logs.FilterMessageSnippet("published since its creation").Len() == 1 })
	r.stop(t)
	r = h.start(h.config())
	h.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (3, 'later', 'u3')`)
	h.waitCount(3)
	r.stop(t)
	if got := strings.Join(h.eventList(), " "); got != "after|u2 before|u1 later|u3" {
		t.Fatalf("events %q", got)
	}
}

// A swap while pgsignal is stopped (full mode) loses nothing either: the
// next start adds the new table with its rows (at 37942e1 it added the
// table at info level and the rows in between were lost).
func TestTableSwapWhileStopped(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	r := h.start(h.config())
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('before', 'u1')`)
	h.waitCount(1)
	r.stop(t)
	h.exec(strings.Replace(swapSQL, "COMMIT;", `INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (2, 'after', 'u2');
COMMIT;`, 1))
	h.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (3, 'after', 'u3')`)
	r = h.start(h.config())
	h.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (4, 'later', 'u4')`)
	h.waitCount(4)
	r.stop(t)
	if got := strings.Join(h.eventList(), " "); got != "after|u2 after|u3 before|u1 later|u4" {
		t.Fatalf("events %q", got)
	}
}

// A long transaction writing to the new table delays its adoption (the
// lock waits at most 2 s, then the next catalog read tries again) and
// loses none of its rows.
func TestTableSwapLongTransaction(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	r := h.startFast(h.config())
	h.exec(swapSQL)
	long, err := h.pg.Connect(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close(context.Background())
	ctx := context.Background()
	if _, err := long.Exec(ctx, `BEGIN; INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (1, 'long', 'u1')`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return h.logs.FilterMessageSnippet("locked by a long transaction").Len() > 0 })
	if _, err := long.Exec(ctx, `COMMIT`); err != nil {
		t.Fatal(err)
	}
	h.waitCount(1)
	h.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (2, 'after', 'u2')`)
	h.waitCount(2)
	r.stop(t)
	if got := strings.Join(h.eventList(), " "); got != "after|u2 long|u1" {
		t.Fatalf("events %q", got)
	}
}

// Anyone may emit a logical decoding message: a pgsignal.resend message
// pgsignal did not write (no recorded token) is ignored with a warning.
func TestForgedResendIgnored(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	r := h.startFast(h.config())
	h.exec(`SELECT pg_logical_emit_message(true, 'pgsignal.resend', jsonb_build_object('s', 'analytics', 't', 'user_events',
  'o', 'analytics.user_events'::regclass::oid, 'k', 'guess', 'c', '[{"n":"event_name","t":25,"m":-1},{"n":"user_id","t":25,"m":-1}]'::jsonb,
  'v', jsonb_build_array('forged', 'victim'))::text)`)
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('real', 'u1')`)
	h.waitCount(1)
	waitFor(t, func() bool { return h.logs.FilterMessageSnippet("did not write").Len() == 1 })
	r.stop(t)
	if got := strings.Join(h.eventList(), " "); got != "real|u1" {
		t.Fatalf("events %q", got)
	}
}
