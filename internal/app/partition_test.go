package app

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/replication"
)

const partitionedDDL = `CREATE TABLE public.events (id bigint, user_id text, created_at timestamptz NOT NULL,
  PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
CREATE TABLE public.events_2025 PARTITION OF public.events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE public.events_2026 PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')`

func partitionedConfig(h *harness) *config.Config {
	cfg := h.config()
	cfg.Tables = []config.Table{{Schema: "public", Name: "events", EventNameValue: "ev", ExternalID: "user_id"}}
	return cfg
}

// A partitioned table streams: rows in every partition, and in a partition
// attached while pgsignal runs, become events; a restart starts again (at
// 37942e1 the rows were decoded as public.events_2026 and dropped, and the
// next start failed with 42710).
func TestPartitionedTable(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(partitionedDDL)
	cfg := partitionedConfig(h)
	r := h.start(cfg)
	h.exec(`INSERT INTO public.events VALUES (1, 'a', '2025-06-01'), (2, 'b', '2026-06-01')`)
	h.exec(`CREATE TABLE public.events_2027 (LIKE public.events INCLUDING ALL);
ALTER TABLE public.events ATTACH PARTITION public.events_2027 FOR VALUES FROM ('2027-01-01') TO ('2028-01-01')`)
	h.exec(`INSERT INTO public.events VALUES (3, 'c', '2027-06-01')`)
	h.exec(`INSERT INTO public.events_2026 VALUES (4, 'd', '2026-07-01')`)
	h.waitCount(4)
	sum := r.stop(t)
	if got := strings.Join(h.eventList(), " "); got != "ev|a ev|b ev|c ev|d" {
		t.Fatalf("events %q", got)
	}
	if sum.DeadLettered != 0 {
		t.Fatalf("dead letters %d", sum.DeadLettered)
	}
	var via bool
	if err := h.db.QueryRow(context.Background(), `SELECT pubviaroot FROM pg_publication WHERE pubname = 'pgsignal'`).Scan(&via); err != nil || !via {
		t.Fatalf("pubviaroot %v, %v", via, err)
	}
	// A second start finds the publication as it left it.
	r = h.start(cfg)
	h.exec(`INSERT INTO public.events VALUES (5, 'e', '2025-07-01')`)
	h.waitCount(5)
	r.stop(t)
	if got := strings.Join(h.eventList(), " "); got != "ev|a ev|b ev|c ev|d ev|e" {
		t.Fatalf("events after the restart %q", got)
	}
}

// A publication made without publish_via_partition_root (as pgsignal made
// it at 37942e1) is fixed in full mode, and refused with the statement in
// read-only mode.
func TestPartitionedExistingPublication(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(partitionedDDL)
	h.exec(`CREATE PUBLICATION pgsignal FOR TABLE public.events WITH (publish = 'insert')`)
	cfg := partitionedConfig(h)
	cfg.Source.Mode = config.ModeReadOnly
	cfg.Sink.DeadLetterFile = t.TempDir() + "/dl.jsonl"
	err := h.runErr(cfg)
	if !strings.Contains(err.Error(), `ALTER PUBLICATION "pgsignal" SET (publish_via_partition_root = true);`) {
		t.Fatalf("read-only error %v", err)
	}
	r := h.start(partitionedConfig(h))
	h.exec(`INSERT INTO public.events VALUES (1, 'a', '2025-06-01'), (2, 'b', '2026-06-01')`)
	h.waitCount(2)
	r.stop(t)
	if got := strings.Join(h.eventList(), " "); got != "ev|a ev|b" {
		t.Fatalf("events %q", got)
	}
}

// A backfill of a partitioned table reads every partition, and rows
// streamed after it arrive too.
func TestPartitionedBackfill(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	if v := h.serverVersion(); v < replication.MinPartitionRootVersion {
		t.Skipf("a partitioned table is published (publish_via_partition_root) from PostgreSQL 13 on, the server is %d: pgsignal refuses it before (replication.CheckPartitionVersion)", v)
	}
	h.exec(`CREATE TABLE public.events (id bigint, user_id text, created_at timestamptz NOT NULL,
  PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
CREATE TABLE public.events_old PARTITION OF public.events FOR VALUES FROM ('2000-01-01') TO ('2026-01-01');
CREATE TABLE public.events_new PARTITION OF public.events FOR VALUES FROM ('2026-01-01') TO ('2100-01-01');
INSERT INTO public.events VALUES (1, 'a', now() - interval '2 days'), (2, 'b', now() - interval '30 minutes'),
  (3, 'c', '2025-12-31 23:00+00')`)
	cfg := partitionedConfig(h)
	cfg.Tables[0].Timestamp = "created_at"
	cfg.Tables[0].Backfill = &config.Backfill{Since: 24 * time.Hour * 400}
	r := h.start(cfg)
	h.exec(`INSERT INTO public.events VALUES (4, 'd', now())`)
	h.waitCount(4)
	r.stop(t)
	if got := strings.Join(h.eventList(), " "); got != "ev|a ev|b ev|c ev|d" {
		t.Fatalf("events %q", got)
	}
}
