package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/internal/store"
)

// RelationWatch keeps each configured table bound to the relation (OID)
// pgsignal streams, and notices when a name stops meaning that relation: a
// migration that renames the table and creates a new one under its name
// (the new table is not in the publication: its rows would be lost
// silently), a table renamed or dropped, a table taken out of the
// publication. Each of these is a permanent error that names the table and
// the statements to run; pgsignal stops rather than skip rows. Rows the
// stream receives for a bound relation that was renamed keep their
// configured name (Adopt), so they are mapped, not dropped.
//
// In full mode the bound OIDs are kept in the bookkeeping schema (table
// relations), so a restart after such a migration refuses to add the new
// table to the publication silently: rows committed to it before it joins
// the publication are not in the replication stream.
type RelationWatch struct {
	Publication string
	Tables      []TableRef
	// Schema is the bookkeeping schema that keeps the bound OIDs, "" to keep
	// them in memory only (read-only mode); Slot keys them.
	Schema, Slot string
	// Resend (full mode) lets the watch add a new table that took a
	// configured name to the publication itself, with the rows it holds
	// (PostgreSQL 14 or later; see adoptNew), instead of stopping.
	Resend bool
	// Filters are the configured tables' row filters (where).
	Filters map[TableRef]string
	Logger  *zap.Logger

	mu      sync.Mutex
	bound   map[TableRef]uint32 // each configured table's relation
	known   map[uint32]TableRef // every relation bound to a configured table
	renamed map[uint32]string   // renamed relations already logged
	tokens  map[uint32]string   // resend tokens of adopted relations (see adoptNew)
	pool    *pgxpool.Pool       // set by Bind, for resendToken
}

// RelationCheckInterval is how often Run reads the catalog by default.
const RelationCheckInterval = 10 * time.Second

func (w *RelationWatch) log() *zap.Logger {
	if w.Logger == nil {
		return zap.NewNop()
	}
	return w.Logger
}

// relationOID returns the OID of t, 0 when it does not exist.
func relationOID(ctx context.Context, pool *pgxpool.Pool, t TableRef) (uint32, error) {
	var oid uint32
	err := pool.QueryRow(ctx, `SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2`, t.Schema, t.Name).Scan(&oid)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("look up table %s: %w", t.Display(), err)
	}
	return oid, nil
}

// relationName returns the current name of the relation oid, "" when it
// no longer exists.
func relationName(ctx context.Context, pool *pgxpool.Pool, oid uint32) (string, error) {
	t, ok, err := lookupRelation(ctx, pool, oid)
	if !ok || err != nil {
		return "", err
	}
	return t.Display(), nil
}

// lookupRelation returns the current schema and name of the relation oid;
// false when it no longer exists.
func lookupRelation(ctx context.Context, q pgcat.Querier, oid uint32) (TableRef, bool, error) {
	var t TableRef
	err := q.QueryRow(ctx, `SELECT n.nspname::text, c.relname::text FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1`, oid).Scan(&t.Schema, &t.Name)
	if errors.Is(err, pgx.ErrNoRows) {
		return TableRef{}, false, nil
	}
	if err != nil {
		return TableRef{}, false, fmt.Errorf("look up relation %d: %w", oid, err)
	}
	return t, true, nil
}

// Prepare runs before the publication is synchronized (full mode only; a
// no-op without Schema): a configured table whose recorded relation was
// replaced by a new one that the publication does not hold is a permanent
// error, instead of being added silently; a new one the publication holds
// already (someone ran the statements) is accepted with a warning.
func (w *RelationWatch) Prepare(ctx context.Context, pool *pgxpool.Pool) error {
	w.init()
	if w.Schema == "" {
		return nil
	}
	if err := store.EnsureRelations(ctx, pool, w.Schema); err != nil {
		return err
	}
	bound, err := store.ReadRelations(ctx, pool, w.Schema, w.Slot)
	if err != nil {
		return err
	}
	last := map[TableRef]uint32{}
	for _, b := range bound {
		t := TableRef{Schema: b.Schema, Name: b.Name}
		last[t] = b.RelID
		w.known[b.RelID] = t
		if b.ResendToken != "" {
			w.tokens[b.RelID] = b.ResendToken
		}
	}
	for _, t := range w.Tables {
		rec, ok := last[t]
		if !ok {
			continue
		}
		cur, err := relationOID(ctx, pool, t)
		if err != nil {
			return err
		}
		if cur == rec || cur == 0 {
			continue // the same table; a missing one is the publication's to report
		}
		in, err := inPublication(ctx, pool, w.Publication, cur)
		if err != nil {
			return err
		}
		if !in {
			done, err := w.adopt(ctx, pool, t, rec, cur)
			for try := 1; errors.Is(err, errLockBusy) && try < 5; try++ {
				done, err = w.adopt(ctx, pool, t, rec, cur)
			}
			if err != nil {
				return err
			}
			if done {
				continue
			}
			return w.swapError(ctx, pool, t, rec, cur, false)
		}
		if adopted, err := w.adoptedByPeer(ctx, pool, t, cur); err != nil {
			return err
		} else if adopted {
			continue
		}
		since, err := publishedSinceCreation(ctx, pool, w.Publication, cur)
		if err != nil {
			return err
		}
		if since {
			w.log().Warn("the configured table is now a new table, published since its creation: pgsignal follows it",
				zap.String("table", t.Display()), zap.Uint32("oid", cur), zap.Uint32("previous_oid", rec))
			continue
		}
		w.log().Warn("the configured table is now a different relation, which the publication holds: pgsignal follows it; rows committed to it before it joined the publication were not streamed",
			zap.String("table", t.Display()), zap.Uint32("oid", cur), zap.Uint32("previous_oid", rec))
	}
	return nil
}

func (w *RelationWatch) init() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.bound == nil {
		w.bound, w.known, w.renamed, w.tokens = map[TableRef]uint32{}, map[uint32]TableRef{}, map[uint32]string{}, map[uint32]string{}
	}
}

// Bind records the relation each configured table names now, once the
// publication is synchronized.
func (w *RelationWatch) Bind(ctx context.Context, pool *pgxpool.Pool) error {
	w.init()
	w.mu.Lock()
	w.pool = pool
	w.mu.Unlock()
	for _, t := range w.Tables {
		oid, err := relationOID(ctx, pool, t)
		if err != nil {
			return err
		}
		if oid == 0 {
			return permanent("table %s does not exist", t.Display())
		}
		w.mu.Lock()
		w.bound[t], w.known[oid] = oid, t
		w.mu.Unlock()
		if w.Schema == "" {
			continue
		}
		if err := store.RecordRelation(ctx, pool, w.Schema, w.Slot, t.Schema, t.Name, oid); err != nil {
			return fmt.Errorf("record the relation of %s: %w", t.Display(), err)
		}
	}
	return nil
}

// Check reads the catalog and returns a permanent error when a configured
// table no longer names its bound relation, or is not in the publication.
func (w *RelationWatch) Check(ctx context.Context, pool *pgxpool.Pool) error {
	have, err := publicationMembers(ctx, pool, w.Publication)
	if err != nil {
		return err
	}
	for _, t := range w.Tables {
		w.mu.Lock()
		bound := w.bound[t]
		w.mu.Unlock()
		cur, err := relationOID(ctx, pool, t)
		if err != nil {
			return err
		}
		_, in := have[t]
		if cur != 0 && cur != bound {
			// have was read by name before cur: judge the new relation's
			// membership by its OID.
			if in, err = inPublication(ctx, pool, w.Publication, cur); err != nil {
				return err
			}
		}
		switch {
		case cur == 0:
			now, err := relationName(ctx, pool, bound)
			if err != nil {
				return err
			}
			what := "was dropped"
			if now != "" {
				what = "was renamed to " + now
			}
			return permanent("table %s no longer exists: the table pgsignal streamed (OID %d) %s. pgsignal stops rather than lose its rows: point tables[].table at the table the rows now go to (pgsignal adds it to publication %s at its next start in full mode), or restore the name",
				t.Display(), bound, what, pgcat.QuoteIdent(w.Publication))
		case cur != bound:
			if in {
				since, err := publishedSinceCreation(ctx, pool, w.Publication, cur)
				if err != nil {
					return err
				}
				if since {
					if err := w.rebind(ctx, pool, t, bound, cur); err != nil {
						return err
					}
					continue
				}
				if adopted, err := w.adoptedByPeer(ctx, pool, t, cur); err != nil {
					return err
				} else if adopted {
					continue
				}
			}
			if !in {
				done, err := w.adopt(ctx, pool, t, bound, cur)
				if err != nil {
					return err // busy: the next tick tries again
				}
				if done {
					continue
				}
			}
			return w.swapError(ctx, pool, t, bound, cur, in)
		case !in:
			return permanent("table %s is no longer in publication %s, so its rows are not streamed; pgsignal stops rather than skip them. As an owner of the table, add it back:\n  ALTER PUBLICATION %s ADD TABLE %s;\nthen start pgsignal again (rows committed to the table meanwhile were not streamed: re-send them as described in the README, \"Migrations that replace a table\")",
				t.Display(), pgcat.QuoteIdent(w.Publication), pgcat.QuoteIdent(w.Publication), t.Quoted())
		}
	}
	return nil
}

// publishedSinceCreation reports whether the publication has published
// relation oid since it was created: through TABLES IN SCHEMA or FOR ALL
// TABLES, or added to it in the transaction that created it. The creating
// transaction is read from the relation's system-column rows in
// pg_attribute (attnum < 0), which are written by CREATE only: ALTER TABLE
// rewrites pg_class's row (a column added, REPLICA IDENTITY, a rename), not
// these. It reports true only when every such row has the xmin of the
// pg_publication_rel row; anything else (a GRANT on a system column, the
// rows unreadable) is not a proof, and the relation is taken for one that
// joined the publication after rows were written to it.
func publishedSinceCreation(ctx context.Context, pool *pgxpool.Pool, publication string, oid uint32) (bool, error) {
	var member bool
	var same *bool
	err := pool.QueryRow(ctx, `SELECT pr.xmin IS NOT NULL,
  (SELECT bool_and(a.xmin::text = pr.xmin::text) FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum < 0)
FROM pg_catalog.pg_class c
LEFT JOIN (pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid AND p.pubname = $1)
  ON pr.prrelid = c.oid
WHERE c.oid = $2`, publication, oid).Scan(&member, &same)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up relation %d in publication %q: %w", oid, publication, err)
	}
	if !member {
		// No row in pg_publication_rel: published from its creation only
		// when a member through its schema or FOR ALL TABLES; otherwise
		// it is not a member at all (a swap seen half-way).
		return inPublication(ctx, pool, publication, oid)
	}
	return same != nil && *same, nil
}

// inPublication reports whether relation oid is in the publication now:
// listed in it, or through FOR ALL TABLES or (PostgreSQL 15+) its schema.
// Membership is judged by OID, not by name, so that a table swapped
// between two catalog reads is not taken for the one before it.
func inPublication(ctx context.Context, pool *pgxpool.Pool, publication string, oid uint32) (bool, error) {
	var in bool
	err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_rel pr JOIN pg_catalog.pg_publication p ON p.oid = pr.prpubid
  WHERE p.pubname = $1 AND pr.prrelid = $2)
 OR EXISTS (SELECT 1 FROM pg_catalog.pg_publication p WHERE p.pubname = $1 AND p.puballtables)`, publication, oid).Scan(&in)
	if err != nil {
		return false, fmt.Errorf("look up relation %d in publication %q: %w", oid, publication, err)
	}
	if in {
		return true, nil
	}
	var num int
	if err := pool.QueryRow(ctx, `SELECT current_setting('server_version_num')::int`).Scan(&num); err != nil {
		return false, fmt.Errorf("server version: %w", err)
	}
	if num < 150000 {
		return false, nil // no TABLES IN SCHEMA before 15
	}
	err = pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_publication_namespace pn
  JOIN pg_catalog.pg_publication p ON p.oid = pn.pnpubid JOIN pg_catalog.pg_class c ON c.relnamespace = pn.pnnspid
  WHERE p.pubname = $1 AND c.oid = $2)`, publication, oid).Scan(&in)
	if err != nil {
		return false, fmt.Errorf("look up relation %d in publication %q: %w", oid, publication, err)
	}
	return in, nil
}

// adoptedByPeer reports whether relation cur, which t now names and the
// publication holds, was added to it by a pgsignal on the same slot (high
// availability: the active instance, while this one waits for the slot)
// with its rows: the bookkeeping schema records it with the resend token
// adoptNew wrote in the same transaction. Then nothing was missed, and t
// follows cur quietly. Always false without Schema.
func (w *RelationWatch) adoptedByPeer(ctx context.Context, pool *pgxpool.Pool, t TableRef, cur uint32) (bool, error) {
	if w.Schema == "" {
		return false, nil
	}
	token, err := store.ResendToken(ctx, pool, w.Schema, w.Slot, t.Schema, t.Name, cur)
	if err != nil || token == "" {
		return false, err
	}
	w.mu.Lock()
	w.bound[t], w.known[cur], w.tokens[cur] = cur, t, token
	w.mu.Unlock()
	w.log().Info("another pgsignal on this slot added the new table to the publication with its rows: pgsignal follows it",
		zap.String("table", t.Display()), zap.Uint32("oid", cur))
	return true, nil
}

// rebind makes t follow relation cur, published since its creation.
func (w *RelationWatch) rebind(ctx context.Context, pool *pgxpool.Pool, t TableRef, was, cur uint32) error {
	w.mu.Lock()
	w.bound[t], w.known[cur] = cur, t
	w.mu.Unlock()
	if w.Schema != "" {
		if err := store.RecordRelation(ctx, pool, w.Schema, w.Slot, t.Schema, t.Name, cur); err != nil {
			return fmt.Errorf("record the relation of %s: %w", t.Display(), err)
		}
	}
	w.log().Warn("the configured table is now a new table, published since its creation: pgsignal follows it",
		zap.String("table", t.Display()), zap.Uint32("oid", cur), zap.Uint32("previous_oid", was))
	return nil
}

// swapError describes a configured table that now names relation cur
// instead of the bound relation was.
func (w *RelationWatch) swapError(ctx context.Context, pool *pgxpool.Pool, t TableRef, was, cur uint32, inPublication bool) error {
	old, err := relationName(ctx, pool, was)
	if err != nil {
		return err
	}
	if old == "" {
		old = "dropped"
	} else {
		old = "now " + old
	}
	pub := pgcat.QuoteIdent(w.Publication)
	var b strings.Builder
	fmt.Fprintf(&b, "table %s is now a different table (OID %d; the table pgsignal streamed, OID %d, is %s)", t.Display(), cur, was, old)
	if inPublication {
		fmt.Fprintf(&b, ", which joined publication %s while pgsignal streamed: rows committed to it before it joined were not streamed. ", pub)
	} else {
		fmt.Fprintf(&b, ", which publication %s does not hold: its rows are not streamed. ", pub)
	}
	b.WriteString("pgsignal stops rather than lose them. As an owner of the table, add it and, in the same transaction, re-insert the rows written to it since the migration (not rows a migration copied from the old table: they were sent already), replacing <rows written since the migration> by their condition (e.g. id > the old table's last id); the re-inserted rows are streamed:\n")
	fmt.Fprintf(&b, "  BEGIN;\n  LOCK TABLE %s IN SHARE ROW EXCLUSIVE MODE;\n", t.Quoted())
	if !inPublication {
		fmt.Fprintf(&b, "  ALTER PUBLICATION %s ADD TABLE %s;\n", pub, t.Quoted())
	}
	fmt.Fprintf(&b, "  CREATE TEMP TABLE pgsignal_resend ON COMMIT DROP AS SELECT * FROM %s WHERE <rows written since the migration>;\n  DELETE FROM %s WHERE <rows written since the migration>;\n  INSERT INTO %s OVERRIDING SYSTEM VALUE SELECT * FROM pgsignal_resend;\n  COMMIT;\n",
		t.Quoted(), t.Quoted(), t.Quoted())
	b.WriteString("then start pgsignal again: it follows the new table")
	return permanent("%s", b.String())
}

// Run checks the catalog every interval (RelationCheckInterval when <= 0)
// until ctx ends, and returns the first permanent error. A failing query
// (the database restarting) is retried at the next tick.
func (w *RelationWatch) Run(ctx context.Context, pool *pgxpool.Pool, interval time.Duration) error {
	if interval <= 0 {
		interval = RelationCheckInterval
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := w.Check(qctx, pool)
		cancel()
		if errors.Is(err, ErrPermanent) {
			return err
		}
		if err != nil && ctx.Err() == nil {
			w.log().Debug("relation check failed; retrying", zap.Error(err))
		}
	}
}

// Adopt returns rel under its configured name when it is a relation bound
// to a configured table that was renamed: its rows are still the table's
// rows. Other relations are returned as they are. Safe on a nil watch.
func (w *RelationWatch) Adopt(rel *Relation) *Relation {
	if w == nil {
		return rel
	}
	w.mu.Lock()
	t, ok := w.known[rel.ID]
	logged := w.renamed[rel.ID] == rel.Key().Display()
	if ok && t != rel.Key() {
		w.renamed[rel.ID] = rel.Key().Display()
	}
	w.mu.Unlock()
	if !ok || t == rel.Key() {
		return rel
	}
	if !logged {
		w.log().Warn("a configured table was renamed while pgsignal streamed; its rows keep being mapped under the configured name",
			zap.String("table", t.Display()), zap.String("renamed_to", rel.Key().Display()), zap.Uint32("oid", rel.ID))
	}
	return NewRelation(rel.ID, t.Schema, t.Name, rel.Columns)
}
