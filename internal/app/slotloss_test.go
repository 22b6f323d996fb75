package app

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/replication"
)

// runExpectingError runs the app and returns the error it stops with.
func (h *harness) runExpectingError(opts Options) error {
	h.t.Helper()
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(h.t)
	}
	a := New(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := a.Run(ctx)
	if err == nil {
		h.t.Fatal("run ended without an error")
	}
	return err
}

// A slot dropped while pgsignal was stopped is a loss, not a first start:
// by default pgsignal refuses to go on and says what was lost; with
// on_slot_lost: recreate it recreates the slot, records the gap in
// census.runs and streams again.
func TestSlotDroppedIsReported(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	cfg := h.config()
	r := h.start(cfg)
	h.insertBatch(0, 10)
	h.waitCount(10)
	r.stop(t)
	// The walsender exits shortly after pgsignal closes the connection.
	for i := 0; ; i++ {
		_, err := h.db.Exec(context.Background(), `SELECT pg_drop_replication_slot('pgsignal')`)
		if err == nil {
			break
		}
		if i == 100 {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.insertBatch(10, 5) // lost with the slot

	err := h.runExpectingError(Options{Config: cfg})
	var loss replication.SlotLoss
	if !errors.As(err, &loss) || !loss.Dropped || loss.Bytes() <= 0 {
		t.Fatalf("error %v, want a SlotLoss for a dropped slot", err)
	}
	for _, want := range []string{`replication slot "pgsignal" was dropped`, "bytes of WAL", "on_slot_lost: recreate"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error lacks %q: %v", want, err)
		}
	}

	h.onSlotLost = config.SlotLostRecreate
	r = h.start(cfg)
	h.insertBatch(15, 5)
	h.waitCount(15)
	r.stop(t)
	if got := h.fake.Count(); got != 15 {
		t.Fatalf("%d events, want 15 (10 before, 5 after the gap)", got)
	}
	var from, to string
	if err := h.db.QueryRow(context.Background(), `SELECT slot_lost_from::text, slot_lost_to::text FROM census.runs
WHERE slot_lost_from IS NOT NULL`).Scan(&from, &to); err != nil {
		t.Fatalf("gap not recorded: %v", err)
	}
	if from != loss.From.String() {
		t.Fatalf("recorded gap from %s, want %s", from, loss.From)
	}
}

// A slot invalidated by max_slot_wal_keep_size (wal_status = lost) stops
// pgsignal with an error naming the lost range.
func TestSlotInvalidatedIsReported(t *testing.T) {
	h := newHarness(t, pgtest.Options{Conf: map[string]string{"max_slot_wal_keep_size": "1MB", "wal_keep_size": "0", "max_wal_size": "32MB", "min_wal_size": "32MB"}})
	h.exec(seedTable)
	cfg := h.config()
	r := h.start(cfg)
	h.insertBatch(0, 10)
	h.waitCount(10)
	r.stop(t)
	h.exec(`CREATE TABLE public.filler (payload text)`)
	var status string
	for i := 0; i < 20 && status != "lost"; i++ {
		h.exec(`INSERT INTO public.filler SELECT repeat(md5(g::text), 30) FROM generate_series(1, 20000) g`)
		h.exec(`SELECT pg_switch_wal()`)
		h.exec(`CHECKPOINT`)
		if err := h.db.QueryRow(context.Background(), `SELECT coalesce(wal_status, '') FROM pg_replication_slots WHERE slot_name = 'pgsignal'`).Scan(&status); err != nil {
			t.Fatal(err)
		}
	}
	if status != "lost" {
		t.Fatalf("could not invalidate the slot (wal_status %q)", status)
	}
	err := h.runExpectingError(Options{Config: cfg})
	var loss replication.SlotLoss
	if !errors.As(err, &loss) || loss.Dropped || !strings.Contains(err.Error(), "was invalidated (wal_status = lost") {
		t.Fatalf("error %v, want a SlotLoss for an invalidated slot", err)
	}
	t.Logf("reported: %v", err)
}
