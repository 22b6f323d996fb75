package check

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgcat"
)

// The items of the query method (source.method: query). pgsignal polls the
// tables with SELECT through their cursor column, so instead of wal_level,
// the slot, the publication and the REPLICATION right, check verifies per
// table the cursor column (an integer filled from a sequence or identity,
// covered by a btree index), the primary key the events' keys come from,
// and says whether the server is a standby and how far it lags.

// Per-table item prefixes of the query method.
const (
	cursorPrefix = "cursor "
	keyPrefix    = "primary key "
	// versionQuery is the oldest server the query method reads (9.6).
	versionQuery = 90600
)

// queryMethod reports whether the configuration uses the query method.
func (r *runner) queryMethod() bool { return r.cfg.Source.Method == config.MethodQuery }

// queryNames lists the database items of the query method in check order.
func (r *runner) queryNames() []string {
	names := []string{itemReach, itemTLS, itemLogin, itemVersion, itemEncoding, itemRole}
	for _, t := range r.cfg.Tables {
		names = append(names, selectPrefix+displayName(t))
	}
	names = append(names, itemSchema)
	for _, t := range r.cfg.Tables {
		names = append(names, cursorPrefix+displayName(t), keyPrefix+displayName(t), columnsPrefix+displayName(t))
	}
	return names
}

// queryItems runs the database items of the query method after the
// session and encoding items.
func (r *runner) queryItems(ctx context.Context, d *db) {
	r.queryStandby(ctx, d)
	for i, t := range r.cfg.Tables {
		d.tables = append(d.tables, r.selectTable(ctx, d, i, t))
	}
	r.schema(ctx, d)
	for _, t := range d.tables {
		r.cursor(ctx, d, t)
		r.primaryKey(ctx, d, t)
		r.columns(ctx, d, t)
	}
}

// queryStandby says whether the server is a primary or a standby and, for
// a standby, how far it lags: the time since the last replayed commit and
// the WAL received but not replayed yet.
func (r *runner) queryStandby(ctx context.Context, d *db) {
	if !d.standby {
		r.pass(itemRole, "primary")
		return
	}
	lag := standbyLag(ctx, d)
	if r.cfg.Source.Mode != config.ModeReadOnly {
		r.fail(itemRole, "a standby ("+lag+"): full mode writes its bookkeeping schema and cannot on a standby",
			"set source.mode: read-only (pgsignal then keeps its position in source.state_file), or point source.dsn at the primary")
		return
	}
	r.pass(itemRole, "a standby (the query method reads it in read-only mode): "+lag)
}

// standbyLag describes a standby's replay lag, for the role item.
func standbyLag(ctx context.Context, d *db) string {
	received, replayed, replayTime := "pg_last_wal_receive_lsn()", "pg_last_wal_replay_lsn()", "pg_last_xact_replay_timestamp()"
	if d.version < 100000 {
		received, replayed = "pg_last_xlog_receive_location()", "pg_last_xlog_replay_location()"
	}
	var recv, repl *string
	var behind *int64
	var since *float64
	err := d.conn.QueryRow(ctx, `SELECT `+received+`::text, `+replayed+`::text,
  (`+received+` - `+replayed+`)::bigint,
  extract(epoch FROM now() - `+replayTime+`)::float8`).Scan(&recv, &repl, &behind, &since)
	if err != nil {
		return "replay lag unknown: " + err.Error()
	}
	var parts []string
	if since == nil {
		parts = append(parts, "no transaction replayed since it started")
	} else {
		parts = append(parts, fmt.Sprintf("replay lag %s (since the last replayed commit; it grows while the primary commits nothing)",
			time.Duration(*since*float64(time.Second)).Round(time.Millisecond)))
	}
	switch {
	case repl == nil:
	case recv == nil:
		parts = append(parts, "replayed up to "+*repl+", no WAL receiver (WAL from an archive)")
	default:
		b := int64(0)
		if behind != nil && *behind > 0 {
			b = *behind
		}
		parts = append(parts, fmt.Sprintf("received %s, replayed %s (%s not replayed yet)", *recv, *repl, bytesText(b)))
	}
	return strings.Join(parts, "; ")
}

// cursorColumn is what the catalog says about a cursor column.
type cursorColumn struct {
	attnum   int16
	typ      uint32
	typName  string
	identity bool
	sequence *string // the sequence that fills it, quoted, if any
	cache    *int64  // that sequence's CACHE (PostgreSQL 10+)
	def      string  // the column's default expression
	indexed  bool    // a valid, non-partial btree index starts with it
}

// cursor checks a table's cursor column: it exists, is an integer, is
// filled from a sequence or identity (a warning otherwise, and for a
// sequence with CACHE > 1), and an index leads with it (a warning with the
// CREATE INDEX statement otherwise).
func (r *runner) cursor(ctx context.Context, d *db, t tableState) {
	name := cursorPrefix + displayName(t.cfg)
	if !t.exists {
		r.skip(name, "the table was not found (see "+selectPrefix+displayName(t.cfg)+")")
		return
	}
	path := fmt.Sprintf("tables[%d].cursor", t.index)
	col := t.cfg.Cursor
	identity, cache := `false`, `NULL::bigint`
	if d.version >= 100000 {
		identity = `a.attidentity <> ''`
		cache = `(SELECT seqcache FROM pg_catalog.pg_sequence WHERE seqrelid = s.seq)`
	}
	var c cursorColumn
	err := d.conn.QueryRow(ctx, `SELECT a.attnum, a.atttypid, pg_catalog.format_type(a.atttypid, a.atttypmod), `+identity+`,
  s.seq::regclass::text, `+cache+`, COALESCE(pg_catalog.pg_get_expr(ad.adbin, ad.adrelid), ''),
  EXISTS (SELECT FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
    JOIN pg_catalog.pg_am am ON am.oid = ic.relam
    WHERE i.indrelid = a.attrelid AND i.indkey[0] = a.attnum AND am.amname = 'btree' AND i.indisvalid AND i.indpred IS NULL)
FROM pg_catalog.pg_attribute a
LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
LEFT JOIN LATERAL (SELECT COALESCE(pg_catalog.pg_get_serial_sequence(a.attrelid::regclass::text, a.attname)::regclass::oid,
    (SELECT dep.refobjid FROM pg_catalog.pg_depend dep JOIN pg_catalog.pg_class sc ON sc.oid = dep.refobjid AND sc.relkind = 'S'
     WHERE dep.classid = 'pg_catalog.pg_attrdef'::regclass AND dep.objid = ad.oid AND dep.refclassid = 'pg_catalog.pg_class'::regclass
     LIMIT 1)) AS seq) s ON true
WHERE a.attrelid = $1 AND a.attname = $2 AND a.attnum > 0 AND NOT a.attisdropped`, t.oid, col).
		Scan(&c.attnum, &c.typ, &c.typName, &c.identity, &c.sequence, &c.cache, &c.def, &c.indexed)
	if errors.Is(err, pgx.ErrNoRows) {
		r.fail(name, fmt.Sprintf("%s has no column %q (%s)", t.quoted(), col, path),
			fmt.Sprintf("set %s to the column new rows are read by: an integer filled from a sequence or identity, such as the table's serial or identity primary key", path))
		return
	}
	if err != nil {
		r.queryFailed(name, err)
		return
	}
	if c.typ != pgtype.Int2OID && c.typ != pgtype.Int4OID && c.typ != pgtype.Int8OID {
		r.fail(name, fmt.Sprintf("cursor column %q is %s, not an integer (smallint, integer or bigint)", col, c.typName),
			fmt.Sprintf("set %s to an integer column filled from a sequence or identity, such as the table's serial or identity primary key", path))
		return
	}
	detail := fmt.Sprintf("%q (%s)", col, c.typName)
	var warnings, fixes []string
	switch {
	case c.identity && c.sequence != nil:
		detail += ", an identity column (sequence " + *c.sequence + ")"
	case c.sequence != nil:
		detail += ", filled from sequence " + *c.sequence
	default:
		warnings = append(warnings, fmt.Sprintf("cursor column %q is not filled from a sequence or identity (default: %s): pgsignal reads the rows whose cursor is above the highest it has read, "+
			"so a row inserted later with a lower value (an id chosen by the application, a value reused or going down) is never sent", col, orNone(c.def)))
		fixes = append(fixes, fmt.Sprintf("fill %q from a sequence, e.g. ALTER TABLE %s ALTER COLUMN %s ADD GENERATED BY DEFAULT AS IDENTITY; (then move the sequence past the highest value with setval), or set %s to a column that is",
			col, t.quoted(), pgcat.QuoteIdent(col), path))
	}
	if c.sequence != nil && c.cache != nil && *c.cache > 1 {
		warnings = append(warnings, fmt.Sprintf("sequence %s has CACHE %d: each session takes %d values at a time, so a session can insert a lower value after another session's higher one was read, "+
			"and pgsignal never sends that row", *c.sequence, *c.cache, *c.cache))
		fixes = append(fixes, "ALTER SEQUENCE "+*c.sequence+" CACHE 1;")
	}
	if c.indexed {
		detail += ", covered by a btree index"
	} else {
		create := "CREATE INDEX CONCURRENTLY ON " + t.quoted() + " (" + pgcat.QuoteIdent(col) + ");"
		if t.partitioned {
			// A partitioned table's index cannot be built concurrently.
			create = "CREATE INDEX ON " + t.quoted() + " (" + pgcat.QuoteIdent(col) + ");  -- it locks the table against writes while it builds: create it on each partition CONCURRENTLY first"
		}
		warnings = append(warnings, fmt.Sprintf("no btree index leads with %q: every poll reads the whole table to find the new rows, and its cost grows with the table", col))
		fixes = append(fixes, create)
	}
	if len(warnings) > 0 {
		r.warn(name, detail+"; but "+strings.Join(warnings, "; "), strings.Join(fixes, "\n"))
		return
	}
	r.pass(name, detail)
}

// primaryKey checks that the table has a primary key: the query method
// derives each event's idempotency key from it.
func (r *runner) primaryKey(ctx context.Context, d *db, t tableState) {
	name := keyPrefix + displayName(t.cfg)
	if !t.exists {
		r.skip(name, "the table was not found (see "+selectPrefix+displayName(t.cfg)+")")
		return
	}
	var cols []string
	err := d.conn.QueryRow(ctx, `SELECT array_agg(a.attname::text ORDER BY k.ord)
FROM pg_catalog.pg_index i, unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord), pg_catalog.pg_attribute a
WHERE i.indrelid = $1 AND i.indisprimary AND a.attrelid = i.indrelid AND a.attnum = k.attnum
GROUP BY i.indexrelid`, t.oid).Scan(&cols)
	if errors.Is(err, pgx.ErrNoRows) {
		r.fail(name, t.quoted()+" has no primary key: the query method derives each event's idempotency key from it, so that a row read again never makes a second event",
			"add a primary key: ALTER TABLE "+t.quoted()+" ADD PRIMARY KEY (...);  (on the primary; e.g. the cursor column, when it is unique)")
		return
	}
	if err != nil {
		r.queryFailed(name, err)
		return
	}
	quoted := make([]string, len(cols))
	for i, c := range cols {
		quoted[i] = pgcat.QuoteIdent(c)
	}
	r.pass(name, "("+strings.Join(quoted, ", ")+"): the events' idempotency keys come from it")
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
