package app

import (
	"context"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/checkpoint"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/internal/statefile"
	"github.com/pgsignal/pgsignal/internal/store"
)

// ledgerRows inserts n rows (user_<i%20>, {"n": i}) in one transaction and
// returns how many of them are users of lane (of 8).
func ledgerRows(h *harness, n, lane int) int {
	h.t.Helper()
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data)
SELECT 'ev', 'user_' || (i % 20), now(), jsonb_build_object('n', i) FROM generate_series(0, $1::int - 1) AS i`, n)
	in := 0
	for i := 0; i < n; i++ {
		if cdc.Lane(fmt.Sprintf("user_%d", i%20), 8) == lane {
			in++
		}
	}
	return in
}

// checkSkipped asserts that the fake got every event except lane's, the
// metrics say how many the ledger skipped, and the ledger is empty after a
// drained stop.
func checkSkipped(t *testing.T, h *harness, r *running, n, skipped, lane int) {
	t.Helper()
	h.waitCount(n - skipped)
	srv := httptest.NewServer(r.app.Handler())
	_, metrics := get(t, srv, "/metrics")
	srv.Close()
	r.stop(t)
	for _, ev := range h.fake.Events() {
		if cdc.Lane(ev.ExternalID, 8) == lane {
			t.Fatalf("%s's event %s was sent although the ledger had it", ev.ExternalID, ev.Properties)
		}
	}
	if got := h.fake.Count(); got != n-skipped {
		t.Fatalf("%d events accepted, want %d", got, n-skipped)
	}
	if want := fmt.Sprintf("pgsignal_ledger_skipped_events %d\n", skipped); !strings.Contains(metrics, want) {
		t.Fatalf("metrics lack %q:\n%s", want, grepLines(metrics, "pgsignal_ledger"))
	}
	for _, m := range []string{"pgsignal_ledger_ranges ", "pgsignal_ledger_events ", "pgsignal_ledger_writes_total ", "pgsignal_ledger_write_failures_total 0"} {
		if !strings.Contains(metrics, m) {
			t.Fatalf("metrics lack %q:\n%s", m, grepLines(metrics, "pgsignal_ledger"))
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// An earlier run's ledger says lane 3's events up to the end of the WAL were
// accepted: the restart sends every other event and none of lane 3's, says
// so in /metrics, status and the run's row, and trims the ledger as the
// watermark passes it.
func TestLedgerRestartSkipsRecordedEvents(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	cfg := h.config()
	h.start(cfg).stop(t) // the slot and the bookkeeping schema
	const lane, n = 3, 400
	h.exec(`INSERT INTO census.delivered (slot, timeline, lanes, lane, from_lsn, from_ordinal, to_lsn, to_ordinal, events)
VALUES ('pgsignal', 1, 8, $1, '0/1', 0, 'FFFFFFFF/FFFFFFFF', 4294967295, 1)`, lane)
	skipped := ledgerRows(h, n, lane)
	if skipped == 0 || skipped == n {
		t.Fatalf("%d of %d rows in lane %d: pick other users", skipped, n, lane)
	}
	r := h.start(cfg)
	checkSkipped(t, h, r, n, skipped, lane)
	ctx := context.Background()
	var rows int
	if err := h.db.QueryRow(ctx, `SELECT count(*) FROM census.delivered`).Scan(&rows); err != nil || rows != 1 {
		// The recorded range reaches past the watermark (to the end of all
		// WAL), so it stays; this run's own ranges were trimmed.
		t.Fatalf("ledger holds %d ranges (%v), want the earlier run's 1", rows, err)
	}
	pool, err := pgxpool.New(ctx, h.pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	size, err := store.ReadLedgerSize(ctx, pool, "census", "pgsignal")
	if err != nil || size == nil || size.SkippedOnLastStart != int64(skipped) || size.Ranges != 1 {
		t.Fatalf("status's ledger: %+v (%v), want 1 range and %d skipped", size, err, skipped)
	}
}

// The same in read-only mode, whose ledger is the state file's section
// "ledger".
func TestLedgerRestartSkipsRecordedEventsReadOnly(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	h.exec(`CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WITH (publish = 'insert')`)
	cfg := h.config()
	cfg.Source.Mode = config.ModeReadOnly
	dir := t.TempDir()
	cfg.Sink.DeadLetterFile = filepath.Join(dir, "dead.jsonl")
	cfg.Source.StateFile = filepath.Join(dir, "state.json")
	h.start(cfg).stop(t) // the slot
	var sysID string
	if err := h.db.QueryRow(context.Background(), `SELECT system_identifier::text FROM pg_control_system()`).Scan(&sysID); err != nil {
		t.Fatal(err)
	}
	f, err := statefile.Open(cfg.Source.StateFile)
	if err != nil {
		t.Fatal(err)
	}
	const lane, n = 5, 400
	all := []checkpoint.Range{{Timeline: 1, Lanes: 8, Lane: lane, From: cdc.Position{CommitLSN: 1},
		To: cdc.Position{CommitLSN: ^cdc.LSN(0), Ordinal: ^uint32(0)}, Events: 1}}
	if err := (&checkpoint.StateFileLedger{File: f, SystemID: sysID, Slot: "pgsignal"}).Write(context.Background(), all); err != nil {
		t.Fatal(err)
	}
	skipped := ledgerRows(h, n, lane)
	r := h.start(cfg)
	checkSkipped(t, h, r, n, skipped, lane)
	size, err := checkpoint.ReadStateFileLedgerSize(cfg.Source.StateFile)
	if err != nil || size == nil || size.SkippedOnLastStart != int64(skipped) || size.Ranges != 1 {
		t.Fatalf("state file's ledger: %+v (%v), want 1 range and %d skipped", size, err, skipped)
	}
}

// A slot created anew makes an earlier ledger meaningless: it is cleared.
func TestLedgerClearedWithANewSlot(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	cfg := h.config()
	h.start(cfg).stop(t)
	h.exec(`INSERT INTO census.delivered (slot, timeline, lanes, lane, from_lsn, from_ordinal, to_lsn, to_ordinal, events)
VALUES ('pgsignal', 1, 8, 2, '0/1', 0, 'FFFFFFFF/FFFFFFFF', 4294967295, 1)`)
	h.exec(`SELECT pg_drop_replication_slot('pgsignal')`)
	h.exec(`DELETE FROM census.sync_state`)
	r := h.start(cfg)
	const n = 200
	ledgerRows(h, n, 2)
	h.waitCount(n)
	r.stop(t)
	var rows int
	if err := h.db.QueryRow(context.Background(), `SELECT count(*) FROM census.delivered`).Scan(&rows); err != nil || rows != 0 {
		t.Fatalf("ledger holds %d ranges (%v) after a new slot and a drained stop, want 0", rows, err)
	}
	if h.fake.Count() != n {
		t.Fatalf("%d events accepted, want %d", h.fake.Count(), n)
	}
}
