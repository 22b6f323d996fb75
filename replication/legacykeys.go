package replication

import (
	"context"
	"fmt"
	"github.com/pgsignal/pgsignal/internal/pgcat"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

// RecordLegacyKeys returns the commits of slot that keep the keys earlier
// versions gave them (cdc.LegacyKeys), from <schema>.legacy_keys (full
// mode). The first run of this version records them there: the server's
// WAL position now and timeline, the current timeline as IDENTIFY_SYSTEM
// reported it. Every commit an earlier version may have sent without
// confirming lies before that position, on that timeline or an ancestor.
// A record is never changed afterwards, so a commit's keys do not change
// from one run to the next. Instances starting together record once.
func RecordLegacyKeys(ctx context.Context, pool *pgxpool.Pool, schema, slot string, timeline uint32) (cdc.LegacyKeys, error) {
	s := pgcat.QuoteIdent(schema)
	if _, err := pool.Exec(ctx, `INSERT INTO `+s+`.legacy_keys (slot, before_lsn, timeline)
VALUES ($1, pg_current_wal_lsn(), $2) ON CONFLICT (slot) DO NOTHING`, slot, int64(timeline)); err != nil {
		return cdc.LegacyKeys{}, fmt.Errorf("record where this version first ran (legacy keys): %w", err)
	}
	var before string
	var tl int64
	if err := pool.QueryRow(ctx, `SELECT before_lsn::text, timeline FROM `+s+`.legacy_keys WHERE slot = $1`, slot).Scan(&before, &tl); err != nil {
		return cdc.LegacyKeys{}, fmt.Errorf("read where this version first ran (legacy keys): %w", err)
	}
	lsn, err := cdc.ParseLSN(before)
	if err != nil {
		return cdc.LegacyKeys{}, fmt.Errorf("%s.legacy_keys: %w", schema, err)
	}
	return cdc.LegacyKeys{Before: lsn, Timeline: uint32(tl)}, nil
}

// CurrentWALLSN returns the server's WAL position: where it writes, or on
// a standby where it has replayed to.
func CurrentWALLSN(ctx context.Context, pool *pgxpool.Pool) (cdc.LSN, error) {
	var s string
	if err := pool.QueryRow(ctx, `SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text`).Scan(&s); err != nil {
		return 0, fmt.Errorf("read the WAL position: %w", err)
	}
	return cdc.ParseLSN(s)
}
