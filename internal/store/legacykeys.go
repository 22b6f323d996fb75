package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/pgcat"
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
