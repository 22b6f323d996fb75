package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/mapper"
	"github.com/pgsignal/pgsignal/mapper/transform"
	"github.com/pgsignal/pgsignal/replication"
	"github.com/pgsignal/pgsignal/sink"
)

// Remapper maps the stored row of a dead letter whose event was never built
// (a mapping failure) again, with the current configuration: the table's
// rule, or its transform. It implements sink.Remapper for `pgsignal
// dead-letters replay`.
//
// The row is rebuilt from its JSON (mapper.RowJSON) inside PostgreSQL, with
// jsonb_populate_record and the table's current columns, in a session with
// the stream's text formats, and checked: the rebuilt values must give the
// stored JSON again, or the letter is not re-mapped (a value that did not
// survive the trip is never sent).
type Remapper struct {
	cfg   *config.Config
	pool  *pgxpool.Pool
	m     *mapper.Mapper
	t     *transform.Transformer
	tpool *pgxpool.Pool
	rels  map[string]*replication.TableColumns
	src   replication.Source
	// The server's identity, asked once by commitTimeKnown.
	sysID, sysErr string
	timeline      uint32
}

var _ sink.Remapper = (*Remapper)(nil)

// NewRemapper returns the Remapper of cfg. pool reaches the source database
// with the stream's session parameters (replication.NewPool); src opens
// the read-only pool of the transforms, if any. Close it when done.
func NewRemapper(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, src replication.Source) (*Remapper, error) {
	m, err := mapper.New(Rules(cfg))
	if err != nil {
		return nil, fmt.Errorf("mapping: %w", err)
	}
	r := &Remapper{cfg: cfg, pool: pool, m: m, rels: map[string]*replication.TableColumns{}, src: src}
	if specs := TransformSpecs(cfg); len(specs) > 0 {
		if r.tpool, err = replication.NewTransformPool(ctx, src); err != nil {
			return nil, err
		}
		if r.t, err = transform.New(r.tpool, specs); err != nil {
			r.tpool.Close()
			return nil, fmt.Errorf("transform: %w", err)
		}
	}
	return r, nil
}

// Close releases the transforms' pool.
func (r *Remapper) Close() {
	if r.tpool != nil {
		r.tpool.Close()
	}
}

// transformOutputPrefix starts the reason of a letter for one output of a
// transformed row (mapper/transform): its key is derived from the row's,
// which the letter does not keep.
const transformOutputPrefix = "transform output: "

// remapPrefix starts the reason a letter keeps when it still cannot become
// an event (never transformOutputPrefix, so that a letter for a whole row
// is never taken for one output).
const remapPrefix = "mapped again with the current configuration: "

// Remap implements sink.Remapper.
func (r *Remapper) Remap(ctx context.Context, l sink.Letter) ([]json.RawMessage, string, bool, error) {
	if strings.HasPrefix(l.Reason, transformOutputPrefix) {
		// Its reason stays: it says what the letter is.
		return nil, "one event of the several a transform made of its row: the letter keeps that event's key, not the row's, so the keys of the row's events cannot be derived again; fix the data and insert the row again (then discard the letter)", true, nil
	}
	evs, reason, err := r.remap(ctx, l)
	if reason != "" {
		reason = remapPrefix + reason
	}
	return evs, reason, false, err
}

// remapTimeout bounds the database work of re-mapping one letter (the
// catalog read, rebuilding the row, a transform).
const remapTimeout = time.Minute

func (r *Remapper) remap(ctx context.Context, l sink.Letter) ([]json.RawMessage, string, error) {
	ctx, cancel := context.WithTimeout(ctx, remapTimeout)
	defer cancel()
	var tbl *config.Table
	for i := range r.cfg.Tables {
		if r.cfg.Tables[i].QualifiedName() == l.Table {
			tbl = &r.cfg.Tables[i]
		}
	}
	switch {
	case tbl == nil:
		return nil, fmt.Sprintf("the table %s is not in the configuration (tables)", l.Table), nil
	case l.IdempotencyKey == "":
		return nil, "the letter keeps no idempotency key", nil
	case len(l.Row) == 0:
		return nil, "the letter keeps no row", nil
	case l.Storage != nil && l.Storage.Row != nil && l.Storage.Row.Truncated:
		return nil, "the letter keeps only the first bytes of the row", nil
	case l.FirstFailedAt.IsZero():
		return nil, "the letter keeps no commit time", nil
	}
	lsn, err := cdc.ParseLSN(l.CommitLSN)
	if err != nil {
		return nil, fmt.Sprintf("the letter's position %q is not an LSN", l.CommitLSN), nil
	}
	tc, err := r.columns(ctx, replication.TableRef{Schema: tbl.Schema, Name: tbl.Name})
	if errors.Is(err, replication.ErrTableNotFound) {
		return nil, fmt.Sprintf("the table %s does not exist", l.Table), nil
	}
	if err != nil {
		return nil, "", err
	}
	rel, vals, reason, err := RebuildRow(ctx, r.pool, tc.Rel, l.Row)
	if reason != "" || err != nil {
		return nil, reason, err
	}
	// A mapping letter's first failure is its row's commit time (the sink
	// writes it so), which an event without a timestamp takes; a
	// backfilled row's is not (see commitTimeKnown).
	pos := cdc.Position{CommitLSN: lsn, Ordinal: l.Ordinal}
	at := func(commit time.Time) ([]json.RawMessage, string, error) {
		var evs []*cdc.Event
		if tbl.Transform != "" {
			out, err := r.t.Evaluate(ctx, []transform.Input{{Rel: rel, Values: vals, Pos: pos, CommitTime: commit, Key: l.IdempotencyKey}})
			if err != nil {
				return nil, "", err
			}
			evs = out[0]
		} else {
			ev := r.m.Map(&replication.Change{Rel: rel, Values: vals, Pos: pos, CommitTime: commit, IdempotencyKey: l.IdempotencyKey})
			if ev == nil {
				return nil, fmt.Sprintf("the table %s has no rule", l.Table), nil
			}
			evs = []*cdc.Event{ev}
		}
		if len(evs) == 0 {
			return nil, "the transform returns no event for this row", nil
		}
		out := make([]json.RawMessage, 0, len(evs))
		for _, ev := range evs {
			if ev.Reject != "" {
				return nil, ev.Reject, nil
			}
			out = append(out, ev.JSON)
		}
		return out, "", nil
	}
	evs, reason, err := at(l.FirstFailedAt)
	if reason != "" || err != nil {
		return nil, reason, err
	}
	// Does the outcome depend on the commit time? Then it must be known.
	other, otherReason, err := at(l.FirstFailedAt.Add(-1000 * time.Hour))
	if err != nil {
		return nil, "", err
	}
	if otherReason != "" || !sameEvents(evs, other) {
		if why := r.commitTimeKnown(ctx, l, pos); why != "" {
			return nil, why, nil
		}
	}
	return evs, "", nil
}

func sameEvents(a, b []json.RawMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

// commitTimeKnown returns "" when the letter's first failure is its row's
// commit time: the letter is the stream's (its key is the stream's key
// for its position, on one of the server's timelines); else why the
// commit time is not known (a backfilled row's letter has the time it was
// read). It asks the server's identity once (IDENTIFY_SYSTEM).
func (r *Remapper) commitTimeKnown(ctx context.Context, l sink.Letter, pos cdc.Position) string {
	const unknown = "the event takes its row's commit time (no timestamp column or a NULL one), which this letter does not keep"
	if r.sysErr == "" && r.sysID == "" {
		r.sysErr = "the server's identity is unknown"
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		conn, err := replication.ConnectReplication(ctx, r.src)
		if err != nil {
			r.sysErr = err.Error()
		} else {
			sys, err := pglogrepl.IdentifySystem(ctx, conn)
			conn.Close(context.WithoutCancel(ctx))
			if err != nil {
				r.sysErr = fmt.Sprintf("identify system: %v", err)
			} else {
				r.sysID, r.timeline, r.sysErr = sys.SystemID, uint32(sys.Timeline), ""
			}
		}
	}
	if r.sysID == "" {
		return unknown + " (its key cannot be checked against the stream's: " + r.sysErr + ")"
	}
	for tl := uint32(1); tl <= r.timeline; tl++ {
		if cdc.TimelineIdempotencyKey(r.sysID, r.cfg.Source.Slot, tl, pos) == l.IdempotencyKey {
			return ""
		}
	}
	return unknown + " (its key is not the stream's: a backfilled row, or another slot's)"
}

// columns returns the current columns of t (read once per replay).
func (r *Remapper) columns(ctx context.Context, t replication.TableRef) (*replication.TableColumns, error) {
	if tc, ok := r.rels[t.String()]; ok {
		return tc, nil
	}
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connect to the source: %w", err)
	}
	defer conn.Release()
	tc, err := replication.ReadTableColumns(ctx, conn.Conn().PgConn(), t)
	if err != nil {
		return nil, err
	}
	r.rels[t.String()] = tc
	return tc, nil
}

// notUTF8Key is the key of RowJSON's object for a value whose text is not
// valid UTF-8.
const notUTF8Key = "not_utf8"

// RebuildRow rebuilds the text values of a row stored as JSON by
// mapper.RowJSON, for the columns of rel that the row has (the relation
// returned: a column added to the table since is left out), as the stream
// would have decoded them. pool's sessions must have the stream's text
// formats (replication.NewPool).
//
// reason is set when the row cannot be rebuilt exactly: a value whose text
// was not valid UTF-8 (kept as {"not_utf8": ...}), a value PostgreSQL does
// not read back into its column, or one whose rebuilt text does not give
// the stored JSON again (the check covers the forms RowJSON changes: bytea
// as base64, timestamps, arrays). err is a failure of the database, not of
// the row.
//
// RowJSON writes an SQL NULL and a json or jsonb column's JSON null alike:
// both come back as NULL (the same property value; a properties column
// whose JSON null made the row a dead letter gives an event without
// properties).
func RebuildRow(ctx context.Context, pool *pgxpool.Pool, rel *replication.Relation, row []byte) (*replication.Relation, [][]byte, string, error) {
	var stored map[string]json.RawMessage
	if err := json.Unmarshal(row, &stored); err != nil || stored == nil {
		return nil, nil, "the stored row is not a JSON object that can be read back", nil
	}
	var cols []replication.Column
	var in, orig bytes.Buffer // the row as given to PostgreSQL, and as stored
	in.WriteByte('{')
	orig.WriteByte('{')
	var notUTF8 []string
	for _, c := range rel.Columns {
		v, ok := stored[c.Name]
		if !ok {
			continue
		}
		if isNotUTF8(v) {
			notUTF8 = append(notUTF8, c.Name)
			continue
		}
		if len(cols) > 0 {
			in.WriteByte(',')
			orig.WriteByte(',')
		}
		cols = append(cols, c)
		name, _ := json.Marshal(c.Name)
		in.Write(name)
		in.WriteByte(':')
		orig.Write(name)
		orig.WriteByte(':')
		orig.Write(v)
		if c.TypeOID == pgtype.ByteaOID && len(v) > 0 && v[0] == '"' {
			// RowJSON writes bytea as base64; PostgreSQL reads \x and hex.
			var s string
			if json.Unmarshal(v, &s) == nil && !strings.Contains(s, `\`) {
				raw, err := base64.StdEncoding.DecodeString(s)
				if err != nil {
					return nil, nil, fmt.Sprintf("column %q: the stored bytea is not base64", c.Name), nil
				}
				v, _ = json.Marshal(`\x` + hex.EncodeToString(raw))
			}
		}
		in.Write(v)
	}
	in.WriteByte('}')
	orig.WriteByte('}')
	if len(notUTF8) > 0 {
		return nil, nil, fmt.Sprintf("column(s) %q held text that is not valid UTF-8, which the letter keeps as bytes: it is not rebuilt", notUTF8), nil
	}
	sub := replication.NewRelation(rel.ID, rel.Namespace, rel.Name, cols)
	if len(cols) == 0 {
		return sub, nil, "the stored row has none of the table's columns", nil
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, nil, "", fmt.Errorf("connect to the source: %w", err)
	}
	defer conn.Release()
	pc := conn.Conn().PgConn()
	var sel strings.Builder
	sel.WriteString("SELECT ")
	for i, c := range cols {
		if i > 0 {
			sel.WriteString(", ")
		}
		sel.WriteString("r." + pgx.Identifier{c.Name}.Sanitize())
	}
	sel.WriteString(" FROM jsonb_populate_record(NULL::" + pgx.Identifier{rel.Namespace, rel.Name}.Sanitize() + ", $1::text::jsonb) r")
	// Text results: each column's output function, as pgoutput sends it.
	res := pc.ExecParams(ctx, sel.String(), [][]byte{in.Bytes()}, nil, nil, nil).Read()
	if res.Err != nil {
		if pgcat.IsDataError(res.Err) {
			return nil, nil, "PostgreSQL does not read the stored row back into the table's columns: " + res.Err.Error(), nil
		}
		return nil, nil, "", fmt.Errorf("rebuild the row of %s: %w", rel.QualifiedName(), res.Err)
	}
	if len(res.Rows) != 1 || len(res.Rows[0]) != len(cols) {
		return nil, nil, "", fmt.Errorf("rebuild the row of %s: %d rows returned", rel.QualifiedName(), len(res.Rows))
	}
	vals := replication.CloneValues(res.Rows[0])
	// The rebuilt values must give the stored JSON again.
	again := mapper.RowJSON(sub, vals)
	res = pc.ExecParams(ctx, `SELECT coalesce(string_agg(key, ',' ORDER BY key), '')
FROM jsonb_each($1::text::jsonb) a FULL JOIN jsonb_each($2::text::jsonb) b USING (key)
WHERE a.value IS DISTINCT FROM b.value`, [][]byte{orig.Bytes(), again}, nil, nil, nil).Read()
	if res.Err != nil {
		if pgcat.IsDataError(res.Err) {
			return nil, nil, "PostgreSQL does not read the stored row: " + res.Err.Error(), nil
		}
		return nil, nil, "", fmt.Errorf("check the rebuilt row of %s: %w", rel.QualifiedName(), res.Err)
	}
	if len(res.Rows) == 1 && len(res.Rows[0][0]) > 0 {
		return nil, nil, fmt.Sprintf("column(s) %s do not read back as stored (their type's JSON form loses something): the row is not rebuilt", res.Rows[0][0]), nil
	}
	return sub, vals, "", nil
}

// isNotUTF8 reports whether v is RowJSON's {"not_utf8": "\\x…"}.
func isNotUTF8(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || v[0] != '{' {
		return false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(v, &m) != nil || len(m) != 1 {
		return false
	}
	_, ok := m[notUTF8Key]
	return ok
}
