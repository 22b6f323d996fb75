package app

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// lastCommitEnd reads, through a second pgoutput slot created before the
// inserts, the end LSN of the last published transaction.
func (h *harness) lastCommitEnd(probe, publication string) cdc.LSN {
	h.t.Helper()
	rows, err := h.db.Query(context.Background(), `SELECT data FROM pg_logical_slot_peek_binary_changes($1, NULL, NULL,
  'proto_version', '1', 'publication_names', $2)`, probe, publication)
	if err != nil {
		h.t.Fatal(err)
	}
	defer rows.Close()
	var end cdc.LSN
	inserted := false // before PostgreSQL 15, empty transactions are sent too
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			h.t.Fatal(err)
		}
		switch {
		case len(data) > 0 && data[0] == 'B':
			inserted = false
		case len(data) > 0 && data[0] == 'I':
			inserted = true
		case len(data) >= 18 && data[0] == 'C' && inserted:
			end = cdc.LSN(binary.BigEndian.Uint64(data[10:18]))
		}
	}
	if err := rows.Err(); err != nil {
		h.t.Fatal(err)
	}
	return end
}

func (h *harness) insertBatch(from, n int) {
	h.t.Helper()
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data)
SELECT 'ev', 'user_' || (i % 17), jsonb_build_object('n', i) FROM generate_series($1::int, $2::int) AS i`, from, from+n-1)
}

// Stop pgsignal part-way, insert more while it is down, restart: every row
// arrives exactly once (no duplicate keys), and the slot is confirmed to the
// end of the last transaction.
func TestStreamStopAndRestart(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	h.exec(`SELECT pg_create_logical_replication_slot('probe', 'pgoutput')`)
	cfg := h.config()
	r := h.start(cfg)
	const txns, per = 40, 50
	for i := 0; i < txns/2; i++ {
		h.insertBatch(i*per, per)
	}
	h.waitCount(300)
	sum1 := r.stop(t)
	for i := txns / 2; i < txns; i++ {
		h.insertBatch(i*per, per)
	}
	r = h.start(cfg)
	h.waitCount(txns * per)
	sum2 := r.stop(t)

	events := h.fake.Events()
	seen := map[string]bool{}
	keys := map[string]bool{}
	for _, ev := range events {
		n := string(ev.Properties)
		if seen[n] || keys[ev.IdempotencyKey] {
			t.Fatalf("duplicate event %s key %s", n, ev.IdempotencyKey)
		}
		seen[n], keys[ev.IdempotencyKey] = true, true
	}
	for i := 0; i < txns*per; i++ {
		if !seen[fmt.Sprintf(`{"n": %d}`, i)] {
			t.Fatalf("row %d never delivered", i)
		}
	}
	if len(events) != txns*per || h.fake.Duplicates() != 0 {
		t.Fatalf("%d events, %d duplicates; want %d, 0", len(events), h.fake.Duplicates(), txns*per)
	}
	if sum1.Delivered+sum2.Delivered != txns*per {
		t.Fatalf("delivered %d + %d", sum1.Delivered, sum2.Delivered)
	}
	t.Logf("first run delivered %d, second %d", sum1.Delivered, sum2.Delivered)

	end := h.lastCommitEnd("probe", cfg.Source.Publication)
	confirmed, err := cdc.ParseLSN(h.slotConfirmed(cfg.Source.Slot))
	if err != nil {
		t.Fatal(err)
	}
	// The slot is confirmed exactly to the end of the last published
	// transaction, or past it only over WAL that holds no published change
	// (a keepalive's WAL end when idle).
	if confirmed < end {
		t.Fatalf("slot confirmed to %s, before the last commit end %s", confirmed, end)
	}
	if sum2.Confirmed != confirmed {
		t.Fatalf("pgsignal reports confirmed %s, slot has %s", sum2.Confirmed, confirmed)
	}
	var stored string
	if err := h.db.QueryRow(context.Background(), `SELECT commit_lsn::text || '#' || ordinal FROM census.sync_state WHERE slot = $1`, cfg.Source.Slot).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != sum2.Checkpoint.String() {
		t.Fatalf("stored watermark %s, run ended at %s", stored, sum2.Checkpoint)
	}
	// A third run has nothing to resend.
	r = h.start(cfg)
	sum3 := r.stop(t)
	if sum3.Received != 0 || h.fake.Count() != txns*per {
		t.Fatalf("third run received %d, fake has %d", sum3.Received, h.fake.Count())
	}
}

// The walsender is terminated while the stream is blocked on a full sink
// (an event is assigned but not yet queued): after the reconnect that event
// is queued when the server sends its row again, and nothing is lost or
// stuck.
func TestStreamReconnectWhileBlocked(t *testing.T) {
	// wal_sender_timeout 1s: status updates every 333 ms, so one is sent
	// to the dead connection while the stream is blocked.
	h := newHarness(t, pgtest.Options{Conf: map[string]string{"wal_sender_timeout": "1s"}})
	h.exec(seedTable)
	cfg := h.config()
	cfg.Sink.MaxPendingEvents = 100
	cfg.Sink.BatchSize = 10
	h.fake.SetFaults(onesignaltest.Faults{StallRate: 1, Stall: 2 * time.Second})
	r := h.start(cfg)
	h.insertBatch(0, 1000)
	time.Sleep(500 * time.Millisecond) // the queue is full; the stream waits
	pid := r.app.BackendPID()
	h.exec(`SELECT pg_terminate_backend($1)`, int32(pid))
	h.fake.SetFaults(onesignaltest.Faults{})
	h.waitCount(1000)
	sum := r.stop(t)
	if newPID := r.app.BackendPID(); newPID == pid {
		t.Fatalf("walsender %d was not replaced", pid)
	}
	if h.fake.Count() != 1000 || sum.Delivered != 1000 {
		t.Fatalf("accepted %d, delivered %d; want 1000", h.fake.Count(), sum.Delivered)
	}
	if n := h.logs.FilterMessage("resubmitting the event held across a reconnect").Len(); n != 1 {
		t.Fatalf("held event resubmitted %d times, want 1", n)
	}
	if got := h.slotConfirmed(cfg.Source.Slot); got != sum.Confirmed.String() {
		t.Fatalf("slot confirmed %s, pgsignal says %s", got, sum.Confirmed)
	}
}
