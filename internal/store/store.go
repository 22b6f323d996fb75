package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/pgcat"
)

// SchemaDDL returns the statements that create pgsignal's bookkeeping schema
// (full mode). They are idempotent.
func SchemaDDL(schema string) []string {
	s := pgcat.QuoteIdent(schema)
	return []string{
		`CREATE SCHEMA IF NOT EXISTS ` + s,
		`CREATE TABLE IF NOT EXISTS ` + s + `.sync_state (
  slot          text PRIMARY KEY,
  commit_lsn    pg_lsn NOT NULL,
  ordinal       bigint NOT NULL,
  confirmed_lsn pg_lsn NOT NULL,
  updated_at    timestamptz NOT NULL DEFAULT now()
)`,
		`CREATE TABLE IF NOT EXISTS ` + s + `.dead_letters (
  id              bigserial PRIMARY KEY,
  slot            text NOT NULL,
  commit_lsn      pg_lsn NOT NULL,
  ordinal         bigint NOT NULL,
  table_name      text NOT NULL,
  idempotency_key uuid,
  event           jsonb,
  source_row      jsonb,
  reason          text NOT NULL,
  attempts        integer NOT NULL DEFAULT 0,
  first_failed_at timestamptz NOT NULL DEFAULT now(),
  last_failed_at  timestamptz NOT NULL DEFAULT now(),
  created_at      timestamptz NOT NULL DEFAULT now(),
  event_bytes      bytea,
  source_row_bytes bytea,
  storage          jsonb
)`,
		// One letter per event: a row a transform turned into several
		// events has one position and several keys. The index comes before
		// the old constraint goes (ON CONFLICT always has an arbiter), and
		// each statement runs (and locks the table) only when needed.
		`DO $$ BEGIN
  IF to_regclass(` + pgcat.QuoteLiteral(s+".dead_letters_event") + `) IS NULL THEN
    PERFORM set_config('lock_timeout', '10s', true);
    CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_event ON ` + s + `.dead_letters (slot, commit_lsn, ordinal, ` + cdc.DeadLetterKeySQL + `);
  END IF;
  IF EXISTS (SELECT 1 FROM pg_constraint WHERE conrelid = to_regclass(` + pgcat.QuoteLiteral(s+".dead_letters") + `) AND conname = 'dead_letters_slot_commit_lsn_ordinal_key') THEN
    PERFORM set_config('lock_timeout', '10s', true);
    ALTER TABLE ` + s + `.dead_letters DROP CONSTRAINT dead_letters_slot_commit_lsn_ordinal_key;
  END IF;
END $$`,
		// An event or row jsonb cannot hold (\u0000, a lone surrogate) is
		// kept as bytes, described in storage (sink.Storage).
		`DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(` + pgcat.QuoteLiteral(s+".dead_letters") + `) AND attname = 'storage' AND NOT attisdropped) THEN
    PERFORM set_config('lock_timeout', '10s', true);
    ALTER TABLE ` + s + `.dead_letters ADD COLUMN IF NOT EXISTS event_bytes bytea, ADD COLUMN IF NOT EXISTS source_row_bytes bytea, ADD COLUMN IF NOT EXISTS storage jsonb;
  END IF;
END $$`,
		`CREATE TABLE IF NOT EXISTS ` + s + `.runs (
  id               bigserial PRIMARY KEY,
  slot             text NOT NULL,
  started_at       timestamptz NOT NULL DEFAULT now(),
  stopped_at       timestamptz,
  events_delivered bigint NOT NULL DEFAULT 0,
  dead_lettered    bigint NOT NULL DEFAULT 0,
  last_position    text,
  stop_reason      text
)`,
		`ALTER TABLE ` + s + `.runs ADD COLUMN IF NOT EXISTS slot_lost_from pg_lsn`,
		`ALTER TABLE ` + s + `.runs ADD COLUMN IF NOT EXISTS slot_lost_to pg_lsn`,
		`ALTER TABLE ` + s + `.runs ADD COLUMN IF NOT EXISTS version text`,
		// The sink's backlog as of the run's last update (see UpdateRunBacklog).
		`ALTER TABLE ` + s + `.runs ADD COLUMN IF NOT EXISTS oldest_unsent_at timestamptz`,
		`ALTER TABLE ` + s + `.runs ADD COLUMN IF NOT EXISTS stale_events bigint NOT NULL DEFAULT 0`,
		`ALTER TABLE ` + s + `.runs ADD COLUMN IF NOT EXISTS backlog_at timestamptz`,
		`CREATE TABLE IF NOT EXISTS ` + s + `.backfills (
  slot        text PRIMARY KEY,
  state       text NOT NULL,
  tables      text[] NOT NULL,
  rows_total  bigint NOT NULL DEFAULT 0,
  rows_done   bigint NOT NULL DEFAULT 0,
  windows     jsonb NOT NULL DEFAULT '{}',
  started_at  timestamptz NOT NULL DEFAULT now(),
  finished_at timestamptz
)`,
		`ALTER TABLE ` + s + `.backfills ADD COLUMN IF NOT EXISTS windows jsonb NOT NULL DEFAULT '{}'`,
		// A redone backfill's snapshot LSN: streamed inserts committed
		// before it may have been backfilled (see Overlap).
		`ALTER TABLE ` + s + `.backfills ADD COLUMN IF NOT EXISTS overlap_until pg_lsn`,
		// Where and on which timeline this version first ran for a slot:
		// earlier commits keep their earlier keys (see RecordLegacyKeys).
		`CREATE TABLE IF NOT EXISTS ` + s + `.legacy_keys (
  slot        text PRIMARY KEY,
  before_lsn  pg_lsn NOT NULL,
  timeline    bigint NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT now()
)`,
		// The delivery ledger (checkpoint.Ledger), and how much of it the
		// last start skipped.
		deliveredDDL(s),
		`ALTER TABLE ` + s + `.runs ADD COLUMN IF NOT EXISTS ledger_skipped bigint`,
	}
}

// EnsureSchema creates the bookkeeping schema and its tables when missing.
//
// Instances started at the same moment (high availability) take turns: the
// statements run in one transaction under an advisory lock, so the second
// finds what the first created instead of failing on a duplicate catalog
// entry. A creator that does not take the lock (an older pgsignal, a
// person) can still race it: a duplicate (23505, 42P07, 42710) is retried,
// and the next round finds the objects; so are a deadlock and a lock
// timeout (a table in use by a running instance).
func EnsureSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	ctx, cancel := context.WithTimeout(ctx, schemaTimeout)
	defer cancel()
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return ensureSchema(ctx, tx, schema) })
		if err == nil {
			return nil
		}
		var pgErr *pgconn.PgError
		if attempt < schemaAttempts && errors.As(err, &pgErr) && ctx.Err() == nil {
			switch pgErr.Code {
			case pgcat.UniqueViolation, pgcat.DuplicateTable, pgcat.DuplicateObject: // created concurrently
				continue
			case pgcat.DeadlockDetected, pgcat.LockNotAvailable: // deadlock, lock timeout
				select {
				case <-time.After(time.Duration(attempt) * 200 * time.Millisecond):
				case <-ctx.Done():
				}
				continue
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("create bookkeeping schema %q: not done within %s (another session holds a lock on it?): %w", schema, schemaTimeout, err)
		}
		return err
	}
}

const (
	// schemaTimeout bounds EnsureSchema, waits for the lock included.
	schemaTimeout = 2 * time.Minute
	// schemaAttempts is how many times EnsureSchema tries when it finds
	// an object created concurrently by a session that does not lock.
	schemaAttempts = 5
	// schemaLockClass is the first key of the advisory lock that
	// serializes EnsureSchema ("pgsg"); the second is the schema name's
	// hash.
	schemaLockClass = 0x70677367
)

// ensureSchema runs the bookkeeping DDL in tx under the advisory lock.
func ensureSchema(ctx context.Context, tx pgx.Tx, schema string) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, schemaLockClass, schema); err != nil {
		return fmt.Errorf("lock the bookkeeping schema %q for creation: %w", schema, err)
	}
	// CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
	// schema exists: skip it then, so that USAGE and CREATE on an existing
	// schema are enough.
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)`, schema).Scan(&exists); err != nil {
		return fmt.Errorf("look up bookkeeping schema %q: %w", schema, err)
	}
	stmts := SchemaDDL(schema)
	if exists {
		stmts = stmts[1:]
	}
	for _, stmt := range stmts {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("create bookkeeping schema %q: %w", schema, err)
		}
	}
	return nil
}

// TableStore is the full-mode checkpoint store (checkpoint.Store): one row per slot in <schema>.sync_state.
type TableStore struct {
	Pool   *pgxpool.Pool
	Schema string
	Slot   string
}

// Load implements checkpoint.Store.
func (s *TableStore) Load(ctx context.Context) (cdc.Position, cdc.LSN, error) {
	var commit, confirmed string
	var ord int64
	err := s.Pool.QueryRow(ctx,
		`SELECT commit_lsn::text, ordinal, confirmed_lsn::text FROM `+pgcat.QuoteIdent(s.Schema)+`.sync_state WHERE slot = $1`,
		s.Slot).Scan(&commit, &ord, &confirmed)
	if errors.Is(err, pgx.ErrNoRows) {
		return cdc.Position{}, 0, nil
	}
	if err != nil {
		return cdc.Position{}, 0, fmt.Errorf("load checkpoint: %w", err)
	}
	c, err := cdc.ParseLSN(commit)
	if err != nil {
		return cdc.Position{}, 0, err
	}
	f, err := cdc.ParseLSN(confirmed)
	if err != nil {
		return cdc.Position{}, 0, err
	}
	return cdc.Position{CommitLSN: c, Ordinal: uint32(ord)}, f, nil
}

// Save implements checkpoint.Store.
func (s *TableStore) Save(ctx context.Context, pos cdc.Position, confirmed cdc.LSN) error {
	_, err := s.Pool.Exec(ctx, `INSERT INTO `+pgcat.QuoteIdent(s.Schema)+`.sync_state AS s (slot, commit_lsn, ordinal, confirmed_lsn, updated_at)
VALUES ($1, $2::pg_lsn, $3, $4::pg_lsn, now())
ON CONFLICT (slot) DO UPDATE SET commit_lsn = excluded.commit_lsn, ordinal = excluded.ordinal,
  confirmed_lsn = excluded.confirmed_lsn, updated_at = excluded.updated_at`,
		s.Slot, pos.CommitLSN.String(), int64(pos.Ordinal), confirmed.String())
	if err != nil {
		return fmt.Errorf("save checkpoint %s: %w", pos, err)
	}
	return nil
}

// Backfill states in <schema>.backfills.
const (
	// BackfillRunning: the backfill started and has not finished; a restart
	// redoes it with a new slot and snapshot.
	BackfillRunning = "running"
	// BackfillDone: every backfilled event was handled.
	BackfillDone = "done"
)

// BackfillState returns the state of slot's backfill ("" when none ran)
// and the start of each table's window ("schema.table" → time) as first
// recorded: a redo measures the same windows.
func BackfillState(ctx context.Context, pool *pgxpool.Pool, schema, slot string) (string, map[string]time.Time, error) {
	var state string
	var windows map[string]time.Time
	err := pool.QueryRow(ctx, `SELECT state, windows FROM `+pgcat.QuoteIdent(schema)+`.backfills WHERE slot = $1`, slot).Scan(&state, &windows)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, nil
	}
	if err != nil {
		return "", nil, fmt.Errorf("read backfill state: %w", err)
	}
	return state, windows, nil
}

// StartBackfill records that slot's backfill of tables, with the windows
// starting at windows, starts (or restarts), and forgets the slot's
// checkpoint: the slot is about to be created anew. It is recorded before
// the slot exists, so that a failure at any later point is redone.
func StartBackfill(ctx context.Context, pool *pgxpool.Pool, schema, slot string, tables []string, windows map[string]time.Time) error {
	s := pgcat.QuoteIdent(schema)
	_, err := pool.Exec(ctx, `WITH forget AS (DELETE FROM `+s+`.sync_state WHERE slot = $1)
INSERT INTO `+s+`.backfills AS b (slot, state, tables, windows, rows_total, rows_done, started_at, finished_at)
VALUES ($1, $2, $3, $4, 0, 0, now(), NULL)
ON CONFLICT (slot) DO UPDATE SET state = excluded.state, tables = excluded.tables, windows = excluded.windows,
  rows_total = 0, rows_done = 0, started_at = excluded.started_at, finished_at = NULL`, slot, BackfillRunning, tables, windows)
	if err != nil {
		return fmt.Errorf("record the backfill's start: %w", err)
	}
	return nil
}

// SetBackfillTotal records the number of rows in slot's backfill windows.
func SetBackfillTotal(ctx context.Context, pool *pgxpool.Pool, schema, slot string, total int64) error {
	if _, err := pool.Exec(ctx, `UPDATE `+pgcat.QuoteIdent(schema)+`.backfills SET rows_total = $2 WHERE slot = $1`, slot, total); err != nil {
		return fmt.Errorf("record the backfill's size: %w", err)
	}
	return nil
}

// ProgressBackfill records how many rows of slot's backfill are handled;
// done marks it finished.
func ProgressBackfill(ctx context.Context, pool *pgxpool.Pool, schema, slot string, rows int64, done bool) error {
	state := BackfillRunning
	if done {
		state = BackfillDone
	}
	_, err := pool.Exec(ctx, `UPDATE `+pgcat.QuoteIdent(schema)+`.backfills SET rows_done = $2, state = $3,
  finished_at = CASE WHEN $3 = '`+BackfillDone+`' THEN now() END WHERE slot = $1`, slot, rows, state)
	if err != nil {
		return fmt.Errorf("record the backfill's progress: %w", err)
	}
	return nil
}

// SetBackfillOverlap records the consistent point of a redone backfill's
// snapshot (zero: not a redo, no overlap), before the backfill sends
// anything, so that every later start knows which streamed inserts it may
// have sent.
func SetBackfillOverlap(ctx context.Context, pool *pgxpool.Pool, schema, slot string, until cdc.LSN) error {
	var v *string
	if until > 0 {
		s := until.String()
		v = &s
	}
	if _, err := pool.Exec(ctx, `UPDATE `+pgcat.QuoteIdent(schema)+`.backfills SET overlap_until = $2::pg_lsn WHERE slot = $1`, slot, v); err != nil {
		return fmt.Errorf("record the redone backfill's snapshot: %w", err)
	}
	return nil
}

// BackfillOverlap returns the consistent point recorded by
// SetBackfillOverlap (zero when none) and the windows of the backfill.
func BackfillOverlap(ctx context.Context, pool *pgxpool.Pool, schema, slot string) (cdc.LSN, map[string]time.Time, error) {
	var until *string
	var windows map[string]time.Time
	err := pool.QueryRow(ctx, `SELECT overlap_until::text, windows FROM `+pgcat.QuoteIdent(schema)+`.backfills WHERE slot = $1`, slot).Scan(&until, &windows)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && until == nil) {
		return 0, nil, nil
	}
	if err != nil {
		return 0, nil, fmt.Errorf("read the redone backfill's snapshot: %w", err)
	}
	lsn, err := cdc.ParseLSN(*until)
	if err != nil {
		return 0, nil, err
	}
	return lsn, windows, nil
}
