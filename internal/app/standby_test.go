package app

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// standbyBinDir returns the binaries of the read-replica test: PostgreSQL
// 17 from npm, or $PGSIGNAL_PG_VERSION's when set (scripts/pg-matrix.sh);
// it skips the test for versions before 16, which cannot decode on a
// standby.
func standbyBinDir(t *testing.T) string {
	t.Helper()
	major := 17
	if v := os.Getenv(pgtest.EnvVersion); v != "" {
		var err error
		if major, err = strconv.Atoi(v); err != nil {
			t.Fatalf("$%s=%q: %v", pgtest.EnvVersion, v, err)
		}
		if major < 16 {
			t.Skip("standby decoding needs PostgreSQL 16+")
		}
		dir, err := pgtest.BinDirForVersion(t.Context(), major)
		if err != nil {
			t.Fatal(err)
		}
		return dir
	}
	dir, err := pgtest.NPMBinDir(t.Context(), major)
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// newStandbyHarness starts a primary with the seed table and the
// publication, a hot standby of it, and the fake OneSignal. h.pg is the
// standby (what pgsignal reads); h.db and h.exec write to the primary.
func newStandbyHarness(t *testing.T) (*harness, *pgtest.Server) {
	t.Helper()
	binDir := standbyBinDir(t)
	primary := pgtest.New(t, pgtest.Options{BinDir: binDir})
	ctx := t.Context()
	if err := primary.Exec(ctx, seedTable); err != nil {
		t.Fatal(err)
	}
	// Read-only mode creates no publication, and a standby could not:
	// created on the primary, it reaches the standby through the WAL.
	if err := primary.Exec(ctx, `CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WITH (publish = 'insert')`); err != nil {
		t.Fatal(err)
	}
	standby := pgtest.NewStandby(t, primary, pgtest.Options{})
	if err := standby.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	fake, err := onesignaltest.Start(onesignaltest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	db, err := pgx.Connect(ctx, primary.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	return &harness{t: t, pg: standby, fake: fake, db: db, stateFile: filepath.Join(t.TempDir(), "pgsignal-state.json")}, primary
}

// startOnStandby is h.start for an App reading a standby. Creating a logical
// slot on a standby waits until the standby replays a running-xacts record
// from the primary (it needs one to build its initial snapshot). The primary
// writes one every 15 s, and only while it writes WAL, so an idle test
// primary could keep pgsignal in slot creation for a long time: until
// streaming starts, the loop asks the primary for one now with
// pg_log_standby_snapshot() (PostgreSQL 16+).
func (h *harness) startOnStandby(cfg *config.Config, primary *pgtest.Server) *running {
	h.t.Helper()
	if err := cfg.Validate(); err != nil {
		h.t.Fatalf("config: %v", err)
	}
	streaming := make(chan struct{})
	r := &running{done: make(chan struct{})}
	core, logs := observer.New(zap.DebugLevel)
	h.logs = logs
	logger := zap.New(zapcore.NewTee(zaptest.NewLogger(h.t).Core(), core))
	r.app = New(Options{Config: cfg, Logger: logger, OnStreaming: func() { close(streaming) }})
	go func() {
		defer close(r.done)
		r.sum, r.err = r.app.Run(context.Background())
	}()
	deadline := time.After(60 * time.Second)
	nudge := time.NewTicker(200 * time.Millisecond)
	defer nudge.Stop()
	for {
		select {
		case <-streaming:
			return r
		case <-r.done:
			h.t.Fatalf("app stopped before streaming: %v", r.err)
		case <-deadline:
			h.t.Fatal("app did not start streaming from the standby in 60s")
		case <-nudge.C:
			if err := primary.Exec(h.t.Context(), `SELECT pg_log_standby_snapshot()`); err != nil {
				h.t.Fatal(err)
			}
		}
	}
}

// pgsignal attached to a hot standby in read-only mode: the slot lives on
// the standby, rows inserted on the primary arrive as events exactly once,
// across a restart, and a dead letter goes to the file.
func TestStandbyReadOnlyStream(t *testing.T) {
	h, primary := newStandbyHarness(t)
	ctx := t.Context()
	dlFile := filepath.Join(t.TempDir(), "dead-letters.jsonl")
	cfg := h.config()
	cfg.Source.Mode = config.ModeReadOnly
	cfg.Sink.DeadLetterFile = dlFile
	if !strings.Contains(cfg.Source.DSN, ":"+strconv.Itoa(h.pg.Port())+"/") {
		t.Fatalf("source.dsn %s is not the standby's", cfg.Source.DSN)
	}

	r := h.startOnStandby(cfg, primary)
	if got := query1(t, h.pg, `SELECT slot_type || ' ' || plugin FROM pg_replication_slots WHERE slot_name = 'pgsignal'`); got != "logical pgoutput" {
		t.Errorf("standby: slot pgsignal = %q, want a logical pgoutput slot", got)
	}
	if got := query1(t, primary, `SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = 'pgsignal'`); got != "0" {
		t.Errorf("primary: has a slot pgsignal; want it on the standby only")
	}

	// 1 + 10 + 500 rows in three transactions, then a row without a user.
	n := 0
	for _, size := range []int{1, 10, 500} {
		h.insertBatch(n, size)
		n += size
	}
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('ev', NULL, '{"n": -1}')`)
	h.waitCount(n)
	sum := r.stop(t)
	if sum.Delivered != uint64(n) || sum.DeadLettered != 1 {
		t.Errorf("first run: delivered %d, dead-lettered %d; want %d, 1", sum.Delivered, sum.DeadLettered, n)
	}
	confirmed := query1(t, h.pg, `SELECT coalesce(confirmed_flush_lsn::text, '') FROM pg_replication_slots WHERE slot_name = 'pgsignal'`)
	if confirmed == "" || confirmed == "0/0" {
		t.Errorf("standby slot confirmed_flush_lsn = %q after the first run", confirmed)
	}

	// Rows written while pgsignal is stopped arrive after the restart, and
	// nothing already delivered is sent again.
	h.insertBatch(n, 200)
	n += 200
	r = h.startOnStandby(cfg, primary)
	h.insertBatch(n, 100)
	n += 100
	h.waitCount(n)
	sum = r.stop(t)
	if sum.DeadLettered != 0 {
		t.Errorf("second run dead-lettered %d, want 0 (the dead letter was handled before)", sum.DeadLettered)
	}

	got := h.fake.Events()
	if len(got) != n || h.fake.Duplicates() != 0 {
		t.Fatalf("fake OneSignal has %d events, %d duplicates; want %d, 0", len(got), h.fake.Duplicates(), n)
	}
	seen := make([]bool, n)
	for _, ev := range got {
		i := int(mustJSON(t, ev.Properties)["n"].(float64))
		if i < 0 || i >= n || seen[i] {
			t.Fatalf("event n=%d unexpected or repeated", i)
		}
		seen[i] = true
	}
	lines := readLines(t, dlFile)
	if len(lines) != 1 {
		t.Fatalf("dead-letter file has %d lines, want 1: %q", len(lines), lines)
	}
	dl := mustJSON(t, []byte(lines[0]))
	if dl["table"] != "analytics.user_events" || !strings.Contains(dl["reason"].(string), "NULL") {
		t.Errorf("dead letter %s: want the row without a user of analytics.user_events", lines[0])
	}
	// The standby was only read: it still replays the primary.
	if err := h.pg.CatchUp(ctx); err != nil {
		t.Error(err)
	}
}

// query1 returns the single text value of sql on s.
func query1(t *testing.T, s *pgtest.Server, sql string) string {
	t.Helper()
	conn, err := s.Connect(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var v string
	if err := conn.QueryRow(t.Context(), sql).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}
