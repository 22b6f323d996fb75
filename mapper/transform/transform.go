// Package transform evaluates the `tables[].transform` of a table: a
// SELECT, written by the user, over a relation named `changes` that has the
// source table's columns, returning the columns name and external_id and
// optionally timestamp and properties. A transform may join other tables,
// filter, compute, and return several events per row.
//
// A Transformer evaluates a batch of rows of one table in one statement on
// an ordinary connection: the rows are passed as one text[] per column,
// unnested with their ordinals, cast back to the column types, and each row
// is the one-row `changes` of its own lateral evaluation of the transform,
// so every output is tied to its input row by construction. The outputs
// are read in text form, as pgoutput sends values, and turned into events
// by package mapper, with the same limits and rejection reasons as a
// mapped table.
//
// A runtime error that the rows cause (division by zero, a failed cast, a
// RAISE in a function, ...) is isolated by evaluating halves of the batch
// until the failing rows are alone; each becomes a rejected event and the
// others are evaluated normally. Every other failure is returned, for the
// caller to retry.
package transform

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/config/defaults"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/mapper"
	"github.com/pgsignal/pgsignal/replication"
)

// Spec is one table's transform.
type Spec struct {
	// Schema and Table name the source table (unquoted).
	Schema, Table string
	// SQL is the user's SELECT over `changes`. Trailing semicolons are
	// ignored; a leading WITH [RECURSIVE] is merged with the one that
	// defines `changes`.
	SQL string
	// NamePrefix, TimestampZone and TimestampUnit apply to the outputs as
	// the fields of the same names of mapper.Rule do.
	NamePrefix, TimestampZone, TimestampUnit string
	// Timeout is the statement timeout of an evaluation (0:
	// defaults.TransformTimeout). A batch that exceeds it is split,
	// down to one row; a row that alone exceeds it is rejected.
	Timeout time.Duration
}

// timeout returns the spec's statement timeout.
func (s *Spec) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return defaults.TransformTimeout
}

// Input is one row to transform.
type Input struct {
	// Rel is the row's relation; its table must have a transform.
	Rel *replication.Relation
	// Values are the row's values in PostgreSQL text form, nil for NULL.
	// They are only read during Evaluate.
	Values [][]byte
	// Pos is the row's position in the stream; every event of the row
	// has it.
	Pos cdc.Position
	// CommitTime is the commit time of the row's transaction.
	CommitTime time.Time
	// Key is the row's idempotency key: the key of its first event (the
	// others are derived from it).
	Key string
}

// Stats counts the work of a Transformer.
type Stats struct {
	// Statements is the number of statements that evaluated rows
	// (including those that failed, and the pieces of bisected batches).
	Statements uint64
	// Rows is the number of input rows Evaluate handled.
	Rows uint64
	// RowErrors is the number of input rows rejected because evaluating
	// them failed.
	RowErrors uint64
}

// Transformer evaluates the transforms of tables. Its methods are meant
// for one caller (they serialize), apart from Handles and Stats, which may
// be called at any time.
//
// It compiles a transform once per *replication.Relation (a new one arrives
// after a schema change) and keeps it for the life of the Transformer.
type Transformer struct {
	pool  *pgxpool.Pool
	specs []*spec
	byKey map[replication.TableRef]*spec

	mu    sync.Mutex
	cache map[*replication.Relation]*compiled
	// good is, per table, the last compiled transform that prepared.
	good map[string]*compiled
	// timeouts is the statement_timeout each connection was set to (with
	// its lock_timeout; a connection not in it has the pool's settings).
	timeouts map[*pgconn.PgConn]time.Duration

	statements, rows, rowErrors atomic.Uint64
	// legacyBefore: rows committed before it keep the keys earlier
	// versions gave their events (see KeepLegacyKeys).
	legacyBefore atomic.Uint64
}

// KeepLegacyKeys makes the rows at positions before lsn (a streamed
// row's commit LSN; a backfilled row's is below its slot's consistent
// point) keep the keys versions before
// output-independent keys gave their events: a row that becomes exactly
// one event gives it its own key, as they did. lsn is where this version
// first ran (cdc.LegacyKeys.Before): an event such a version sent and did
// not confirm before the upgrade is sent again under the key it had.
// Those rows' keys depend on the number of events (see outputKey); the
// rows committed later have output-independent keys.
func (t *Transformer) KeepLegacyKeys(lsn cdc.LSN) { t.legacyBefore.Store(uint64(lsn)) }

// legacyKey reports whether the single event of the row in takes the
// row's key.
func (t *Transformer) legacyKey(in *Input) bool {
	return in.Pos.CommitLSN > 0 && uint64(in.Pos.CommitLSN) < t.legacyBefore.Load()
}

// spec is a validated Spec.
type spec struct {
	Spec
	key string // "schema.table"
	sql userSQL
	// rule maps output rows; compilation adds Timestamp and Properties
	// when the transform returns them.
	rule mapper.Rule
}

// New returns a Transformer for specs, which it validates (the table, the
// SQL is not empty, the mapping options). It does no I/O: Check prepares
// the transforms. pool may be nil to validate specs only; Check and
// Evaluate then fail.
func New(pool *pgxpool.Pool, specs []Spec) (*Transformer, error) {
	t := &Transformer{
		pool:     pool,
		byKey:    make(map[replication.TableRef]*spec, len(specs)),
		cache:    map[*replication.Relation]*compiled{},
		good:     map[string]*compiled{},
		timeouts: map[*pgconn.PgConn]time.Duration{},
	}
	for _, sp := range specs {
		key := replication.TableRef{Schema: sp.Schema, Name: sp.Table}.Display()
		if sp.Schema == "" || sp.Table == "" {
			return nil, fmt.Errorf("tables[].transform of %q: the schema and the table are required", key)
		}
		ref := replication.TableRef{Schema: sp.Schema, Name: sp.Table}
		if _, dup := t.byKey[ref]; dup {
			return nil, fmt.Errorf("table %s: tables[].transform is given twice", key)
		}
		s := &spec{Spec: sp, key: key, sql: parseUserSQL(sp.SQL)}
		if s.sql.text == "" {
			return nil, fmt.Errorf("table %s: tables[].transform is empty", key)
		}
		s.rule = mapper.Rule{
			Schema: sp.Schema, Table: sp.Table,
			NameColumn: outName, ExternalID: outExternalID,
			NamePrefix: sp.NamePrefix, TimestampZone: sp.TimestampZone, TimestampUnit: sp.TimestampUnit,
		}
		if _, err := mapper.New([]mapper.Rule{s.rule}); err != nil {
			return nil, fmt.Errorf("tables[].transform: %w", err)
		}
		t.specs = append(t.specs, s)
		t.byKey[ref] = s
	}
	return t, nil
}

// errNoPool is returned by a Transformer made without a pool.
var errNoPool = errors.New("transform: no connection pool")

// Handles reports whether the table "schema.table" of rel has a transform.
func (t *Transformer) Handles(rel *replication.Relation) bool {
	return rel != nil && t.byKey[rel.Key()] != nil
}

// Check prepares every transform against its table's current columns, read
// from the catalog (the columns pgoutput publishes: not dropped, not
// generated), and validates the output columns. An error names the table
// and says what is wrong, with PostgreSQL's message, detail, hint and the
// place in the transform. It is meant for start-up, where a failure is a
// configuration error; it returns the errors of every table at once.
func (t *Transformer) Check(ctx context.Context) error {
	if len(t.specs) == 0 {
		return nil
	}
	if t.pool == nil {
		return errNoPool
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	conn, err := t.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("check tables[].transform: acquire a connection: %w", err)
	}
	defer conn.Release()
	pc := conn.Conn().PgConn()
	var errs []error
	for _, s := range t.specs {
		tc, err := replication.ReadTableColumns(ctx, pc, replication.TableRef{Schema: s.Schema, Name: s.Table})
		if err != nil {
			errs = append(errs, fmt.Errorf("table %s: tables[].transform: %w", s.key, err))
			continue
		}
		c, err := compile(ctx, pc, s, tc.Rel)
		if err != nil {
			errs = append(errs, fmt.Errorf("table %s: tables[].transform cannot be used: %w", s.key, err))
			continue
		}
		if err := trial(ctx, pc, c); err != nil {
			errs = append(errs, fmt.Errorf("table %s: tables[].transform cannot be used: %w", s.key, err))
			continue
		}
		t.good[s.key] = c
	}
	return errors.Join(errs...)
}

// Evaluate transforms rows, which may belong to different relations (one
// statement runs per relation, or per piece of it while isolating failing
// rows), and returns, for each input in order, its events: none when the
// transform returned no row for it, and an event with Reject set when the
// row could not be evaluated or an output could not become an event.
//
// The events of an input have its Pos and CommitTime; the first has its
// Key, the next ones keys derived from it.
//
// An error means that the failure is not the rows' fault (the connection,
// the server, a table the transform reads was dropped, ...): nothing was
// rejected, and the caller should retry the whole call later.
func (t *Transformer) Evaluate(ctx context.Context, rows []Input) ([][]*cdc.Event, error) {
	out := make([][]*cdc.Event, len(rows))
	if len(rows) == 0 {
		return out, nil
	}
	// Group the rows by relation, in order of first appearance.
	var rels []*replication.Relation
	groups := map[*replication.Relation][]int{}
	for i := range rows {
		in := &rows[i]
		switch {
		case in.Rel == nil:
			return nil, fmt.Errorf("transform: input %d has no relation", i)
		case !t.Handles(in.Rel):
			return nil, fmt.Errorf("transform: table %s has no transform", in.Rel.QualifiedName())
		case len(in.Values) != len(in.Rel.Columns):
			return nil, fmt.Errorf("transform: input %d of %s has %d values for %d columns", i, in.Rel.QualifiedName(), len(in.Values), len(in.Rel.Columns))
		}
		if _, ok := groups[in.Rel]; !ok {
			rels = append(rels, in.Rel)
		}
		groups[in.Rel] = append(groups[in.Rel], i)
	}
	if t.pool == nil {
		return nil, errNoPool
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	conn, err := t.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("transform: acquire a connection: %w", err)
	}
	defer conn.Release()
	pc := conn.Conn().PgConn()
	for _, rel := range rels {
		idx := groups[rel]
		c, err := t.compiled(ctx, pc, rel)
		if err != nil {
			return nil, fmt.Errorf("transform of %s: %w", rel.QualifiedName(), err)
		}
		if c.reject != "" {
			for _, i := range idx {
				out[i] = []*cdc.Event{rejectEvent(&rows[i], c.reject)}
			}
			continue
		}
		if err := t.eval(ctx, pc, c, rows, idx, out); err != nil {
			return nil, fmt.Errorf("transform of %s: %w", rel.QualifiedName(), err)
		}
	}
	t.rows.Add(uint64(len(rows)))
	return out, nil
}

// Stats reports the statements run and the rows evaluated so far.
func (t *Transformer) Stats() Stats {
	return Stats{Statements: t.statements.Load(), Rows: t.rows.Load(), RowErrors: t.rowErrors.Load()}
}

// compiled returns the transform compiled for rel, compiling it on first
// use. When it does not compile for rel, the result rejects every row,
// unless the last definition of the table that compiled fails the same way
// now: then something the transform uses changed, not the table, and the
// error is returned.
func (t *Transformer) compiled(ctx context.Context, pc *pgconn.PgConn, rel *replication.Relation) (*compiled, error) {
	if c, ok := t.cache[rel]; ok {
		return c, nil
	}
	if len(t.cache) >= maxCached {
		// Each reconnect brings new Relation values: forget the old ones
		// (the last good compilation per table stays in t.good).
		clear(t.cache)
	}
	s := t.byKey[rel.Key()]
	c, err := compile(ctx, pc, s, rel)
	if err == nil {
		t.cache[rel] = c
		t.good[s.key] = c
		return c, nil
	}
	if !isCompileError(err) {
		return nil, err
	}
	if prev := t.good[s.key]; prev != nil && prev.rel != rel {
		sd, perr := pc.Prepare(ctx, "", prev.st.sql, nil)
		if perr == nil {
			perr = (&compiled{spec: s, rel: prev.rel}).setOutput(sd.Fields)
		}
		switch {
		case perr == nil:
			// The previous definition still compiles: the new one is at fault.
		case !isCompileError(perr):
			return nil, perr
		case sameFailure(err, perr):
			return nil, fmt.Errorf("the transform no longer compiles, for the table's previous definition either (did something it reads change?): %w", err)
		}
	}
	c = &compiled{spec: s, rel: rel, reject: "transform cannot be prepared for the table's new definition: " + err.Error()}
	t.cache[rel] = c
	return c, nil
}

// eval evaluates the rows idx of c's relation into out. When a row makes
// the statement fail, it evaluates each half of idx in turn, down to single
// rows, which are rejected.
func (t *Transformer) eval(ctx context.Context, pc *pgconn.PgConn, c *compiled, rows []Input, idx []int, out [][]*cdc.Event) error {
	evs, err := t.run(ctx, pc, c, rows, idx)
	if err == nil {
		for k, i := range idx {
			out[i] = evs[k]
		}
		return nil
	}
	pe, ok := rowError(err)
	timedOut := !ok && ctx.Err() == nil && isStatementTimeout(err)
	if !ok && !timedOut {
		return err
	}
	if len(idx) == 1 && timedOut {
		// A timeout may be the server's doing (a lock wait that began too
		// late for lock_timeout, a busy server): the row alone is tried
		// again after a pause before it counts as the row's fault.
		for _, wait := range rowTimeoutRetries {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
			evs, err = t.run(ctx, pc, c, rows, idx)
			if err == nil {
				out[idx[0]] = evs[0]
				return nil
			}
			if ctx.Err() != nil || !isStatementTimeout(err) {
				return fmt.Errorf("evaluate a row again after it timed out: %w", err)
			}
		}
	}
	if len(idx) == 1 {
		var reason string
		if !timedOut {
			reason = fmt.Sprintf("transform failed: %s (SQLSTATE %s)", pe.Message, pe.Code)
		} else {
			reason = fmt.Sprintf("transform timed out: evaluating this row alone took longer than %s, %d times (raise tables[].transform_timeout, or make the transform faster; PostgreSQL: %v)",
				c.spec.timeout(), 1+len(rowTimeoutRetries), err)
		}
		out[idx[0]] = []*cdc.Event{rejectEvent(&rows[idx[0]], reason)}
		t.rowErrors.Add(1)
		return nil
	}
	mid := len(idx) / 2
	if err := t.eval(ctx, pc, c, rows, idx[:mid], out); err != nil {
		return err
	}
	return t.eval(ctx, pc, c, rows, idx[mid:], out)
}

// binaryFormat makes every parameter binary.
var binaryFormat = []int16{1}

// run evaluates the rows idx in one statement and returns their events.
func (t *Transformer) run(ctx context.Context, pc *pgconn.PgConn, c *compiled, rows []Input, idx []int) ([][]*cdc.Event, error) {
	params, oids := batchParams(c, rows, idx)
	if err := t.setTimeout(ctx, pc, c.spec.timeout()); err != nil {
		return nil, err
	}
	rr := pc.ExecParams(ctx, c.st.sql, params, oids, binaryFormat, nil)
	t.statements.Add(1)
	if fd := rr.FieldDescriptions(); fd != nil && !sameFields(fd, c.fields) {
		_, _ = rr.Close()
		delete(t.cache, c.rel)
		return nil, errors.New("the transform's output columns changed since it was prepared (did a table it reads change?); it is prepared again at the next call")
	}
	evs := make([][]*cdc.Event, len(idx))
	// A row's outputs arrive together (ordered by ordinal); they are
	// mapped once all are known: outputs with the same name and
	// external_id are numbered by their content (occurrences).
	var group [][][]byte
	groupOrd, extra := 0, 0 // extra: outputs beyond MaxEventsPerRow
	emit := func() error {
		if extra > 0 {
			in := &rows[idx[groupOrd-1]]
			evs[groupOrd-1] = []*cdc.Event{rejectEvent(in, fmt.Sprintf("the transform returned %d events for this row; at most %d are sent for one row (is a join condition missing?)",
				len(group)+extra, MaxEventsPerRow))}
			group, extra = group[:0], 0
			return nil
		}
		if len(group) == 0 {
			return nil
		}
		in := &rows[idx[groupOrd-1]]
		occ := occurrences(group, c.out.Index("name"), c.out.Index("external_id"))
		legacy := len(group) == 1 && t.legacyKey(in)
		for j, vals := range group {
			name, ext := vals[c.out.Index("name")], vals[c.out.Index("external_id")]
			key := in.Key
			if !legacy {
				key = outputKey(in.Key, name, ext, occ[j])
			}
			ev := c.m.Map(&replication.Change{
				Rel:            c.out,
				Values:         vals,
				Pos:            in.Pos,
				CommitTime:     in.CommitTime,
				IdempotencyKey: key,
			})
			if ev == nil {
				return errors.New("the output mapper has no rule for the table")
			}
			if ev.Reject != "" {
				ev.Reject = "transform output: " + ev.Reject
				ev.Row = mapper.RowJSON(in.Rel, in.Values)
			}
			evs[groupOrd-1] = append(evs[groupOrd-1], ev)
		}
		group = group[:0]
		return nil
	}
	for rr.NextRow() {
		v := rr.Values()
		ord, ok := parseOrdinal(v[0])
		if !ok || ord < 1 || ord > len(idx) {
			_, _ = rr.Close()
			return nil, fmt.Errorf("the statement returned the ordinal %q for a batch of %d rows", v[0], len(idx))
		}
		if ord != groupOrd {
			if err := emit(); err != nil {
				_, _ = rr.Close()
				return nil, err
			}
			groupOrd = ord
		}
		if v[1] == nil {
			continue // no output for this row
		}
		if len(group) >= MaxEventsPerRow {
			extra++
			continue
		}
		group = append(group, replication.CloneValues(v[hiddenFields:]))
	}
	if err := emit(); err != nil {
		_, _ = rr.Close()
		return nil, err
	}
	if _, err := rr.Close(); err != nil {
		return nil, err
	}
	return evs, nil
}

// batchParams returns the statement's parameters for the rows idx: one
// text[] per column.
func batchParams(c *compiled, rows []Input, idx []int) ([][]byte, []uint32) {
	params := make([][]byte, c.st.params)
	oids := make([]uint32, c.st.params)
	elems := make([][]byte, len(idx))
	for k := range params {
		size := 20
		for j, i := range idx {
			elems[j] = nil
			if len(c.rel.Columns) > 0 {
				elems[j] = rows[i].Values[k]
			}
			size += 4 + len(elems[j])
		}
		params[k] = appendTextArray(make([]byte, 0, size), elems)
		oids[k] = textArrayOID
	}
	return params, oids
}

// rowTimeoutRetries are the pauses before a row that timed out alone is
// evaluated again; it is a dead letter when it times out every time.
var rowTimeoutRetries = []time.Duration{500 * time.Millisecond, 2 * time.Second}

// lockTimeout is the lock_timeout of an evaluation whose statement_timeout
// is d: below it, so that waiting for a lock (a migration, VACUUM FULL on
// a table the transform reads) ends in lock_not_available, which is
// retried for the whole batch, rather than in a statement timeout, which
// is blamed on the rows.
func lockTimeout(d time.Duration) time.Duration {
	return max(d*3/4, time.Millisecond)
}

// setTimeout sets pc's statement_timeout to d, and its lock_timeout to
// lockTimeout(d), unless it has them already.
func (t *Transformer) setTimeout(ctx context.Context, pc *pgconn.PgConn, d time.Duration) error {
	if cur, ok := t.timeouts[pc]; ok && cur == d {
		return nil
	}
	if len(t.timeouts) >= maxCached {
		clear(t.timeouts) // connections come and go; re-set is harmless
	}
	set := "SET statement_timeout = " + strconv.FormatInt(d.Milliseconds(), 10) +
		"; SET lock_timeout = " + strconv.FormatInt(lockTimeout(d).Milliseconds(), 10)
	if _, err := pc.Exec(ctx, set).ReadAll(); err != nil {
		return fmt.Errorf("set statement_timeout and lock_timeout: %w", err)
	}
	t.timeouts[pc] = d
	return nil
}

// isStatementTimeout reports whether err is PostgreSQL cancelling a
// statement for statement_timeout (57014; the same code with "user
// request" is a cancel, which is not the rows' doing).
func isStatementTimeout(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == pgcat.QueryCanceled && strings.Contains(pe.Message, "statement timeout")
}

// parseOrdinal reads a positive bigint's text.
func parseOrdinal(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// rowError reports whether err is a runtime error that the evaluated rows
// cause, as opposed to the server, the connection or the definitions:
// cardinality violation (21, e.g. a scalar subquery returning two rows),
// data exception (22), integrity constraint violation (23), SQL routine
// exception (2F), external routine exceptions (38, 39), WITH CHECK OPTION
// violation (44), PL/pgSQL errors (P0, e.g. RAISE) and a write in the
// read-only session (25006, e.g. nextval() on some rows only; Check
// catches a transform that always writes).
func rowError(err error) (*pgconn.PgError, bool) {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return nil, false
	}
	switch pe.Code[:2] {
	case "21", "22", "23", "2F", "38", "39", "44", "P0":
		return pe, true
	}
	if pe.Code == pgcat.ReadOnlySQLTransaction {
		// A write (nextval(), a function that writes) in the read-only
		// session: it fails the same way every time.
		return pe, true
	}
	return nil, false
}

// rejectEvent is the event of an input that cannot be evaluated.
func rejectEvent(in *Input, reason string) *cdc.Event {
	return &cdc.Event{
		Pos:            in.Pos,
		Table:          in.Rel.QualifiedName(),
		IdempotencyKey: in.Key,
		CommitTime:     in.CommitTime,
		Row:            mapper.RowJSON(in.Rel, in.Values),
		Reject:         reason,
	}
}

// occurrences numbers a row's outputs among those with the same name and
// external_id, in the order of their other values (timestamp, properties),
// not of their place in the output: a replay that returns them in another
// order gives each the same number, so the same key.
func occurrences(group [][][]byte, name, ext int) []int {
	content := func(vals [][]byte) string {
		var b strings.Builder
		for _, v := range vals {
			if v == nil {
				b.WriteString("\xff")
				continue
			}
			b.WriteString(strconv.Itoa(len(v)))
			b.WriteByte(':')
			b.Write(v)
		}
		return b.String()
	}
	byID := map[string][]int{}
	for j, vals := range group {
		id := content([][]byte{vals[name], vals[ext]})
		byID[id] = append(byID[id], j)
	}
	occ := make([]int, len(group))
	for _, js := range byID {
		if len(js) == 1 {
			continue
		}
		sort.SliceStable(js, func(a, b int) bool { return content(group[js[a]]) < content(group[js[b]]) })
		for n, j := range js {
			occ[j] = n
		}
	}
	return occ
}

// maxCached bounds the compiled statements kept (one per table definition
// seen; a reconnect brings new ones).
const maxCached = 256

// MaxEventsPerRow is the most events one row may become: a row whose
// transform returns more (a missing join condition, most likely) becomes a
// dead letter instead, so that one row cannot exhaust memory.
const MaxEventsPerRow = 100_000

// outputKeyNamespace is the UUID namespace of the keys of a transformed
// row's events.
var outputKeyNamespace = [16]byte{0x2a, 0x7c, 0x91, 0x0e, 0x5d, 0x33, 0x4f, 0x86, 0xb1, 0x48, 0xc6, 0x0f, 0x7e, 0x25, 0xd9, 0x13}

// outputKey returns the idempotency key of an event a row whose key is key
// became: a UUIDv5 of the row's key, the event's name and external_id, and
// occ, how many events of the row with that name and external_id come
// before it (by content). It does not depend on how many events the row
// became, so a replay in which the transform returns more or fewer events
// for the row (the data it joins changed) gives each event it returns
// again the key it had; and it does not depend on their order. A row's
// only event, too, has a derived key, not the row's own (which earlier
// versions gave it): one event cannot take the row's key without depending
// on there being no other. (Rows committed before this version first ran
// keep the earlier keys: see KeepLegacyKeys.)
func outputKey(key string, name, ext []byte, occ int) string {
	return cdc.UUIDv5(outputKeyNamespace, key, "/", keyPart(name), "/", keyPart(ext), "/", strconv.Itoa(occ))
}

// keyPart encodes a value for a key: its length and bytes, or "-" for NULL,
// so that no two (name, external_id) pairs read the same.
func keyPart(v []byte) string {
	if v == nil {
		return "-"
	}
	return strconv.Itoa(len(v)) + ":" + string(v)
}
