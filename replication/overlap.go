package replication

import (
	"context"
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
// filter the backfill selected on. A row changed since (updated, deleted
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
}

type overlapTable struct {
	key []string // primary key (or replica identity) column names
	sql string   // $1..$n the key values, $n+1 the xid
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
		ot.sql = `SELECT EXISTS (SELECT 1 FROM ` + pgcat.QuoteIdent(t.Table.Schema) + "." + pgcat.QuoteIdent(t.Table.Name) +
			` WHERE ` + strings.Join(where, " AND ") + `)`
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
	params := make([][]byte, 0, len(ot.key)+1)
	for _, k := range ot.key {
		i := ch.Rel.Index(k)
		if i < 0 || ch.Values[i] == nil {
			return false, nil
		}
		params = append(params, ch.Values[i])
	}
	params = append(params, []byte(strconv.FormatUint(uint64(xid), 10)))
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := o.pool.Acquire(qctx)
	if err != nil {
		return false, fmt.Errorf("backfill overlap: connect: %w", err)
	}
	defer conn.Release()
	res := conn.Conn().PgConn().ExecParams(qctx, ot.sql, params, nil, nil, nil).Read()
	if res.Err != nil {
		return false, fmt.Errorf("look up whether the backfill sent the row of %s inserted at %s: %w", ch.Rel.QualifiedName(), ch.Pos, res.Err)
	}
	covered := len(res.Rows) == 1 && string(res.Rows[0][0]) == "t"
	if covered {
		o.skipped.Add(1)
	}
	return covered, nil
}
