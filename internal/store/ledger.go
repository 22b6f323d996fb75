package store

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/checkpoint"
	"github.com/pgsignal/pgsignal/internal/pgcat"
)

// deliveredDDL creates <schema>.delivered, the delivery ledger of full mode
// (see checkpoint.Ledger): one row per range, a few per lane, keyed by slot.
func deliveredDDL(s string) string {
	return `CREATE TABLE IF NOT EXISTS ` + s + `.delivered (
  slot         text NOT NULL,
  timeline     bigint NOT NULL,
  lanes        integer NOT NULL,
  lane         integer NOT NULL,
  from_lsn     pg_lsn NOT NULL,
  from_ordinal bigint NOT NULL,
  to_lsn       pg_lsn NOT NULL,
  to_ordinal   bigint NOT NULL,
  events       bigint NOT NULL,
  PRIMARY KEY (slot, timeline, lanes, lane, from_lsn, from_ordinal)
)`
}

// LedgerTable keeps slot's delivery ledger in <schema>.delivered (full
// mode). It implements checkpoint.LedgerStore.
type LedgerTable struct {
	Pool   *pgxpool.Pool
	Schema string
	Slot   string
}

var _ checkpoint.LedgerStore = (*LedgerTable)(nil)

func (l *LedgerTable) table() string { return pgx.Identifier{l.Schema, "delivered"}.Sanitize() }

// Load returns slot's ranges.
func (l *LedgerTable) Load(ctx context.Context) ([]checkpoint.Range, error) {
	rows, err := l.Pool.Query(ctx, `SELECT timeline, lanes, lane, from_lsn::text, from_ordinal, to_lsn::text, to_ordinal, events
FROM `+l.table()+` WHERE slot = $1 ORDER BY lane, from_lsn, from_ordinal`, l.Slot)
	if err != nil {
		return nil, fmt.Errorf("read the delivery ledger %s: %w", l.table(), err)
	}
	defer rows.Close()
	var out []checkpoint.Range
	for rows.Next() {
		var r checkpoint.Range
		var tl, fromOrd, toOrd int64
		var from, to string
		if err := rows.Scan(&tl, &r.Lanes, &r.Lane, &from, &fromOrd, &to, &toOrd, &r.Events); err != nil {
			return nil, fmt.Errorf("read the delivery ledger: %w", err)
		}
		fl, err1 := cdc.ParseLSN(from)
		tlsn, err2 := cdc.ParseLSN(to)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("read the delivery ledger: bad LSN %q or %q", from, to)
		}
		r.Timeline = uint32(tl)
		r.From = cdc.Position{CommitLSN: fl, Ordinal: uint32(fromOrd)}
		r.To = cdc.Position{CommitLSN: tlsn, Ordinal: uint32(toOrd)}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the delivery ledger: %w", err)
	}
	return out, nil
}

// Write replaces slot's ranges with ranges in one statement: rows no longer
// there are deleted, new ones inserted, changed ones updated in place.
func (l *LedgerTable) Write(ctx context.Context, ranges []checkpoint.Range) error {
	n := len(ranges)
	tl, lanes, lane := make([]int64, n), make([]int32, n), make([]int32, n)
	fromLSN, toLSN := make([]string, n), make([]string, n)
	fromOrd, toOrd, events := make([]int64, n), make([]int64, n), make([]int64, n)
	for i, r := range ranges {
		tl[i], lanes[i], lane[i] = int64(r.Timeline), int32(r.Lanes), int32(r.Lane)
		fromLSN[i], fromOrd[i] = r.From.CommitLSN.String(), int64(r.From.Ordinal)
		toLSN[i], toOrd[i] = r.To.CommitLSN.String(), int64(r.To.Ordinal)
		events[i] = r.Events
	}
	t := l.table()
	_, err := l.Pool.Exec(ctx, `WITH new AS (
  SELECT n.timeline, n.lanes, n.lane, n.from_lsn::pg_lsn AS from_lsn, n.from_ordinal, n.to_lsn::pg_lsn AS to_lsn, n.to_ordinal, n.events
  FROM unnest($2::bigint[], $3::int[], $4::int[], $5::text[], $6::bigint[], $7::text[], $8::bigint[], $9::bigint[])
    AS n(timeline, lanes, lane, from_lsn, from_ordinal, to_lsn, to_ordinal, events)
), gone AS (
  DELETE FROM `+t+` d WHERE d.slot = $1
    AND (d.timeline, d.lanes, d.lane, d.from_lsn, d.from_ordinal) NOT IN (SELECT timeline, lanes, lane, from_lsn, from_ordinal FROM new)
)
INSERT INTO `+t+` AS d (slot, timeline, lanes, lane, from_lsn, from_ordinal, to_lsn, to_ordinal, events)
SELECT $1, * FROM new
ON CONFLICT (slot, timeline, lanes, lane, from_lsn, from_ordinal) DO UPDATE
SET to_lsn = excluded.to_lsn, to_ordinal = excluded.to_ordinal, events = excluded.events
WHERE (d.to_lsn, d.to_ordinal, d.events) IS DISTINCT FROM (excluded.to_lsn, excluded.to_ordinal, excluded.events)`,
		l.Slot, tl, lanes, lane, fromLSN, fromOrd, toLSN, toOrd, events)
	if err != nil {
		return fmt.Errorf("write the delivery ledger %s: %w", t, err)
	}
	return nil
}

// ReadLedgerSize returns the size of slot's ledger, or nil when the schema
// is from before the ledger.
func ReadLedgerSize(ctx context.Context, pool *pgxpool.Pool, schema, slot string) (*checkpoint.LedgerSize, error) {
	ls := &checkpoint.LedgerSize{}
	err := pool.QueryRow(ctx, `SELECT count(*), coalesce(sum(events), 0)::bigint FROM `+pgx.Identifier{schema, "delivered"}.Sanitize()+` WHERE slot = $1`, slot).Scan(&ls.Ranges, &ls.Events)
	switch {
	case pgcat.Is(err, pgcat.UndefinedTable):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read the delivery ledger's size: %w", err)
	}
	err = pool.QueryRow(ctx, `SELECT coalesce((SELECT ledger_skipped FROM `+runsTable(schema)+` WHERE slot = $1 ORDER BY id DESC LIMIT 1), -1)`, slot).Scan(&ls.SkippedOnLastStart)
	switch {
	case pgcat.Is(err, pgcat.UndefinedColumn):
		ls.SkippedOnLastStart = -1
	case err != nil:
		return nil, fmt.Errorf("read the events skipped on the last start: %w", err)
	}
	return ls, nil
}

// RecordLedgerSkipped records in run id's row the events it did not send
// because the ledger had them.
func RecordLedgerSkipped(ctx context.Context, pool *pgxpool.Pool, schema string, id int64, skipped uint64) error {
	_, err := pool.Exec(ctx, `UPDATE `+runsTable(schema)+` SET ledger_skipped = $2 WHERE id = $1`, id, int64(skipped))
	if err != nil {
		return fmt.Errorf("record the events the ledger skipped: %w", err)
	}
	return nil
}
