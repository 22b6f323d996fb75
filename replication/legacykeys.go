package replication

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

// CurrentWALLSN returns the server's WAL position: where it writes, or on
// a standby where it has replayed to.
func CurrentWALLSN(ctx context.Context, pool *pgxpool.Pool) (cdc.LSN, error) {
	var s string
	if err := pool.QueryRow(ctx, `SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text`).Scan(&s); err != nil {
		return 0, fmt.Errorf("read the WAL position: %w", err)
	}
	return cdc.ParseLSN(s)
}
