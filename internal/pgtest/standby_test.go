package pgtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// standbyBinDirs returns the bin directories TestStandby runs against: the
// default one (Debian's 15 on the development machine, or
// $PGSIGNAL_PG_VERSION's) and PostgreSQL 17 from npm.
func standbyBinDirs(t *testing.T) map[string]string {
	t.Helper()
	def, err := resolveBinDir(t.Context(), Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]string{"default": def}
	if !testing.Short() {
		npm17, err := NPMBinDir(t.Context(), 17)
		if err != nil {
			t.Fatal(err)
		}
		dirs["npm-17"] = npm17
	}
	return dirs
}

// count returns SELECT count(*) FROM tbl on s.
func count(t *testing.T, s *Server, tbl string) string {
	t.Helper()
	return query(t, s.DSN(""), "SELECT count(*)::text FROM "+tbl)
}

func TestStandby(t *testing.T) {
	t.Parallel()
	for name, binDir := range standbyBinDirs(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			primary := New(t, Options{BinDir: binDir, Conf: map[string]string{"max_connections": "120"}})
			if primary.Version() < minStandbyVersion {
				t.Skipf("standbys need PostgreSQL %d+", minStandbyVersion)
			}
			if err := primary.Exec(ctx, `CREATE TABLE t (i int); INSERT INTO t SELECT generate_series(1, 10)`); err != nil {
				t.Fatal(err)
			}
			standby := NewStandby(t, primary, Options{})

			if standby.Port() == primary.Port() || standby.DataDir == primary.DataDir {
				t.Fatalf("standby shares port %d or data dir %s with the primary", standby.Port(), standby.DataDir)
			}
			if standby.Version() != primary.Version() || standby.BinDir != primary.BinDir || standby.Primary() != primary {
				t.Errorf("standby: version %d, bin %s, primary %p; want %d, %s, %p",
					standby.Version(), standby.BinDir, standby.Primary(), primary.Version(), primary.BinDir, primary)
			}
			settings := map[string]string{
				"hot_standby":          "on",
				"hot_standby_feedback": "on",
				"max_connections":      "120", // inherited from the primary's Conf
				"port":                 fmt.Sprint(standby.Port()),
				"wal_level":            "logical",
			}
			if primary.Version() >= signalStandbyVersion { // recovery.conf before 12
				settings["primary_slot_name"] = standby.PrimarySlot()
			}
			for name, want := range settings {
				if got := query(t, standby.DSN(""), "SHOW "+name); got != want {
					t.Errorf("standby: SHOW %s = %q, want %q", name, got, want)
				}
			}
			if got := query(t, standby.DSN(""), "SELECT pg_is_in_recovery()::text"); got != "true" {
				t.Errorf("standby: pg_is_in_recovery() = %s", got)
			}
			if got := query(t, primary.DSN(""), `SELECT slot_type || ' ' || active::text FROM pg_replication_slots WHERE slot_name = $1`, standby.PrimarySlot()); got != "physical true" {
				t.Errorf("primary: slot %s = %q, want \"physical true\"", standby.PrimarySlot(), got)
			}
			if got := count(t, standby, "t"); got != "10" {
				t.Errorf("standby: %s rows from the base backup, want 10", got)
			}

			// Written on the primary, visible on the standby.
			if err := primary.Exec(ctx, `INSERT INTO t SELECT generate_series(11, 100)`); err != nil {
				t.Fatal(err)
			}
			lsn, err := primary.CurrentLSN(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := standby.WaitReplay(ctx, lsn); err != nil {
				t.Fatal(err)
			}
			if got := count(t, standby, "t"); got != "100" {
				t.Errorf("standby after WaitReplay: %s rows, want 100", got)
			}
			if err := primary.Exec(ctx, `CREATE TABLE u AS SELECT 1 AS x`); err != nil {
				t.Fatal(err)
			}
			if err := standby.CatchUp(ctx); err != nil {
				t.Fatal(err)
			}
			if got := count(t, standby, "u"); got != "1" {
				t.Errorf("standby after CatchUp: %s rows in u, want 1", got)
			}
			var pgErr *pgconn.PgError
			if err := standby.Exec(ctx, `INSERT INTO t VALUES (0)`); !errors.As(err, &pgErr) || pgErr.Code != "25006" {
				t.Errorf("insert on the standby: %v, want SQLSTATE 25006 (read-only transaction)", err)
			}

			if primary.Version() >= 16 {
				logicalSlotOnStandby(t, primary, standby)
			}

			if err := standby.Promote(ctx); err != nil {
				t.Fatal(err)
			}
			if got := query(t, standby.DSN(""), "SELECT pg_is_in_recovery()::text"); got != "false" {
				t.Errorf("promoted: pg_is_in_recovery() = %s", got)
			}
			if err := standby.Exec(ctx, `INSERT INTO t VALUES (0)`); err != nil {
				t.Errorf("insert after Promote: %v", err)
			}
			if err := standby.Stop(); err != nil {
				t.Fatal(err)
			}
			if got := query(t, primary.DSN(""), `SELECT count(*)::text FROM pg_replication_slots WHERE slot_name = $1`, standby.PrimarySlot()); got != "0" {
				t.Errorf("primary: slot %s left after the standby stopped", standby.PrimarySlot())
			}
		})
	}
}

// logicalSlotOnStandby creates a logical slot on standby (PostgreSQL 16+)
// and decodes a row written on the primary. Creating the slot waits for a
// running-xacts record from the primary, which pg_log_standby_snapshot()
// writes at once instead of at the next bgwriter round (up to 15 s, and
// only when the primary is busy).
func logicalSlotOnStandby(t *testing.T, primary, standby *Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	created := make(chan error, 1)
	go func() {
		created <- standby.Exec(ctx, `SELECT pg_create_logical_replication_slot('on_standby', 'test_decoding')`)
	}()
	for done := false; !done; {
		select {
		case err := <-created:
			if err != nil {
				t.Fatalf("create a logical slot on the standby: %v", err)
			}
			done = true
		case <-time.After(100 * time.Millisecond):
			if err := primary.Exec(ctx, `SELECT pg_log_standby_snapshot()`); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := primary.Exec(ctx, `INSERT INTO t VALUES (4242)`); err != nil {
		t.Fatal(err)
	}
	if err := standby.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	got := query(t, standby.DSN(""), `SELECT coalesce(string_agg(data, E'\n'), '') FROM pg_logical_slot_get_changes('on_standby', NULL, NULL)`)
	if !strings.Contains(got, "public.t: INSERT: i[integer]:4242") {
		t.Errorf("decoded on the standby:\n%s\nwant the insert of 4242", got)
	}
	if err := standby.Exec(ctx, `SELECT pg_drop_replication_slot('on_standby')`); err != nil {
		t.Error(err)
	}
}

func TestStandbyErrors(t *testing.T) {
	t.Parallel()
	if _, err := StartStandby(t.Context(), nil, Options{}); err == nil || !strings.Contains(err.Error(), "no primary") {
		t.Errorf("StartStandby(nil) = %v, want \"no primary\"", err)
	}
	primary, err := Start(t.Context(), Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	if err := primary.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := StartStandby(t.Context(), primary, Options{}); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("StartStandby(stopped primary) = %v, want \"not running\"", err)
	}
	if err := (&Server{port: 1}).CatchUp(t.Context()); err == nil || !strings.Contains(err.Error(), "not a standby") {
		t.Errorf("CatchUp on a server without primary = %v", err)
	}
}
