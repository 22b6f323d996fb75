package query

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/replication"
)

// Defaults of Config.
const (
	DefaultBatch    = 1000
	DefaultGuard    = 2 * time.Second
	DefaultTimeout  = 30 * time.Second
	DefaultLookback = 1000
	// maxHorizons bounds the horizons waiting to become final (one per
	// poll that saw new rows while a transaction stays open): past it the
	// one before the newest is dropped, which only delays folding.
	maxHorizons = 256
)

// Table is one table the query method polls.
type Table struct {
	Table replication.TableRef
	// Cursor is an integer column with a unique index, filled from a
	// sequence or identity.
	Cursor string
	// Where is the table's row filter ("" for none), evaluated by the
	// server on every row read.
	Where string
}

// Config configures a Poller.
type Config struct {
	// SystemID is the database's system identifier: part of every key.
	SystemID string
	Tables   []Table
	// Batch is the most rows read from one table in one poll (LIMIT).
	Batch int
	// Guard is how much later than a poll the snapshots that decide when
	// its rows are final must be (see horizon).
	Guard time.Duration
	// Timeout bounds each poll.
	Timeout time.Duration
	// Lookback is how many cursor values below the maximum a table's first
	// poll looks at, so that a transaction in progress at the first start
	// that commits later is still sent.
	Lookback int64
}

// Row is one row a poll read.
type Row struct {
	// Table is the row's index in Config.Tables.
	Table  int
	Cursor int64
	// Change has Rel, Values and IdempotencyKey set, and Pos: the cursor
	// value as CommitLSN and the table's index as Ordinal (stable across
	// polls and restarts). Nil when the row does not pass the table's
	// where: it is seen, and nothing is sent.
	Change *replication.Change
}

// Poll is what one poll read.
type Poll struct {
	Rows []Row
	// More is set when a table had more rows than Config.Batch: poll again
	// at once.
	More bool
	// Standby is set when the server is a hot standby.
	Standby bool
	// ReplayLag is now() minus the commit time of the last transaction a
	// standby replayed (-1 on a primary or when unknown).
	ReplayLag time.Duration
}

// Poller reads the new rows of each table by its cursor, one snapshot per
// poll, and keeps each table's position: the final watermark and the
// values seen above it (see horizon). It is not safe for concurrent use.
type Poller struct {
	maxes    string // the snapshot statement's columns of the tables' greatest values
	warnings []string
	cfg      Config
	tables   []*table
	horizon  []*horizon
	version  int
}

type table struct {
	Table
	name   string // "schema.table"
	rel    *replication.Relation
	key    []int // key columns in rel
	cursor int   // cursor column in rel
	list   string
	qname  string
	known  bool // has a position
	final  int64
	seen   spans
	// complete is set when the last poll read every unseen row of the
	// window (no LIMIT cut the gap read).
	complete bool
}

// permanentError marks an error a retry cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string   { return e.err.Error() }
func (e permanentError) Unwrap() []error { return []error{e.err, replication.ErrPermanent} }

func permanent(format string, a ...any) error { return permanentError{fmt.Errorf(format, a...)} }

// CursorResetError reports a table whose greatest cursor value is below the
// final watermark: the database went back to an earlier point (a standby
// or a server restored from a backup).
type CursorResetError struct {
	Table string
	Max   int64
	Final int64
}

func (e *CursorResetError) Error() string {
	return fmt.Sprintf("the greatest %s cursor value is %d, below %d, up to which pgsignal has sent every row: the database went back to an earlier point (restored from a backup, or a standby following a restored primary). New rows would reuse cursor values pgsignal considers sent, and be skipped. Check which rows OneSignal has; then reset the table's position to start from the current rows: delete its entry from the state file's \"query\" section (read-only mode) or from the bookkeeping table query_positions (full mode), and start pgsignal again",
		e.Table, e.Max, e.Final)
}

// Unwrap makes the error permanent.
func (e *CursorResetError) Unwrap() error { return replication.ErrPermanent }

// Open resolves the tables (columns, key, cursor) on conn and returns a
// Poller that continues from state (nil or a table missing from it: the
// table starts from its current rows at the first poll).
func Open(ctx context.Context, conn *pgx.Conn, cfg Config, state State) (*Poller, error) {
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.Guard <= 0 {
		cfg.Guard = DefaultGuard
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Lookback <= 0 {
		cfg.Lookback = DefaultLookback
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	p := &Poller{cfg: cfg, version: serverMajor(conn.PgConn().ParameterStatus("server_version"))}

	for _, t := range cfg.Tables {
		tb, err := resolve(ctx, conn, t)
		if err != nil {
			return nil, err
		}
		if w, err := cacheWarning(ctx, conn, tb); err != nil {
			return nil, err
		} else if w != "" {
			p.warnings = append(p.warnings, w)
		}
		if st, ok := state[tb.name]; ok {
			tb.known, tb.final, tb.seen = true, st.Final, st.spans().above(st.Final)
		}
		p.tables = append(p.tables, tb)
		p.maxes += ",\n  (SELECT max(" + tb.col() + ")::int8 FROM " + tb.qname + ")"
	}
	return p, nil
}

func resolve(ctx context.Context, conn *pgx.Conn, t Table) (*table, error) {
	tc, err := replication.ReadTableColumns(ctx, conn.PgConn(), t.Table)
	if errors.Is(err, replication.ErrTableNotFound) {
		return nil, permanentError{err}
	}
	if err != nil {
		return nil, err
	}
	tb := &table{Table: t, name: t.Table.String(), rel: tc.Rel,
		qname: pgcat.QuoteIdent(t.Table.Schema) + "." + pgcat.QuoteIdent(t.Table.Name)}
	tb.cursor = tc.Rel.Index(t.Cursor)
	if tb.cursor < 0 {
		return nil, permanent("%s has no column %q (its cursor)", tb.name, t.Cursor)
	}
	switch tc.Rel.Columns[tb.cursor].TypeOID {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID:
	default:
		return nil, permanent("the cursor %s of %s is not an integer column (smallint, integer or bigint): the query method reads new rows by a column filled from a sequence or identity; name such a column in tables[].cursor", t.Cursor, tb.name)
	}
	var unique bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index x
  JOIN pg_catalog.pg_attribute a ON a.attrelid = x.indrelid AND a.attname = $2
  WHERE x.indrelid = to_regclass($1) AND x.indisunique AND x.indisvalid AND x.indpred IS NULL
    AND x.indkey[0] = a.attnum AND array_length(x.indkey::int2[], 1) = 1)`, tb.qname, t.Cursor).Scan(&unique); err != nil {
		return nil, fmt.Errorf("look up the indexes of %s: %w", tb.name, err)
	}
	if !unique {
		return nil, permanent("the cursor %s of %s has no unique index: the query method tells rows apart by their cursor value and reads new ones through that index; create it on the primary (CREATE UNIQUE INDEX CONCURRENTLY ON %s (%s);), or name a column that has one",
			t.Cursor, tb.name, tb.qname, pgcat.QuoteIdent(t.Cursor))
	}
	tb.key = tc.PrimaryKey
	if len(tb.key) == 0 {
		tb.key = tc.ReplicaIdentity
	}
	if len(tb.key) == 0 {
		// Unique, so a key: the same row always has the same value.
		tb.key = []int{tb.cursor}
	}
	cols := make([]string, 0, len(tc.Rel.Columns)+1)
	for _, c := range tc.Rel.Columns {
		cols = append(cols, pgcat.QuoteIdent(c.Name))
	}
	pass := "true"
	if strings.TrimSpace(t.Where) != "" {
		pass = "coalesce((" + t.Where + "), false)"
	}
	cols = append(cols, pass+" AS __pgsignal_pass")
	tb.list = strings.Join(cols, ", ")
	return tb, nil
}

// Poll runs one poll on conn in a REPEATABLE READ, READ ONLY transaction:
// for each table it reads the rows of the values not seen above the final
// watermark (those of transactions that committed late) and the new rows
// above the highest value seen, up to Config.Batch each, marks them seen,
// and makes final what the snapshot shows to be. The rows come back in
// Poll.Rows; the caller sends those with a Change. On error nothing
// changes.
func (p *Poller) Poll(ctx context.Context, conn *pgx.Conn) (Poll, error) {
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Poll{}, fmt.Errorf("poll: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	fn := "pg_current_snapshot()"
	if p.version < 13 {
		fn = "txid_current_snapshot()"
	}
	var snapText string
	var standby bool
	// The greatest cursor value of each table, in the same statement: the
	// first of the transaction, which takes its snapshot.
	greatest := make([]any, len(p.tables))
	maxes := make([]*int64, len(p.tables))
	for i := range maxes {
		greatest[i] = &maxes[i]
	}
	var lag *float64
	var at time.Time
	var replayed *time.Time
	if err := tx.QueryRow(ctx, `SELECT `+fn+`::text, pg_is_in_recovery(), now(),
  CASE WHEN pg_is_in_recovery() AND pg_last_wal_receive_lsn() IS DISTINCT FROM pg_last_wal_replay_lsn() THEN pg_last_xact_replay_timestamp()
    WHEN pg_is_in_recovery() THEN now() END,
  CASE WHEN pg_is_in_recovery() THEN extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 END`+p.maxes).
		Scan(append([]any{&snapText, &standby, &at, &replayed, &lag}, greatest...)...); err != nil {
		return Poll{}, classify(fmt.Errorf("poll: read the snapshot: %w", err))
	}
	snap, err := parseSnapshot(snapText)
	if err != nil {
		return Poll{}, err
	}
	snap.at, snap.standby = at, standby
	if standby {
		snap.at = time.Time{}
		if replayed != nil {
			snap.at = *replayed
		}
	}
	res := Poll{Standby: standby, ReplayLag: -1}
	if lag != nil {
		res.ReplayLag = time.Duration(*lag * float64(time.Second))
	}
	// Work on copies: an error leaves the position as it was.
	type pending struct {
		final    int64
		seen     spans
		known    bool
		complete bool
	}
	next := make([]pending, len(p.tables))
	for i, t := range p.tables {
		n := pending{final: t.final, seen: append(spans(nil), t.seen...), known: t.known}
		if !n.known {
			if n.final, n.seen, err = p.start(ctx, tx, t, maxes[i]); err != nil {
				return Poll{}, err
			}
			n.known, n.complete = true, true
			next[i] = n
			continue
		}
		// The window: values not seen between the final watermark and the
		// highest value seen.
		top := n.seen.top(n.final)
		gaps := n.seen.gaps(n.final)
		n.complete = true
		if len(gaps) > 0 {
			rows, full, err := p.readGaps(ctx, tx, i, t, gaps)
			if err != nil {
				return Poll{}, err
			}
			n.complete = !full
			for _, r := range rows {
				if n.seen.has(r.Cursor) {
					continue
				}
				n.seen = n.seen.add(r.Cursor)
				res.Rows = append(res.Rows, r)
			}
			res.More = res.More || full
		}
		// The new rows.
		rows, full, err := p.read(ctx, tx, i, t, t.col()+" > '"+strconv.FormatInt(top, 10)+"'::int8")
		if err != nil {
			return Poll{}, err
		}
		res.More = res.More || full
		for _, r := range rows {
			n.seen = n.seen.add(r.Cursor)
			res.Rows = append(res.Rows, r)
		}
		if m := maxes[i]; m != nil && *m < n.final {
			return Poll{}, &CursorResetError{Table: t.name, Max: *m, Final: n.final}
		}
		next[i] = n
	}
	if err := tx.Commit(ctx); err != nil {
		return Poll{}, fmt.Errorf("poll: end the transaction: %w", err)
	}
	// The poll is read: apply it.
	upto := make([]int64, len(p.tables))
	complete := true
	for i, t := range p.tables {
		n := next[i]
		t.final, t.seen, t.known, t.complete = n.final, n.seen, n.known, n.complete
		upto[i] = t.seen.top(t.final)
		complete = complete && n.complete
	}
	p.fold(snap, upto, complete)
	return res, nil
}

// fold moves each table's final watermark up to the newest horizon the
// snapshot shows to be final, and records this poll's horizon.
func (p *Poller) fold(snap snapshot, upto []int64, complete bool) {
	for _, h := range p.horizon {
		h.advance(snap, p.cfg.Guard)
	}
	last := -1
	if complete {
		for k, h := range p.horizon {
			if h.final(snap) {
				last = k
			}
		}
	}
	if last >= 0 {
		h := p.horizon[last]
		for i, t := range p.tables {
			if h.upto[i] > t.final {
				t.final = h.upto[i]
				t.seen = t.seen.above(t.final)
			}
		}
		p.horizon = append(p.horizon[:0], p.horizon[last+1:]...)
	}
	if n := len(p.horizon); n > 0 && equal(p.horizon[n-1].upto, upto) {
		return
	}
	changed := false
	for i, t := range p.tables {
		if upto[i] > t.final {
			changed = true
		}
	}
	if !changed {
		return
	}
	if len(p.horizon) >= maxHorizons {
		// The newest horizon is superseded by this one, which covers more
		// and becomes final no earlier.
		p.horizon = p.horizon[:len(p.horizon)-1]
	}
	p.horizon = append(p.horizon, &horizon{upto: upto, at: snap.at})
}

func equal(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// start gives a table without a position its first one, in the poll's
// snapshot: final below the newest Config.Lookback values, the rows
// visible above it seen (not sent: pgsignal starts from now), so that a
// transaction in progress now whose values are among them is sent when it
// commits.
func (p *Poller) start(ctx context.Context, tx pgx.Tx, t *table, greatest *int64) (int64, spans, error) {
	if greatest == nil {
		return none, nil, nil
	}
	var final int64 = none
	if *greatest > none+p.cfg.Lookback {
		final = *greatest - p.cfg.Lookback
	}
	rows, err := tx.Query(ctx, `SELECT `+t.col()+`::int8 FROM `+t.qname+` WHERE `+t.col()+` > $1 ORDER BY 1`, final)
	if err != nil {
		return 0, nil, fmt.Errorf("poll %s: the newest rows: %w", t.name, err)
	}
	vals, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return 0, nil, fmt.Errorf("poll %s: the newest rows: %w", t.name, err)
	}
	var seen spans
	for _, v := range vals {
		seen = seen.add(v)
	}
	return final, seen, nil
}

func (t *table) col() string { return pgcat.QuoteIdent(t.Cursor) }

// readGaps reads the rows of t in the open intervals gaps, up to
// Config.Batch in cursor order: one index range scan per interval, so the
// cost follows the intervals and the rows found, not the window.
func (p *Poller) readGaps(ctx context.Context, tx pgx.Tx, idx int, t *table, gaps []gap) (rows []Row, full bool, err error) {
	after := make([]string, len(gaps))
	before := make([]string, len(gaps))
	for k, g := range gaps {
		after[k] = strconv.FormatInt(g.After, 10)
		before[k] = strconv.FormatInt(g.Before, 10)
	}
	sql := `SELECT x.* FROM unnest('{` + strings.Join(after, ",") + `}'::int8[], '{` + strings.Join(before, ",") + `}'::int8[]) AS g(__pgsignal_after, __pgsignal_before)
CROSS JOIN LATERAL (SELECT ` + t.list + ` FROM ` + t.qname + ` WHERE ` + t.col() + ` > g.__pgsignal_after AND ` + t.col() + ` < g.__pgsignal_before) AS x
ORDER BY ` + strconv.Itoa(t.cursor+1) + ` LIMIT ` + strconv.Itoa(p.cfg.Batch)
	return p.run(ctx, tx, idx, t, sql)
}

// read reads up to Config.Batch rows of t matching cond, in cursor order,
// in the stream's text form; full is set when the limit cut the read.
func (p *Poller) read(ctx context.Context, tx pgx.Tx, idx int, t *table, cond string) (rows []Row, full bool, err error) {
	return p.run(ctx, tx, idx, t, `SELECT `+t.list+` FROM `+t.qname+` WHERE `+cond+` ORDER BY `+t.col()+` LIMIT `+strconv.Itoa(p.cfg.Batch))
}

// run runs a read of t's columns.
func (p *Poller) run(ctx context.Context, tx pgx.Tx, idx int, t *table, sql string) (rows []Row, full bool, err error) {
	res := tx.Conn().PgConn().ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, false, classify(fmt.Errorf("poll %s: %w", t.name, res.Err))
	}
	ncol := len(t.rel.Columns)
	for _, r := range res.Rows {
		if len(r) != ncol+1 {
			return nil, false, fmt.Errorf("poll %s: read %d columns, want %d", t.name, len(r), ncol+1)
		}
		cur, err := strconv.ParseInt(string(r[t.cursor]), 10, 64)
		if err != nil {
			return nil, false, fmt.Errorf("poll %s: cursor value %q: %w", t.name, r[t.cursor], err)
		}
		row := Row{Table: idx, Cursor: cur}
		if string(r[ncol]) == "t" {
			vals := r[:ncol]
			key := make([][]byte, len(t.key))
			for k, c := range t.key {
				key[k] = vals[c]
			}
			row.Change = &replication.Change{Rel: t.rel, Values: vals,
				Pos:            cdc.Position{CommitLSN: cdc.LSN(uint64(cur)), Ordinal: uint32(idx)},
				IdempotencyKey: cdc.BackfillKey(p.cfg.SystemID, t.rel.QualifiedName(), key)}
		}
		rows = append(rows, row)
	}
	return rows, len(res.Rows) >= p.cfg.Batch, nil
}

// classify marks errors of the query itself (a where that does not
// compile, a privilege missing) permanent.
func classify(err error) error {
	var pgErr interface{ SQLState() string }
	if errors.As(err, &pgErr) {
		switch pgErr.SQLState()[:2] {
		case "42", "22":
			return permanentError{err}
		}
	}
	return err
}

// Warnings returns what Open found doubtful: a cursor's sequence that
// hands out values in blocks (CACHE above 1).
func (p *Poller) Warnings() []string { return p.warnings }

// cacheWarning warns about a cursor fed by a sequence with CACHE above 1:
// each session takes a block of values, so a value below one already
// committed can be taken by a transaction that starts later, which the
// snapshot horizon cannot see coming.
func cacheWarning(ctx context.Context, conn *pgx.Conn, t *table) (string, error) {
	var seq *string
	var cache *int64
	err := conn.QueryRow(ctx, `SELECT s.seqrelid::regclass::text, s.seqcache FROM pg_catalog.pg_sequence s
  WHERE s.seqrelid = pg_get_serial_sequence($1, $2)::regclass`, t.qname, t.Cursor).Scan(&seq, &cache)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		// pg_sequence exists from PostgreSQL 10 on; nothing to say before.
		return "", nil
	}
	if cache != nil && *cache > 1 {
		return fmt.Sprintf("the cursor %s of %s is fed by sequence %s with CACHE %d: sessions take blocks of values, so a row can get a value below rows already sent and be missed; set ALTER SEQUENCE %s CACHE 1 on the primary",
			t.Cursor, t.name, *seq, *cache, *seq), nil
	}
	return "", nil
}

// State returns every table's position (a copy).
func (p *Poller) State() State {
	out := State{}
	for _, t := range p.tables {
		if t.known {
			out[t.name] = stateOf(t.final, t.seen)
		}
	}
	return out
}

// Window returns the number of values seen above the final watermarks and
// of horizons waiting, for the metrics.
func (p *Poller) Window() (values int64, horizons int) {
	for _, t := range p.tables {
		for _, s := range t.seen {
			values += s.Hi - s.Lo + 1
		}
	}
	return values, len(p.horizon)
}

func serverMajor(version string) int {
	end := 0
	for end < len(version) && version[end] >= '0' && version[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(version[:end])
	return n
}
