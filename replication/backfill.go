package replication

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/mapper/codec"
)

// SnapshotSlot is a slot just created with an exported snapshot: the
// snapshot sees exactly the transactions committed before the slot's
// consistent point, and the slot streams exactly those committed after it.
type SnapshotSlot struct {
	// Snapshot is the exported snapshot's name, importable (SET TRANSACTION
	// SNAPSHOT) until the replication connection runs another command.
	Snapshot string
	// ConsistentPoint is the LSN streaming starts from.
	ConsistentPoint cdc.LSN
}

// CreateSlotWithSnapshot creates the logical pgoutput slot and exports its
// snapshot. Import the snapshot (OpenBackfill) before conn is used again or
// closed.
func CreateSlotWithSnapshot(ctx context.Context, conn *pgconn.PgConn, slot string) (SnapshotSlot, error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication, SnapshotAction: "EXPORT_SNAPSHOT"})
	if err != nil {
		return SnapshotSlot{}, slotCreateError(fmt.Sprintf("create replication slot %q with an exported snapshot for the backfill", slot), err)
	}
	lsn, err := cdc.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return SnapshotSlot{}, fmt.Errorf("slot %q consistent point: %w", slot, err)
	}
	return SnapshotSlot{Snapshot: res.SnapshotName, ConsistentPoint: lsn}, nil
}

// BackfillTable says which rows of a table a backfill sends: those whose
// Column is at or after From, and that pass Where.
type BackfillTable struct {
	Table TableRef
	// Column is a timestamptz, timestamp or date column, or an integer or
	// numeric column of epoch time in Unit ("s" or "ms").
	Column string
	From   time.Time
	// Zone is the IANA zone a timestamp or date Column is read in ("" is
	// UTC).
	Zone string
	Unit string
	// Where is the table's row filter ("" for none).
	Where string
}

// BackfillRow is one row read by a backfill, in window-column order.
type BackfillRow struct {
	// Change has Rel, Values and IdempotencyKey (from the table and the
	// primary key) set; the caller assigns Pos and CommitTime.
	Change *Change
	// Time is the row's window column as a point in time.
	Time time.Time
}

// Backfill reads the rows of a backfill from an imported snapshot, merged
// across tables in time order. It holds one connection and a read-only
// transaction until Close.
type Backfill struct {
	conn     *pgxpool.Conn
	systemID string
	tables   []*backfillCursor
	total    int64
}

type backfillCursor struct {
	name string // cursor
	rel  *Relation
	key  []int // primary key columns
	rows []BackfillRow
	next int
	done bool
	last time.Time // time of the last row fetched
}

// backfillFetch is the number of rows fetched from a cursor at once.
const backfillFetch = 1000

// OpenBackfill imports snapshot in a new repeatable-read, read-only
// transaction, counts the rows of each table's window and opens a cursor on
// them. Keys are derived from systemID, the table and its primary key (or
// replica identity index).
func OpenBackfill(ctx context.Context, pool *pgxpool.Pool, systemID, snapshot string, tables []BackfillTable) (b *Backfill, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("backfill: connect: %w", err)
	}
	b = &Backfill{conn: conn, systemID: systemID}
	defer func() {
		if err != nil {
			b.Close(context.WithoutCancel(ctx))
			b = nil
		}
	}()
	if _, err := conn.Exec(ctx, `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`); err != nil {
		return b, fmt.Errorf("backfill: begin: %w", err)
	}
	if _, err := conn.Exec(ctx, `SET TRANSACTION SNAPSHOT `+pgcat.QuoteLiteral(snapshot)); err != nil {
		return b, fmt.Errorf("backfill: import the slot's snapshot %s: %w", snapshot, err)
	}
	for i, t := range tables {
		c, n, err := openCursor(ctx, conn.Conn(), i, t)
		if err != nil {
			return b, fmt.Errorf("backfill %s: %w", t.Table, err)
		}
		b.tables = append(b.tables, c)
		b.total += n
	}
	return b, nil
}

// openCursor resolves t's columns and key, counts its window and declares
// its cursor.
func openCursor(ctx context.Context, conn *pgx.Conn, i int, t BackfillTable) (*backfillCursor, int64, error) {
	qname := pgcat.QuoteIdent(t.Table.Schema) + "." + pgcat.QuoteIdent(t.Table.Name)
	tc, err := ReadTableColumns(ctx, conn.PgConn(), t.Table)
	if err != nil {
		return nil, 0, err
	}
	rel, cols := tc.Rel, tc.Rel.Columns
	key := tc.PrimaryKey
	if len(key) == 0 {
		key = tc.ReplicaIdentity
	}
	if len(key) == 0 {
		return nil, 0, permanent("the table has no primary key (nor a replica identity index): a backfill derives each event's idempotency key from it so that a repeated backfill sends nothing twice; add a primary key, or remove backfill from the table")
	}
	col := rel.Index(t.Column)
	if col < 0 {
		return nil, 0, permanent("backfill column %q does not exist", t.Column)
	}
	cond, norm, err := windowSQL(pgcat.QuoteIdent(t.Column), cols[col].TypeOID, t)
	if err != nil {
		return nil, 0, err
	}
	where := cond
	if strings.TrimSpace(t.Where) != "" {
		where += " AND (" + t.Where + ")"
	}
	var n int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+qname+` WHERE `+where).Scan(&n); err != nil {
		return nil, 0, fmt.Errorf("count the rows of the window: %w", err)
	}
	list := make([]string, 0, len(cols)+1)
	for _, c := range cols {
		list = append(list, pgcat.QuoteIdent(c.Name))
	}
	list = append(list, "("+norm+")::timestamptz")
	order := []string{pgcat.QuoteIdent(t.Column)}
	for _, k := range key {
		order = append(order, pgcat.QuoteIdent(cols[k].Name))
	}
	name := "pgsignal_backfill_" + strconv.Itoa(i)
	if _, err := conn.Exec(ctx, `DECLARE `+name+` NO SCROLL CURSOR FOR SELECT `+strings.Join(list, ", ")+
		` FROM `+qname+` WHERE `+where+` ORDER BY `+strings.Join(order, ", ")); err != nil {
		return nil, 0, fmt.Errorf("open a cursor on the window: %w", err)
	}
	return &backfillCursor{name: name, rel: rel, key: key}, n, nil
}

// windowSQL returns the condition selecting a column's window and the
// expression of its value as a timestamptz, for the column's type.
func windowSQL(col string, typ uint32, t BackfillTable) (cond, norm string, err error) {
	start := "(" + pgcat.QuoteLiteral(t.From.UTC().Format(time.RFC3339Nano)) + "::timestamptz)"
	zone := t.Zone
	if zone == "" {
		zone = "UTC"
	}
	z := pgcat.QuoteLiteral(zone)
	// Values past the year 9999 (and infinity) have no event time; they are
	// left out, as the stream would dead-letter them.
	const end = "'10000-01-01 00:00:00+00'::timestamptz"
	switch typ {
	case pgtype.TimestamptzOID:
		return col + " >= " + start + " AND " + col + " < " + end, col, nil
	case pgtype.TimestampOID:
		return col + " >= (" + start + " AT TIME ZONE " + z + ") AND " + col + " < '10000-01-01'::timestamp", "(" + col + " AT TIME ZONE " + z + ")", nil
	case pgtype.DateOID:
		return col + " >= (" + start + " AT TIME ZONE " + z + ")::date AND " + col + " < '10000-01-01'::date", "(" + col + "::timestamp AT TIME ZONE " + z + ")", nil
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.NumericOID, pgtype.Float4OID, pgtype.Float8OID:
		switch t.Unit {
		case "s":
			return col + " >= extract(epoch FROM " + start + ") AND " + col + " < extract(epoch FROM " + end + ")", "to_timestamp(" + col + "::float8)", nil
		case "ms":
			return col + " >= extract(epoch FROM " + start + ") * 1000 AND " + col + " < extract(epoch FROM " + end + ") * 1000", "to_timestamp(" + col + "::float8 / 1000)", nil
		}
		return "", "", permanent("backfill column %s holds numbers: set the table's timestamp_unit to \"s\" or \"ms\" to read them as epoch time", col)
	}
	return "", "", permanent("backfill column %s is not a timestamptz, timestamp or date column (nor epoch time with timestamp_unit): the window is measured on it", col)
}

// Total returns the number of rows in the windows of all tables, counted in
// the snapshot.
func (b *Backfill) Total() int64 { return b.total }

// Next returns up to n more rows, in time order across the tables (rows of
// one table with the same time in key order); none at the end.
func (b *Backfill) Next(ctx context.Context, n int) ([]BackfillRow, error) {
	var out []BackfillRow
	for len(out) < n {
		var best *backfillCursor
		for _, c := range b.tables {
			if c.next >= len(c.rows) && !c.done {
				if err := b.fetch(ctx, c); err != nil {
					return nil, err
				}
			}
			if c.next < len(c.rows) && (best == nil || c.rows[c.next].Time.Before(best.rows[best.next].Time)) {
				best = c
			}
		}
		if best == nil {
			break
		}
		out = append(out, best.rows[best.next])
		best.rows[best.next] = BackfillRow{}
		best.next++
	}
	return out, nil
}

// fetch reads the next rows of c's cursor in text form (the stream's form).
func (b *Backfill) fetch(ctx context.Context, c *backfillCursor) error {
	res := b.conn.Conn().PgConn().ExecParams(ctx, `FETCH `+strconv.Itoa(backfillFetch)+` FROM `+c.name, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return fmt.Errorf("backfill %s: fetch: %w", c.rel.QualifiedName(), res.Err)
	}
	c.rows, c.next = c.rows[:0], 0
	if len(res.Rows) == 0 {
		c.done = true
		return nil
	}
	ncol := len(c.rel.Columns)
	keyVals := make([][]byte, len(c.key))
	for _, r := range res.Rows {
		if len(r) != ncol+1 {
			return fmt.Errorf("backfill %s: fetched %d columns, want %d", c.rel.QualifiedName(), len(r), ncol+1)
		}
		ts, err := codec.ParseTimestamp(pgtype.TimestamptzOID, r[ncol], time.UTC)
		if err != nil {
			// Cannot happen for the values the window selects; should it,
			// the row keeps its place after the previous one, and the
			// mapper says what is wrong with it.
			ts = c.last
		}
		c.last = ts
		vals := r[:ncol]
		for i, k := range c.key {
			keyVals[i] = vals[k]
		}
		c.rows = append(c.rows, BackfillRow{
			Change: &Change{Rel: c.rel, Values: vals, IdempotencyKey: cdc.BackfillKey(b.systemID, c.rel.QualifiedName(), keyVals)},
			Time:   ts,
		})
	}
	return nil
}

// Close ends the backfill's transaction and releases its connection.
func (b *Backfill) Close(ctx context.Context) {
	if b == nil || b.conn == nil {
		return
	}
	if _, err := b.conn.Exec(ctx, `ROLLBACK`); err != nil {
		// A connection in an unknown state must not go back to the pool.
		_ = b.conn.Conn().Close(ctx)
	}
	b.conn.Release()
	b.conn = nil
}
