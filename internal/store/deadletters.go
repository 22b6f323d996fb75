package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

// DeadLettersTable returns the quoted name of <schema>.dead_letters.
func DeadLettersTable(schema string) string { return pgx.Identifier{schema, "dead_letters"}.Sanitize() }

// DeadLetterRow is one row of <schema>.dead_letters as written: each part
// of the letter as jsonb text (Event, Row) or, when jsonb cannot hold it,
// as bytes (EventBytes, RowBytes), described by Storage (jsonb text).
type DeadLetterRow struct {
	Letter               cdc.DeadLetter
	Event, Row           *string
	EventBytes, RowBytes []byte
	Storage              *string
}

// InsertDeadLetters inserts rows for slot in one transaction; a letter
// stored already (same slot, position and key) is left as it is.
func InsertDeadLetters(ctx context.Context, pool *pgxpool.Pool, schema, slot string, rows []DeadLetterRow) error {
	table := DeadLettersTable(schema)
	q := `INSERT INTO ` + table + `
  (slot, commit_lsn, ordinal, table_name, idempotency_key, event, source_row, reason, attempts, first_failed_at, last_failed_at,
   event_bytes, source_row_bytes, storage)
VALUES ($1, $2::pg_lsn, $3, $4, $5::uuid, $6::text::jsonb, $7::text::jsonb, $8, $9, $10, $11, $12, $13, $14::text::jsonb)
ON CONFLICT (slot, commit_lsn, ordinal, ` + cdc.DeadLetterKeySQL + `) DO NOTHING`
	b := &pgx.Batch{}
	for _, r := range rows {
		l := r.Letter
		var key *string
		if l.IdempotencyKey != "" {
			key = &l.IdempotencyKey
		}
		b.Queue(q, slot, l.Pos.CommitLSN.String(), int64(l.Pos.Ordinal), l.Table, key,
			r.Event, r.Row, l.Reason, l.Attempts, l.FirstFailure, l.LastFailure,
			r.EventBytes, r.RowBytes, r.Storage)
	}
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("write dead letters to %s: %w", table, err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit it is a no-op
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write dead letters to %s: %w", table, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit dead letters to %s: %w", table, err)
	}
	return nil
}

// StoredDeadLetter is one row of <schema>.dead_letters as read.
type StoredDeadLetter struct {
	ID                          int64
	CommitLSN                   string
	Ordinal                     int64
	Table, IdempotencyKey       string
	Event, Row                  string // jsonb text, "" when stored as bytes or absent
	EventBytes, RowBytes        []byte
	Reason                      string
	Attempts                    int
	FirstFailedAt, LastFailedAt time.Time
	Storage                     *string
}

// ListDeadLetters returns slot's dead letters in position order: those with
// an id in ids when ids is not empty, and whose reason contains reason
// (case-insensitive) when it is not "".
func ListDeadLetters(ctx context.Context, pool *pgxpool.Pool, schema, slot string, ids []int64, reason string) ([]StoredDeadLetter, error) {
	q := `SELECT id, commit_lsn::text, ordinal, table_name, coalesce(idempotency_key::text, ''),
  coalesce(event::text, ''), coalesce(source_row::text, ''), reason, attempts, first_failed_at, last_failed_at,
  event_bytes, source_row_bytes, storage::text
FROM ` + DeadLettersTable(schema) + ` WHERE slot = $1`
	args := []any{slot}
	if len(ids) > 0 {
		args = append(args, ids)
		q += fmt.Sprintf(" AND id = ANY($%d)", len(args))
	}
	if reason != "" {
		args = append(args, "%"+reason+"%")
		q += fmt.Sprintf(" AND reason ILIKE $%d", len(args))
	}
	q += " ORDER BY commit_lsn, ordinal"
	rows, err := pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	defer rows.Close()
	var out []StoredDeadLetter
	for rows.Next() {
		var l StoredDeadLetter
		if err := rows.Scan(&l.ID, &l.CommitLSN, &l.Ordinal, &l.Table, &l.IdempotencyKey, &l.Event, &l.Row, &l.Reason,
			&l.Attempts, &l.FirstFailedAt, &l.LastFailedAt, &l.EventBytes, &l.RowBytes, &l.Storage); err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
		out = append(out, l)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// ResolveDeadLetters deletes slot's letters done and records a new failed
// attempt (with its reason, at at) of the letters in failed, in one
// transaction.
func ResolveDeadLetters(ctx context.Context, pool *pgxpool.Pool, schema, slot string, done []int64, failed map[int64]string, at time.Time) error {
	table := DeadLettersTable(schema)
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("update dead letters: %w", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // no-op after Commit
	if len(done) > 0 {
		if _, err := tx.Exec(ctx, `DELETE FROM `+table+` WHERE slot = $1 AND id = ANY($2)`, slot, done); err != nil {
			return fmt.Errorf("delete dead letters: %w", err)
		}
	}
	for id, reason := range failed {
		if _, err := tx.Exec(ctx, `UPDATE `+table+` SET attempts = attempts + 1, reason = $2, last_failed_at = $3 WHERE id = $1`, id, reason, at); err != nil {
			return fmt.Errorf("update dead letter %d: %w", id, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("update dead letters: %w", err)
	}
	return nil
}
