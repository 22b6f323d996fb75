package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/pgcat"
)

func queryPositionsTable(schema string) string {
	return pgcat.QuoteIdent(schema) + ".query_positions"
}

// QueryPositionsDDL creates <schema>.query_positions, the query method's
// position of each table (full mode): name is the instance's name
// (source.slot, though the method has no slot), position the JSON the
// poller keeps (its final watermark and the values seen above it).
func QueryPositionsDDL(schema string) string {
	return `CREATE TABLE IF NOT EXISTS ` + queryPositionsTable(schema) + ` (
  name       text NOT NULL,
  table_name text NOT NULL,
  position   jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (name, table_name)
)`
}

// EnsureQueryPositions creates <schema>.query_positions, tolerating a
// concurrent creator.
func EnsureQueryPositions(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	for attempt := 1; ; attempt++ {
		_, err := pool.Exec(ctx, QueryPositionsDDL(schema))
		if err != nil && attempt < 3 && pgcat.Is(err, pgcat.UniqueViolation, pgcat.DuplicateTable, pgcat.DuplicateObject) {
			continue
		}
		if err != nil {
			return fmt.Errorf("create %s: %w", queryPositionsTable(schema), err)
		}
		return nil
	}
}

// LoadQueryPositions returns the stored positions of name's tables, by
// "schema.table".
func LoadQueryPositions(ctx context.Context, pool *pgxpool.Pool, schema, name string) (map[string][]byte, error) {
	rows, err := pool.Query(ctx, `SELECT table_name, position::text FROM `+queryPositionsTable(schema)+` WHERE name = $1`, name)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", queryPositionsTable(schema), err)
	}
	out := map[string][]byte{}
	var table, pos string
	if _, err := pgx.ForEachRow(rows, []any{&table, &pos}, func() error {
		out[table] = []byte(pos)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read %s: %w", queryPositionsTable(schema), err)
	}
	return out, nil
}

// SaveQueryPositions stores the positions of name's tables (by
// "schema.table") in one transaction.
func SaveQueryPositions(ctx context.Context, pool *pgxpool.Pool, schema, name string, positions map[string][]byte) error {
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for table, pos := range positions {
			if _, err := tx.Exec(ctx, `INSERT INTO `+queryPositionsTable(schema)+` (name, table_name, position) VALUES ($1, $2, $3::jsonb)
ON CONFLICT (name, table_name) DO UPDATE SET position = excluded.position, updated_at = now()`, name, table, string(pos)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("save the query positions in %s: %w", queryPositionsTable(schema), err)
	}
	return nil
}
