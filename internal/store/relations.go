package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/pgcat"
)

func relationsTable(schema string) string { return pgcat.QuoteIdent(schema) + ".relations" }

// RelationsDDL creates <schema>.relations, the relations (OIDs) each
// configured table was bound to (full mode).
func RelationsDDL(schema string) string {
	return `CREATE TABLE IF NOT EXISTS ` + relationsTable(schema) + ` (
  slot        text NOT NULL,
  schema_name text NOT NULL,
  table_name  text NOT NULL,
  relid       oid NOT NULL,
  bound_at    timestamptz NOT NULL DEFAULT now(),
  resend_token text,
  PRIMARY KEY (slot, schema_name, table_name, relid)
)`
}

// EnsureRelations creates <schema>.relations, tolerating a concurrent
// creator.
func EnsureRelations(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	for attempt := 1; ; attempt++ {
		_, err := pool.Exec(ctx, RelationsDDL(schema))
		if err != nil && attempt < 3 && pgcat.Is(err, pgcat.UniqueViolation, pgcat.DuplicateTable, pgcat.DuplicateObject) {
			continue
		}
		if err != nil {
			return fmt.Errorf("create %s: %w", relationsTable(schema), err)
		}
		return nil
	}
}

// BoundRelation is one row of <schema>.relations.
type BoundRelation struct {
	Schema, Name string
	RelID        uint32
	// ResendToken is set when pgsignal added the relation to the
	// publication and resent its rows ("" otherwise).
	ResendToken string
}

// ReadRelations returns slot's bound relations, oldest binding first.
func ReadRelations(ctx context.Context, pool *pgxpool.Pool, schema, slot string) ([]BoundRelation, error) {
	rows, err := pool.Query(ctx, `SELECT schema_name, table_name, relid, coalesce(resend_token, '') FROM `+relationsTable(schema)+`
WHERE slot = $1 ORDER BY bound_at, relid`, slot)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", relationsTable(schema), err)
	}
	var out []BoundRelation
	var r BoundRelation
	if _, err := pgx.ForEachRow(rows, []any{&r.Schema, &r.Name, &r.RelID, &r.ResendToken}, func() error {
		out = append(out, r)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read %s: %w", relationsTable(schema), err)
	}
	return out, nil
}

// RecordRelation records that table schemaName.tableName of slot is bound
// to relid (kept when recorded already).
func RecordRelation(ctx context.Context, e pgcat.Execer, schema, slot, schemaName, tableName string, relid uint32) error {
	_, err := e.Exec(ctx, `INSERT INTO `+relationsTable(schema)+` (slot, schema_name, table_name, relid)
VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING`, slot, schemaName, tableName, relid)
	return err
}

// RecordResend records the binding with the token of a resend of its rows
// (replacing an older token), in the transaction that resends them.
func RecordResend(ctx context.Context, e pgcat.Execer, schema, slot, schemaName, tableName string, relid uint32, token string) error {
	_, err := e.Exec(ctx, `INSERT INTO `+relationsTable(schema)+` (slot, schema_name, table_name, relid, resend_token)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (slot, schema_name, table_name, relid) DO UPDATE SET resend_token = EXCLUDED.resend_token`,
		slot, schemaName, tableName, relid, token)
	return err
}

// HasResendToken reports whether slot's binding to relid holds token.
func HasResendToken(ctx context.Context, q pgcat.Querier, schema, slot string, relid uint32, token string) (bool, error) {
	var stored *string
	err := q.QueryRow(ctx, `SELECT resend_token FROM `+relationsTable(schema)+` WHERE slot = $1 AND relid = $2 AND resend_token = $3`,
		slot, relid, token).Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up a resend token: %w", err)
	}
	return true, nil
}

// ResendToken returns the resend token recorded for relation relid as the
// table schemaName.tableName of slot (by the instance that adopted it), ""
// when there is none.
func ResendToken(ctx context.Context, q pgcat.Querier, schema, slot, schemaName, tableName string, relid uint32) (string, error) {
	var token string
	err := q.QueryRow(ctx, `SELECT resend_token FROM `+relationsTable(schema)+`
WHERE slot = $1 AND schema_name = $2 AND table_name = $3 AND relid = $4 AND resend_token IS NOT NULL`,
		slot, schemaName, tableName, relid).Scan(&token)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", relationsTable(schema), err)
	}
	return token, nil
}
