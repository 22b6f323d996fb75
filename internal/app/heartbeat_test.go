package app

import (
	"context"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// An idle event table does not pin WAL: with no events and 200 MB of WAL
// written to another table, the slot's confirmed_flush_lsn and restart_lsn
// follow the server, so the WAL it retains stays small.
func TestIdleTableDoesNotPinWAL(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	h.exec(`CREATE TABLE public.other (id bigserial, payload text)`)
	r := h.start(h.config())
	ctx := context.Background()
	var before int64
	if err := h.db.QueryRow(ctx, `SELECT pg_current_wal_lsn() - '0/0'::pg_lsn`).Scan(&before); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ { // ~200 MB of WAL in twelve transactions
		h.exec(`INSERT INTO public.other (payload) SELECT repeat(md5(g::text), 30) FROM generate_series(1, 17000) g`)
	}
	h.exec(`CHECKPOINT`) // logs a running-xacts record, which lets restart_lsn move
	var retained, unconfirmed int64
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := h.db.QueryRow(ctx, `SELECT pg_current_wal_lsn() - restart_lsn, pg_current_wal_lsn() - confirmed_flush_lsn
FROM pg_replication_slots WHERE slot_name = 'pgsignal'`).Scan(&retained, &unconfirmed)
		if err != nil {
			t.Fatal(err)
		}
		if retained < 16<<20 && unconfirmed < 1<<20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot still retains %d bytes (unconfirmed %d) 60 s after the writes", retained, unconfirmed)
		}
		time.Sleep(time.Second)
		h.exec(`CHECKPOINT`)
	}
	var total int64
	if err := h.db.QueryRow(ctx, `SELECT pg_current_wal_lsn() - '0/0'::pg_lsn`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	t.Logf("WAL written: %d MB; retained by the slot: %d kB; unconfirmed: %d bytes", (total-before)>>20, retained>>10, unconfirmed)
	if total-before < 150<<20 {
		t.Fatalf("only %d MB of WAL written", (total-before)>>20)
	}
	if sum := r.stop(t); sum.Received != 0 {
		t.Fatalf("received %d events from an idle table", sum.Received)
	}
}
