// Package preview shows what the configured tables would send before
// pgsignal goes live: the latest rows of each table, read with SELECT in a
// read-only transaction (no slot, nothing written), mapped by the same
// rules or SQL transform as the stream, as the events they become or the
// dead letters and why.
package preview

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/app"
	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/mapper"
	"github.com/pgsignal/pgsignal/mapper/transform"
	"github.com/pgsignal/pgsignal/replication"
)

// DefaultLimit is the number of rows shown per table by default.
const DefaultLimit = 20

// Options configure a preview.
type Options struct {
	Config *config.Config
	// Source reaches the database (its DSN and dialer).
	Source replication.Source
	// Table, when not empty, limits the preview to one configured table
	// ("schema.table", or "table" for one in any schema).
	Table string
	// Limit is the number of latest rows per table (DefaultLimit when 0).
	Limit int
	// Now is the commit time given to rows whose event takes it (no
	// timestamp column); time.Now when nil.
	Now func() time.Time
	// Progress, when set, is told how many rows of the preview have been
	// mapped (a slow transform).
	Progress func(done, total int64)
}

// Report is a preview of every selected table.
type Report struct {
	Tables []Table `json:"tables"`
}

// Table is the preview of one table.
type Table struct {
	Table string `json:"table"`
	// OrderBy are the columns whose latest values were read.
	OrderBy []string `json:"order_by"`
	// Mapping is "columns" (the table's mapping) or "transform".
	Mapping string `json:"mapping"`
	Rows    []Row  `json:"rows"`
	// Error says why the table could not be previewed.
	Error string `json:"error,omitempty"`
}

// Row is one row and what it becomes.
type Row struct {
	// Key is the row's ordering columns and their values (text form).
	Key []KeyValue `json:"key"`
	// Events are the events the row becomes (none: the transform returns
	// no row for it; more than one: it fans out).
	Events []Event `json:"events"`
	// DeadLetter is set when the row (or one of its transform's outputs)
	// would become a dead letter.
	DeadLetters []DeadLetter `json:"dead_letters,omitempty"`
}

// KeyValue is a column and its value.
type KeyValue struct {
	Column string  `json:"column"`
	Value  *string `json:"value"`
}

// Event is an event as it would be sent.
type Event struct {
	Name       string          `json:"name"`
	ExternalID string          `json:"external_id"`
	Timestamp  string          `json:"timestamp"`
	Properties json.RawMessage `json:"properties,omitempty"`
	// Size is the event's size in bytes as sent (OneSignal accepts at most
	// 2,024).
	Size int `json:"size"`
}

// DeadLetter is a dead letter a row would become.
type DeadLetter struct {
	Reason string `json:"reason"`
	// Row is the source row as the dead letter keeps it.
	Row json.RawMessage `json:"row,omitempty"`
}

// previewSystemID stands for the database's system identifier in the
// events' idempotency keys: a key of the same length as the stream's, so
// that sizes are exact.
const previewSystemID = "preview"

// Run previews the configured tables. An error means no table could be
// read (the connection); a table that cannot be previewed has Error set.
func Run(ctx context.Context, opts Options) (*Report, error) {
	cfg := opts.Config
	limit := opts.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	tables, err := selectTables(cfg, opts.Table)
	if err != nil {
		return nil, err
	}
	pool, err := replication.NewPool(ctx, opts.Source, 1)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	mp, err := mapper.New(app.Rules(cfg))
	if err != nil {
		return nil, fmt.Errorf("mapping: %w", err)
	}
	var tr *transform.Transformer
	for _, t := range tables {
		if t.Transform == "" {
			continue
		}
		tpool, err := replication.NewTransformPool(ctx, opts.Source)
		if err != nil {
			return nil, err
		}
		defer tpool.Close()
		if tr, err = transform.New(tpool, app.TransformSpecs(cfg)); err != nil {
			return nil, fmt.Errorf("transform: %w", err)
		}
		if err := tr.Check(ctx); err != nil {
			return nil, err
		}
		break
	}

	// Read every table's rows in one read-only transaction.
	read, err := readRows(ctx, pool, tables, limit)
	if err != nil {
		return nil, err
	}
	var total, done int64
	for _, r := range read {
		total += int64(len(r.rows))
	}
	rep := &Report{}
	at := now()
	for i, t := range tables {
		r := read[i]
		pt := Table{Table: t.Schema + "." + t.Name, OrderBy: r.orderBy, Mapping: "columns", Rows: []Row{}}
		if t.Transform != "" {
			pt.Mapping = "transform"
		}
		if r.err != "" {
			pt.Error = r.err
			rep.Tables = append(rep.Tables, pt)
			continue
		}
		for _, row := range r.rows {
			ch := &replication.Change{Rel: r.rel, Values: row.values, CommitTime: at,
				IdempotencyKey: cdc.BackfillKey(previewSystemID, r.rel.QualifiedName(), row.keyVals)}
			var evs []*cdc.Event
			if t.Transform != "" {
				out, err := tr.Evaluate(ctx, []transform.Input{{Rel: ch.Rel, Values: ch.Values, CommitTime: ch.CommitTime, Key: ch.IdempotencyKey}})
				if err != nil {
					return nil, fmt.Errorf("transform of %s: %w", pt.Table, err)
				}
				evs = out[0]
			} else if ev := mp.Map(ch); ev != nil {
				evs = []*cdc.Event{ev}
			}
			pr := Row{Key: row.key, Events: []Event{}}
			for _, ev := range evs {
				if ev.Reject != "" {
					pr.DeadLetters = append(pr.DeadLetters, DeadLetter{Reason: ev.Reject, Row: json.RawMessage(rowJSON(ev, r.rel, row.values))})
					continue
				}
				e, err := eventOf(ev)
				if err != nil {
					return nil, err
				}
				pr.Events = append(pr.Events, e)
			}
			pt.Rows = append(pt.Rows, pr)
			done++
			if opts.Progress != nil {
				opts.Progress(done, total)
			}
		}
		rep.Tables = append(rep.Tables, pt)
	}
	return rep, nil
}

// rowJSON is the source row a dead letter keeps.
func rowJSON(ev *cdc.Event, rel *replication.Relation, vals [][]byte) []byte {
	if len(ev.Row) > 0 {
		return ev.Row
	}
	return mapper.RowJSON(rel, vals)
}

// eventOf reads an event's fields back from its JSON.
func eventOf(ev *cdc.Event) (Event, error) {
	var e struct {
		Name       string          `json:"name"`
		ExternalID string          `json:"external_id"`
		Timestamp  string          `json:"timestamp"`
		Properties json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(ev.JSON, &e); err != nil {
		return Event{}, fmt.Errorf("read back event %s: %w", ev.JSON, err)
	}
	return Event{Name: e.Name, ExternalID: e.ExternalID, Timestamp: e.Timestamp, Properties: e.Properties, Size: len(ev.JSON)}, nil
}

// selectTables returns the configured tables to preview.
func selectTables(cfg *config.Config, name string) ([]config.Table, error) {
	if name == "" {
		return cfg.Tables, nil
	}
	var out, names []string
	var sel []config.Table
	for _, t := range cfg.Tables {
		q := t.Schema + "." + t.Name
		names = append(names, q)
		if name == q || name == t.Name {
			sel = append(sel, t)
			out = append(out, q)
		}
	}
	switch {
	case len(sel) == 0:
		return nil, fmt.Errorf("--table %s: not a configured table; the configured tables are %s", name, strings.Join(names, ", "))
	case len(sel) > 1:
		return nil, fmt.Errorf("--table %s: names %s; write the schema too", name, strings.Join(out, " and "))
	}
	return sel, nil
}

// tableRows are the latest rows read from one table.
type tableRows struct {
	rel     *replication.Relation
	orderBy []string
	rows    []readRow
	err     string
}

type readRow struct {
	values  [][]byte
	key     []KeyValue
	keyVals [][]byte
}

// readRows reads the latest limit rows of each table in one read-only
// transaction, values in the stream's text forms, newest first.
func readRows(ctx context.Context, pool *pgxpool.Pool, tables []config.Table, limit int) ([]tableRows, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("preview: connect: %w", err)
	}
	defer conn.Release()
	pc := conn.Conn().PgConn()
	if err := pc.Exec(ctx, `BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`).Close(); err != nil {
		return nil, fmt.Errorf("preview: begin a read-only transaction: %w", err)
	}
	defer func() {
		if err := pc.Exec(context.WithoutCancel(ctx), `ROLLBACK`).Close(); err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	out := make([]tableRows, len(tables))
	for i, t := range tables {
		tr, err := readTable(ctx, pc, t, limit)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			var perr interface{ SQLState() string }
			if !errors.As(err, &perr) && !errors.Is(err, replication.ErrTableNotFound) {
				return nil, fmt.Errorf("preview %s.%s: %w", t.Schema, t.Name, err)
			}
			out[i] = tableRows{err: err.Error()}
			// A failed statement aborts the transaction: start another.
			if err := pc.Exec(ctx, `ROLLBACK; BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY`).Close(); err != nil {
				return nil, fmt.Errorf("preview: begin a read-only transaction: %w", err)
			}
			continue
		}
		out[i] = *tr
	}
	return out, nil
}

// readTable reads t's latest limit rows: by its backfill column when it has
// one, else by its primary key (or replica identity index), else by
// physical position.
func readTable(ctx context.Context, pc *pgconn.PgConn, t config.Table, limit int) (*tableRows, error) {
	tc, err := replication.ReadTableColumns(ctx, pc, replication.TableRef{Schema: t.Schema, Name: t.Name})
	if err != nil {
		return nil, err
	}
	rel := tc.Rel
	key := tc.PrimaryKey
	if len(key) == 0 {
		key = tc.ReplicaIdentity
	}
	var orderBy []string
	if t.Backfill != nil {
		col := t.Backfill.Column
		if col == "" {
			col = t.Timestamp
		}
		if col != "" {
			orderBy = append(orderBy, col)
		}
	}
	for _, k := range key {
		orderBy = append(orderBy, rel.Columns[k].Name)
	}
	list := make([]string, len(rel.Columns))
	for i, c := range rel.Columns {
		list[i] = pgx.Identifier{c.Name}.Sanitize()
	}
	order := make([]string, 0, len(orderBy)+1)
	for _, c := range orderBy {
		order = append(order, pgx.Identifier{c}.Sanitize()+" DESC")
	}
	if len(order) == 0 {
		orderBy = []string{"ctid"}
		order = []string{"ctid DESC"}
	}
	sql := `SELECT ` + strings.Join(list, ", ") + ` FROM ` + pgx.Identifier{t.Schema, t.Name}.Sanitize()
	if strings.TrimSpace(t.Where) != "" {
		sql += ` WHERE (` + t.Where + `)`
	}
	sql += ` ORDER BY ` + strings.Join(order, ", ") + ` LIMIT ` + strconv.Itoa(limit)
	res := pc.ExecParams(ctx, sql, nil, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	out := &tableRows{rel: rel, orderBy: orderBy}
	for _, vals := range res.Rows {
		r := readRow{values: vals}
		for _, c := range orderBy {
			i := rel.Index(c)
			if i < 0 {
				continue
			}
			kv := KeyValue{Column: c}
			if vals[i] != nil {
				s := string(vals[i])
				kv.Value = &s
			}
			r.key = append(r.key, kv)
		}
		for _, k := range key {
			r.keyVals = append(r.keyVals, vals[k])
		}
		out.rows = append(out.rows, r)
	}
	return out, nil
}
