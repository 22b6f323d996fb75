package app

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
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

const seedTable = `CREATE SCHEMA IF NOT EXISTS analytics;
CREATE TABLE analytics.user_events (
  id              bigserial PRIMARY KEY,
  event_name      text,
  user_id         text,
  event_timestamp timestamptz,
  event_data      jsonb
);`

type harness struct {
	logs         *observer.ObservedLogs
	stallTimeout time.Duration
	onSlotLost   string
	t            *testing.T
	pg           *pgtest.Server
	fake         *onesignaltest.Server
	db           *pgx.Conn
	// stateFile is read-only mode's state file, in the test's directory
	// (the default, relative to the package directory, would be shared by
	// every test of the package).
	stateFile string
}

func newHarness(t *testing.T, pgOpts pgtest.Options) *harness {
	t.Helper()
	pg := pgtest.New(t, pgOpts)
	fake, err := onesignaltest.Start(onesignaltest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	ctx := context.Background()
	db, err := pgx.Connect(ctx, pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close(context.Background()) })
	return &harness{t: t, pg: pg, fake: fake, db: db, stateFile: filepath.Join(t.TempDir(), "pgsignal-state.json")}
}

func (h *harness) exec(sql string, args ...any) {
	h.t.Helper()
	if _, err := h.db.Exec(context.Background(), sql, args...); err != nil {
		h.t.Fatalf("%s: %v", sql, err)
	}
}

// config returns a full-mode config for the seed table.
func (h *harness) config() *config.Config {
	c := config.Defaults()
	c.Source.DSN = h.pg.DSN("")
	c.Source.StateFile = h.stateFile
	c.OneSignal.AppID = h.fake.AppID()
	c.OneSignal.APIKey = h.fake.APIKey()
	c.OneSignal.URL = h.fake.URL()
	c.Sink.Linger = 5 * time.Millisecond
	c.ShutdownTimeout = 30 * time.Second
	c.Tables = []config.Table{{Schema: "analytics", Name: "user_events", EventName: "event_name",
		ExternalID: "user_id", Timestamp: "event_timestamp", Properties: []string{"event_data"}}}
	return &c
}

// running is an App running in the background.
type running struct {
	app  *App
	done chan struct{}
	sum  Summary
	err  error
}

func (h *harness) start(cfg *config.Config) *running {
	h.t.Helper()
	if err := cfg.Validate(); err != nil {
		h.t.Fatalf("config: %v", err)
	}
	streaming := make(chan struct{})
	r := &running{done: make(chan struct{})}
	core, logs := observer.New(zap.DebugLevel)
	h.logs = logs
	logger := zap.New(zapcore.NewTee(zaptest.NewLogger(h.t).Core(), core))
	r.app = New(Options{Config: cfg, Logger: logger, StallTimeout: h.stallTimeout, OnSlotLost: h.onSlotLost, OnStreaming: func() { close(streaming) }})
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

func (r *running) stop(t *testing.T) Summary {
	t.Helper()
	r.app.Stop()
	select {
	case <-r.done:
	case <-time.After(60 * time.Second):
		t.Fatal("app did not stop in 60s")
	}
	if r.err != nil {
		t.Fatalf("run: %v", r.err)
	}
	return r.sum
}

func (h *harness) waitCount(n int) {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := h.fake.WaitForCount(ctx, n); err != nil {
		h.t.Fatalf("waiting for %d events (have %d): %v", n, h.fake.Count(), err)
	}
}

// slotConfirmed returns the slot's confirmed_flush_lsn.
func (h *harness) slotConfirmed(slot string) string {
	h.t.Helper()
	var lsn string
	if err := h.db.QueryRow(context.Background(), `SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&lsn); err != nil {
		h.t.Fatal(err)
	}
	return lsn
}

func mustJSON(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return m
}

func jsonString(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprint(err))
	}
	return string(b)
}
