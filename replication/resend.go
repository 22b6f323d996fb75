package replication

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/internal/store"
)

// ResendPrefix is the prefix of the transactional logical decoding
// messages that carry a row committed to a table before it joined the
// publication (see RelationWatch.adoptNew). Other subscribers of the
// publication do not ask for messages and never see them.
const ResendPrefix = "pgsignal.resend"

// minMessagesVersion is the first server_version_num whose pgoutput sends
// logical decoding messages (the messages option).
const minMessagesVersion = 140000

// resendColumn is a column of a resent row's table.
type resendColumn struct {
	Name string `json:"n"`
	Type uint32 `json:"t"`
	Mod  int32  `json:"m"`
	Key  bool   `json:"k,omitempty"`
}

// resendRow is the content of a ResendPrefix message: the table (as
// configured), its OID, its published columns and the row's values in
// PostgreSQL's text form (null for NULL), as pgoutput would send them.
type resendRow struct {
	Schema string         `json:"s"`
	Table  string         `json:"t"`
	OID    uint32         `json:"o"`
	Token  string         `json:"k"`
	Cols   []resendColumn `json:"c"`
	Vals   []*string      `json:"v"`
}

// resendCache keeps one Relation per resent table definition, so that the
// mapper compiles it once.
type resendCache struct {
	mu   sync.Mutex
	rels map[string]*Relation
}

func (c *resendCache) relation(r *resendRow, cols []byte) *Relation {
	key := r.Schema + "\x00" + r.Table + "\x00" + string(cols)
	c.mu.Lock()
	defer c.mu.Unlock()
	if rel, ok := c.rels[key]; ok {
		return rel
	}
	if c.rels == nil {
		c.rels = map[string]*Relation{}
	}
	list := make([]Column, len(r.Cols))
	for i, col := range r.Cols {
		list[i] = Column{Name: col.Name, TypeOID: col.Type, TypeMod: col.Mod, Key: col.Key}
	}
	rel := NewRelation(r.OID, r.Schema, r.Table, list)
	c.rels[key] = rel
	return rel
}

// pluginArgs returns the pgoutput options of the stream: logical decoding
// messages are asked for where pgoutput has them (PostgreSQL 14 on).
func (s *Stream) pluginArgs(conn *pgconn.PgConn) []string {
	args := []string{"proto_version '1'", "publication_names " + pgcat.QuoteReplLiteral(s.cfg.Publication)}
	if serverMajor(conn.ParameterStatus("server_version")) >= minMessagesVersion/10000 {
		args = append(args, "messages 'true'")
	}
	return args
}

// handleMessage handles a logical decoding message: a ResendPrefix one is a
// row of a table that joined the publication after it was written, handled
// like an insert at this place of the transaction; others are ignored.
func (s *Stream) handleMessage(ctx context.Context, conn *pgconn.PgConn, wal []byte) error {
	m, err := pglogrepl.Parse(wal)
	if err != nil {
		return fmt.Errorf("parse message: %w", err)
	}
	msg, ok := m.(*pglogrepl.LogicalDecodingMessage)
	if !ok || !msg.Transactional || msg.Prefix != ResendPrefix {
		return nil
	}
	// Anyone may emit a message: only pgsignal's own, recorded with their
	// token in the bookkeeping schema, are rows; the others are ignored
	// whatever they hold.
	var head struct {
		OID   json.RawMessage `json:"o"`
		Token json.RawMessage `json:"k"`
	}
	var oid uint32
	var token string
	var ours bool
	if json.Unmarshal(msg.Content, &head) == nil && json.Unmarshal(head.OID, &oid) == nil && json.Unmarshal(head.Token, &token) == nil {
		if ours, err = s.cfg.Relations.resendToken(ctx, oid, token); err != nil {
			return err // the connection is rebuilt and the message read again
		}
	}
	if !ours {
		s.log.Warn("ignored a pgsignal.resend message that pgsignal did not write", zap.Stringer("commit_lsn", s.commitLSN))
		return nil
	}
	var raw struct {
		resendRow
		RawCols json.RawMessage `json:"c"`
	}
	if err := json.Unmarshal(msg.Content, &raw); err != nil {
		return fmt.Errorf("resent row at %s: %w", s.commitLSN, err)
	}
	r := raw.resendRow
	if err := json.Unmarshal(raw.RawCols, &r.Cols); err != nil {
		return fmt.Errorf("resent row at %s: columns: %w", s.commitLSN, err)
	}
	if len(r.Vals) != len(r.Cols) {
		return fmt.Errorf("resent row of %s at %s has %d values for %d columns", r.Table, s.commitLSN, len(r.Vals), len(r.Cols))
	}
	rel := s.resend.relation(&r, raw.RawCols)
	vals := make([][]byte, len(r.Vals))
	for i, v := range r.Vals {
		if v != nil {
			vals[i] = []byte(*v)
		}
	}
	s.rels[rel.ID] = rel
	return s.handleChange(ctx, conn, rel.ID, vals, false, -1)
}

// canResend reports whether the server can carry resent rows (logical
// decoding messages in pgoutput).
func canResend(ctx context.Context, pool *pgxpool.Pool) (bool, error) {
	var num int
	if err := pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&num); err != nil {
		return false, fmt.Errorf("server version: %w", err)
	}
	return num >= minMessagesVersion, nil
}

// adoptNew makes a configured table that now names a new relation, which
// the publication does not hold, part of the stream without losing a row
// (full mode, PostgreSQL 14 or later): in one transaction it locks the new
// table against writes, adds it to the publication, records it, and emits
// each row the table holds then (but the rows a migration copied from the
// old table, identical to one of its rows while it exists: copiedCondition) as a
// transactional message the stream turns into an event at that place of
// the WAL. Rows committed after it are published as usual. It returns the
// number of rows resent; an error leaves everything as it was.
func (w *RelationWatch) adoptNew(ctx context.Context, pool *pgxpool.Pool, t PublishedTable, was, cur uint32) (n int64, err error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // a no-op after Commit
	if _, err := tx.Exec(ctx, `SET LOCAL lock_timeout = '2s'`); err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE `+t.Quoted()+` IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return 0, fmt.Errorf("lock %s: %w", t.Display(), err)
	}
	if oid, err := relationOID(ctx, pool, t.TableRef); err != nil || oid != cur {
		return 0, errors.Join(err, fmt.Errorf("table %s changed again", t.Display()))
	}
	// Another pgsignal on the same slot (high availability) may have done
	// it while this one waited for the lock.
	if have, err := publicationMembers(ctx, pool, w.Publication); err != nil {
		return 0, err
	} else if _, in := have[t.TableRef]; in {
		return 0, errAdopted
	}
	tc, err := ReadTableColumns(ctx, conn.Conn().PgConn(), t.TableRef)
	if err != nil {
		return 0, err
	}
	cols := make([]resendColumn, len(tc.Rel.Columns))
	vals := make([]string, len(tc.Rel.Columns))
	for i, c := range tc.Rel.Columns {
		cols[i] = resendColumn{Name: c.Name, Type: c.TypeOID, Mod: c.TypeMod, Key: c.Key}
		q := "n." + pgcat.QuoteIdent(c.Name)
		vals[i] = "CASE WHEN num_nulls(" + q + ") = 1 THEN NULL ELSE format('%s', " + q + ") END"
	}
	colsJSON, err := json.Marshal(cols)
	if err != nil {
		return 0, err
	}
	if _, err := tx.Exec(ctx, `ALTER PUBLICATION `+pgcat.QuoteIdent(w.Publication)+` ADD TABLE `+t.ForTable()); err != nil {
		return 0, fmt.Errorf("add %s to publication %q: %w", t.Display(), w.Publication, err)
	}
	if err := w.adoptIdentity(ctx, tx, t.TableRef, cur); err != nil {
		return 0, err
	}
	token := rand.Text()
	if err := store.RecordResend(ctx, tx, w.Schema, w.Slot, t.Schema, t.Name, cur, token); err != nil {
		return 0, fmt.Errorf("record the relation of %s: %w", t.Display(), err)
	}
	var conds []string
	if t.Where != "" {
		conds = append(conds, "("+t.Where+")")
	}
	if copied, err := copiedCondition(ctx, tx, was, tc); err != nil {
		return 0, err
	} else if copied != "" {
		conds = append(conds, copied)
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	sql := `SELECT count(pg_catalog.pg_logical_emit_message(true, '` + ResendPrefix + `', pg_catalog.jsonb_build_object(
  's', $1::text, 't', $2::text, 'o', $3::bigint, 'k', $5::text, 'c', $4::jsonb, 'v', pg_catalog.jsonb_build_array(` + strings.Join(vals, ", ") + `))::text))
FROM ` + t.Quoted() + ` AS n` + where
	if err := tx.QueryRow(ctx, sql, t.Schema, t.Name, int64(cur), string(colsJSON), token).Scan(&n); err != nil {
		return 0, fmt.Errorf("resend the rows of %s: %w", t.Display(), err)
	}
	// Known before the commit, and kept after a failed one (which may
	// have committed): the stream may decode the messages at once.
	w.mu.Lock()
	w.tokens[cur] = token
	w.mu.Unlock()
	if err := tx.Commit(ctx); err != nil {
		return 0, err
	}
	return n, nil
}

// adoptIdentity returns a permanent error when the publication, with t's
// new relation cur just added to it (in tx), publishes updates or deletes
// and a table of it has no replica identity, or a row filter uses a column
// outside it: PostgreSQL would reject every UPDATE or DELETE of it, the
// application's own writes. Start-up refuses the same (applyPublication).
func (w *RelationWatch) adoptIdentity(ctx context.Context, tx pgx.Tx, t TableRef, cur uint32) error {
	var upd, del bool
	if err := tx.QueryRow(ctx, `SELECT pubupdate, pubdelete FROM pg_catalog.pg_publication WHERE pubname = $1`, w.Publication).Scan(&upd, &del); err != nil {
		return fmt.Errorf("look up publication %q: %w", w.Publication, err)
	}
	if !upd && !del {
		return nil
	}
	bad, err := UpdateIdentityProblems(ctx, tx, w.Publication, nil)
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		what := "updates"
		switch {
		case upd && del:
			what = "updates and deletes"
		case del:
			what = "deletes"
		}
		return permanent("table %s is now a new table (OID %d) without a replica identity, and publication %q publishes %s: were pgsignal to add it, PostgreSQL would reject every UPDATE or DELETE of %s, the application's own writes. pgsignal did not add it, and stops rather than lose its rows. As an owner of the table, give it a replica identity (a primary key, or):\n  %s\nthen start pgsignal again: it adds the table to the publication and sends the rows written to it since the migration",
			t.Display(), cur, w.Publication, what, strings.Join(bad, ", "), strings.ReplaceAll(UpdateIdentityFix(bad), "\n", "\n  "))
	}
	if err := checkReplicaIdentity(ctx, tx, w.Publication); err != nil {
		if errors.Is(err, ErrPermanent) {
			return fmt.Errorf("table %s is now a new table (OID %d): pgsignal did not add it to the publication: %w", t.Display(), cur, err)
		}
		return err
	}
	return nil
}

// copiedCondition returns the condition that leaves out the rows of the new
// table a migration copied from the old relation was, while it exists: they
// were sent already. A row is left out only when the whole row is one of
// the old relation's: same primary key and, in every column the two tables
// share, the same value (compared in text form, so that any type
// compares, a changed type included). A row that only reuses an old key (a
// table rotated with a fresh sequence) is sent. It returns "" (every row is
// sent) when the old relation is gone, or the new table has no primary key
// that the old one has too, with the same types.
func copiedCondition(ctx context.Context, tx pgx.Tx, was uint32, tc *TableColumns) (string, error) {
	if len(tc.PrimaryKey) == 0 {
		return "", nil
	}
	old, ok, err := lookupRelation(ctx, tx, was)
	if err != nil || !ok {
		return "", err
	}
	// The columns both tables have, and whether their types are the same.
	rows, err := tx.Query(ctx, `SELECT a.attname::text, a.atttypid = o.atttypid FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_attribute o ON o.attrelid = $1 AND o.attname = a.attname AND o.attnum > 0 AND NOT o.attisdropped
WHERE a.attrelid = $2 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, was, tc.Rel.ID)
	if err != nil {
		return "", fmt.Errorf("read the columns of %s: %w", old.Display(), err)
	}
	sameType := map[string]bool{}
	var shared []string
	var name string
	var same bool
	if _, err := pgx.ForEachRow(rows, []any{&name, &same}, func() error {
		sameType[name] = same
		shared = append(shared, name)
		return nil
	}); err != nil {
		return "", fmt.Errorf("read the columns of %s: %w", old.Display(), err)
	}
	var eq, oldVals, newVals []string
	for _, k := range tc.PrimaryKey {
		name := tc.Rel.Columns[k].Name
		if !sameType[name] {
			return "", nil
		}
		c := pgcat.QuoteIdent(name)
		eq = append(eq, "o."+c+" = n."+c)
	}
	for _, name := range shared {
		c := pgcat.QuoteIdent(name)
		oldVals = append(oldVals, "o."+c+"::text")
		newVals = append(newVals, "n."+c+"::text")
	}
	return "NOT EXISTS (SELECT 1 FROM " + old.Quoted() + " AS o WHERE " + strings.Join(eq, " AND ") +
		" AND ROW(" + strings.Join(oldVals, ", ") + ") IS NOT DISTINCT FROM ROW(" + strings.Join(newVals, ", ") + "))", nil
}

// errAdopted: another pgsignal on the same slot adopted the table.
var errAdopted = errors.New("adopted by another pgsignal")

// errLockBusy: the new table's lock was not granted within lock_timeout
// (a long transaction writes to it); adopting it is tried again later.
var errLockBusy = errors.New("the new table is busy")

// adopt resends the rows of t's new relation when the watch may
// (Resend), and reports whether it did. An error wrapping errLockBusy
// means "try again later"; any other failure is logged and left to the
// caller's error.
func (w *RelationWatch) adopt(ctx context.Context, pool *pgxpool.Pool, t TableRef, was, cur uint32) (bool, error) {
	if !w.Resend {
		return false, nil
	}
	ok, err := canResend(ctx, pool)
	if err != nil || !ok {
		return false, nil
	}
	pt := PublishedTable{TableRef: t, Where: w.Filters[t]}
	n, err := w.adoptNew(ctx, pool, pt, was, cur)
	if errors.Is(err, errAdopted) {
		w.mu.Lock()
		w.bound[t], w.known[cur] = cur, t
		w.mu.Unlock()
		w.log().Info("another pgsignal on this slot added the new table to the publication", zap.String("table", t.Display()))
		return true, nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == pgcat.LockNotAvailable {
		w.log().Warn("the new table is locked by a long transaction; adding it to the publication again soon", zap.String("table", t.Display()))
		return false, fmt.Errorf("%w: %w", errLockBusy, err)
	}
	if errors.Is(err, ErrPermanent) {
		return false, err
	}
	if err != nil {
		w.log().Error("could not add the new table to the publication with its rows", zap.String("table", t.Display()), zap.Error(err))
		return false, nil
	}
	w.mu.Lock()
	w.bound[t], w.known[cur] = cur, t
	w.mu.Unlock()
	w.log().Warn("the configured table is now a new table: pgsignal added it to the publication and sends the rows written to it before (rows a migration copied from the old table, identical to one of its rows, were sent already)",
		zap.String("table", t.Display()), zap.Uint32("oid", cur), zap.Uint32("previous_oid", was), zap.Int64("rows_resent", n))
	return true, nil
}

// resendToken reports whether token is the resend token of the relation
// oid adopted by the watch (or, in full mode, by another pgsignal on the
// same slot: the bookkeeping schema is asked on a miss). Safe on a nil
// watch (false).
func (w *RelationWatch) resendToken(ctx context.Context, oid uint32, token string) (bool, error) {
	if w == nil || token == "" {
		return false, nil
	}
	w.mu.Lock()
	known, pool := w.tokens[oid], w.pool
	w.mu.Unlock()
	if known == token || w.Schema == "" || pool == nil {
		return known == token, nil
	}
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	found, err := store.HasResendToken(qctx, pool, w.Schema, w.Slot, oid, token)
	if !found || err != nil {
		return false, err
	}
	w.mu.Lock()
	w.tokens[oid] = token
	w.mu.Unlock()
	return true, nil
}
