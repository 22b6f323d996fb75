package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// source.failover makes the slot a failover slot on PostgreSQL 17, and is a
// clear error on older servers.
func TestFailoverSlot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := pgtest.BinDirForVersion(ctx, 17)
	if err != nil {
		t.Skipf("PostgreSQL 17 binaries not available: %v", err)
	}
	h := newHarness(t, pgtest.Options{BinDir: bin})
	h.exec(seedTable)
	cfg := h.config()
	cfg.Source.Failover = true
	r := h.start(cfg)
	h.insertBatch(0, 10)
	h.waitCount(10)
	r.stop(t)
	var failover bool
	if err := h.db.QueryRow(ctx, `SELECT failover FROM pg_replication_slots WHERE slot_name = 'pgsignal'`).Scan(&failover); err != nil {
		t.Fatal(err)
	}
	if !failover {
		t.Fatal("the slot is not a failover slot")
	}

	old := newHarness(t, pgtest.Options{BinDir: "/usr/lib/postgresql/15/bin"})
	old.exec(seedTable)
	cfg = old.config()
	cfg.Source.Failover = true
	err = old.runExpectingError(Options{Config: cfg})
	if !strings.Contains(err.Error(), "source.failover needs PostgreSQL 17 or later") {
		t.Fatalf("error %v", err)
	}
}
