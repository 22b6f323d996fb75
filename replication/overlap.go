package replication

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/pgcat"
)

// A redone backfill keeps the slot of the first attempt, which holds every
// change committed since that attempt's snapshot, and reads its windows in a
// newer snapshot (taken with a temporary slot). The stream then starts where
// the first attempt's snapshot ended, so nothing committed in between is
// lost; what it sends twice is the overlap: rows inserted into a window
// after the first snapshot and before the second, which the new snapshot
// (and so the backfill) holds and the slot streams too. The Overlap skips
// the streamed insert of such a row when the backfill provably sent it: the
// row version it inserted is, at the time of the check, still the table's
// live version (same key, xmin = the inserting transaction), so it was
// visible in the backfill's snapshot, and it passes the same window and row
// filter the backfill selected on, and its columns hold the values the
// stream carries (a transaction that inserted a key, deleted it and
// inserted it again leaves only its last version live: the earlier insert
// has other values and is streamed). At most one streamed insert per key
// and transaction is skipped: the backfill sent the live version once. A
// row changed since (updated, deleted
// after the backfill's snapshot) or inserted in a subtransaction cannot be
// proven to be in the backfill and is streamed as well: sent twice, under
// different keys.

// CreateTempSnapshot creates a temporary logical slot named name on conn
// and exports its snapshot, for a redone backfill: the slot is dropped when
// conn closes. Import the snapshot (OpenBackfill) before conn is used again.
func CreateTempSnapshot(ctx context.Context, conn *pgconn.PgConn, name string) (SnapshotSlot, error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, name, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT", Temporary: true})
	if err != nil {
		return SnapshotSlot{}, permanent("create the temporary replication slot %q whose snapshot a redone backfill reads (it needs one free slot in max_replication_slots besides pgsignal's): %w", name, err)
	}
	lsn, err := cdc.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return SnapshotSlot{}, fmt.Errorf("slot %q consistent point: %w", name, err)
	}
	return SnapshotSlot{Snapshot: res.SnapshotName, ConsistentPoint: lsn}, nil
}

// TempSlotName is the name of the temporary slot a redone backfill of slot
// takes its snapshot from.
func TempSlotName(slot string) string {
	const suffix = "_redo"
	if len(slot) > 63-len(suffix) {
		slot = slot[:63-len(suffix)]
	}
	return slot + suffix
}

// Overlap recognizes the inserts committed before a redone backfill's
// snapshot (Until) that the backfill already sent (see the comment above).
type Overlap struct {
	pool    *pgxpool.Pool
	until   cdc.LSN
	tables  map[TableRef]*overlapTable
	skipped atomic.Uint64

	// The keys of the transaction xid whose insert was skipped (the
	// changes of one transaction arrive together).
	xid  uint32
	seen map[string]bool
}

type overlapTable struct {
	key   []string // primary key (or replica identity) column names
	where []string // the window, row filter, key ($1..$n) and xmin ($n+1) conditions
}

// NewOverlap prepares the checks for tables, the backfill's tables and
// windows, against the backfill whose snapshot ends at until.
func NewOverlap(ctx context.Context, pool *pgxpool.Pool, tables []BackfillTable, until cdc.LSN) (*Overlap, error) {
	o := &Overlap{pool: pool, until: until, tables: map[TableRef]*overlapTable{}}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("backfill overlap: connect: %w", err)
	}
	defer conn.Release()
	for _, t := range tables {
		tc, err := ReadTableColumns(ctx, conn.Conn().PgConn(), t.Table)
		if err != nil {
			return nil, fmt.Errorf("backfill overlap %s: %w", t.Table, err)
		}
		cols := tc.Rel.Columns
		key := tc.PrimaryKey
		if len(key) == 0 {
			key = tc.ReplicaIdentity
		}
		col := tc.Rel.Index(t.Column)
		if len(key) == 0 || col < 0 {
			continue // cannot have been backfilled
		}
		cond, _, err := windowSQL(pgcat.QuoteIdent(t.Column), cols[col].TypeOID, t)
		if err != nil {
			continue
		}
		ot := &overlapTable{}
		where := []string{cond}
		if strings.TrimSpace(t.Where) != "" {
			where = append(where, "("+t.Where+")")
		}
		for i, k := range key {
			ot.key = append(ot.key, cols[k].Name)
			where = append(where, pgcat.QuoteIdent(cols[k].Name)+" = $"+strconv.Itoa(i+1))
		}
		where = append(where, "xmin = $"+strconv.Itoa(len(key)+1)+"::xid")
		ot.where = where
		o.tables[t.Table] = ot
	}
	return o, nil
}

// Until is the redone backfill's consistent point: inserts committed before
// it may have been backfilled.
func (o *Overlap) Until() cdc.LSN { return o.until }

// Skipped returns the number of streamed inserts found already backfilled.
func (o *Overlap) Skipped() uint64 { return o.skipped.Load() }

// Covered reports whether the backfill sent the row that ch (an insert
// committed before Until by the transaction xid) inserted.
func (o *Overlap) Covered(ctx context.Context, ch *Change, xid uint32) (bool, error) {
	if ch.Pos.CommitLSN >= o.until {
		return false, nil
	}
	ot := o.tables[ch.Rel.Key()]
	if ot == nil {
		return false, nil
	}
	params := make([][]byte, 0, len(ot.key)+1+len(ch.Values))
	var seen strings.Builder
	seen.WriteString(ch.Rel.QualifiedName())
	for _, k := range ot.key {
		i := ch.Rel.Index(k)
		if i < 0 || ch.Values[i] == nil {
			return false, nil
		}
		params = append(params, ch.Values[i])
		seen.WriteByte(0)
		seen.WriteString(strconv.Quote(string(ch.Values[i])))
	}
	if xid != o.xid {
		o.xid, o.seen = xid, nil
	}
	if o.seen[seen.String()] {
		return false, nil // the backfill sent the live version once
	}
	params = append(params, []byte(strconv.FormatUint(uint64(xid), 10)))
	// The live version holds the streamed values: each published column
	// compared as text after the streamed text is read as the column's
	// type, in this session (types without an equality operator too).
	where := append([]string(nil), ot.where...)
	oids := make([]uint32, len(params), len(params)+len(ch.Values))
	for i, c := range ch.Rel.Columns {
		if ch.Values[i] == nil {
			where = append(where, pgcat.QuoteIdent(c.Name)+" IS NULL")
			continue
		}
		params = append(params, ch.Values[i])
		oids = append(oids, c.TypeOID)
		where = append(where, "CAST("+pgcat.QuoteIdent(c.Name)+" AS text) = CAST($"+strconv.Itoa(len(params))+" AS text)")
	}
	sql := `SELECT EXISTS (SELECT 1 FROM ` + pgcat.QuoteIdent(ch.Rel.Namespace) + "." + pgcat.QuoteIdent(ch.Rel.Name) +
		` WHERE ` + strings.Join(where, " AND ") + `)`
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := o.pool.Acquire(qctx)
	if err != nil {
		return false, fmt.Errorf("backfill overlap: connect: %w", err)
	}
	defer conn.Release()
	res := conn.Conn().PgConn().ExecParams(qctx, sql, params, oids, nil, nil).Read()
	if res.Err != nil {
		var pgErr *pgconn.PgError
		if errors.As(res.Err, &pgErr) && (pgErr.Code == "42703" || pgErr.Code == "42P01") {
			// A column or the table is gone since: not provably sent.
			return false, nil
		}
		return false, fmt.Errorf("look up whether the backfill sent the row of %s inserted at %s: %w", ch.Rel.QualifiedName(), ch.Pos, res.Err)
	}
	covered := len(res.Rows) == 1 && string(res.Rows[0][0]) == "t"
	if covered {
		if o.seen == nil {
			o.seen = map[string]bool{}
		}
		o.seen[seen.String()] = true
		o.skipped.Add(1)
	}
	return covered, nil
}
