package check

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgsignal/pgsignal/internal/app"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/internal/setupsql"
	"github.com/pgsignal/pgsignal/mapper"
	"github.com/pgsignal/pgsignal/mapper/transform"
)

// selectTable checks that the table exists and that the user may read it.
func (r *runner) selectTable(ctx context.Context, d *db, i int, t config.Table) tableState {
	ts := tableState{cfg: t, index: i}
	name := selectPrefix + displayName(t)
	var kind string
	var usage, sel bool
	err := d.conn.QueryRow(ctx, `SELECT c.oid, c.relkind::text, pg_catalog.has_schema_privilege(n.oid, 'USAGE'),
  pg_catalog.has_table_privilege(c.oid, 'SELECT'), pg_catalog.pg_has_role(c.relowner, 'USAGE')
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2`, t.Schema, t.Name).Scan(&ts.oid, &kind, &usage, &sel, &ts.owned)
	if errors.Is(err, pgx.ErrNoRows) {
		r.fail(name, ts.quoted()+" does not exist in database "+pgcat.QuoteIdent(d.database),
			fmt.Sprintf("create the table, or fix tables[%d].table (a quoted name keeps its case: \"Events\" is not events)", i))
		return ts
	}
	if err != nil {
		r.queryFailed(name, err)
		return ts
	}
	ts.exists = true
	switch kind {
	case "r":
	case "p":
		ts.partitioned = true
		if d.version < 130000 && !d.query { // the query method reads a partitioned table like any other
			r.fail(name, ts.quoted()+" is a partitioned table, which PostgreSQL < 13 cannot publish", "configure its partitions instead")
			return ts
		}
	default:
		what := map[string]string{"v": "a view", "m": "a materialized view", "f": "a foreign table"}[kind]
		if what == "" {
			what = "not a table (relkind " + kind + ")"
		}
		only := "; logical replication publishes tables only"
		if d.query {
			only = "; the query method reads tables only (by their primary key and a cursor index)"
		}
		r.fail(name, ts.quoted()+" is "+what+only,
			fmt.Sprintf("point tables[%d].table at the table the rows are inserted into", i))
		return ts
	}
	user := pgcat.QuoteIdent(d.user)
	switch {
	case usage && sel:
		r.pass(name, "SELECT granted on "+ts.quoted())
	case !usage:
		r.fail(name, user+" lacks USAGE on schema "+pgcat.QuoteIdent(t.Schema),
			"GRANT USAGE ON SCHEMA "+pgcat.QuoteIdent(t.Schema)+" TO "+user+";\nGRANT SELECT ON "+ts.quoted()+" TO "+user+";")
	default:
		r.fail(name, user+" lacks SELECT on "+ts.quoted(), "GRANT SELECT ON "+ts.quoted()+" TO "+user+";")
	}
	return ts
}

// schema checks that full mode can keep its bookkeeping tables.
func (r *runner) schema(ctx context.Context, d *db) {
	if r.cfg.Source.Mode == config.ModeReadOnly {
		r.skip(itemSchema, "read-only mode keeps no bookkeeping schema")
		return
	}
	if d.standby {
		r.skip(itemSchema, "a standby cannot be written to (see primary or standby)")
		return
	}
	schema, user := pgcat.QuoteIdent(r.cfg.Source.Schema), pgcat.QuoteIdent(d.user)
	grant := "GRANT USAGE, CREATE ON SCHEMA " + schema + " TO " + user + ";"
	grantDB := "GRANT CREATE ON DATABASE " + pgcat.QuoteIdent(d.database) + " TO " + user + ";"
	var found, dbCreate, owner, create, usage bool
	var oid uint32
	err := d.conn.QueryRow(ctx, `SELECT pg_catalog.has_database_privilege(current_database(), 'CREATE'), n.oid IS NOT NULL,
  COALESCE(n.oid, 0), COALESCE(pg_catalog.pg_has_role(n.nspowner, 'USAGE'), false),
  COALESCE(pg_catalog.has_schema_privilege(n.oid, 'CREATE'), false), COALESCE(pg_catalog.has_schema_privilege(n.oid, 'USAGE'), false)
FROM (SELECT) AS one LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = $1`, r.cfg.Source.Schema).
		Scan(&dbCreate, &found, &oid, &owner, &create, &usage)
	if err != nil {
		r.queryFailed(itemSchema, err)
		return
	}
	// CREATE on the database is needed only to create a missing schema.
	noDB := user + " lacks CREATE on database " + pgcat.QuoteIdent(d.database) + ", which pgsignal needs to create it"
	switch {
	case !found && !dbCreate:
		r.fail(itemSchema, schema+" does not exist and "+noDB,
			"as an admin (or pgsignal setup --apply):\nCREATE SCHEMA IF NOT EXISTS "+schema+";\n"+grant+"\n"+grantDB)
		return
	case !found:
		r.pass(itemSchema, schema+" does not exist yet; pgsignal creates it at its first start (CREATE on the database)")
		return
	case !owner && !(create && usage):
		r.fail(itemSchema, schema+" exists, but "+user+" neither owns it nor has USAGE and CREATE on it", grant)
		return
	}
	rows, err := d.conn.Query(ctx, `SELECT relname FROM pg_catalog.pg_class
WHERE relnamespace = $1 AND relkind = 'r' AND relname IN ('sync_state', 'dead_letters', 'runs')
  AND NOT (pg_catalog.has_table_privilege(oid, 'SELECT') AND pg_catalog.has_table_privilege(oid, 'INSERT')
       AND pg_catalog.has_table_privilege(oid, 'UPDATE') AND pg_catalog.has_table_privilege(oid, 'DELETE'))
ORDER BY relname`, oid)
	if err != nil {
		r.queryFailed(itemSchema, err)
		return
	}
	denied, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		r.queryFailed(itemSchema, err)
		return
	}
	if len(denied) > 0 {
		r.fail(itemSchema, fmt.Sprintf("%s lacks SELECT, INSERT, UPDATE or DELETE on %s.%s", user, schema, strings.Join(denied, ", ")),
			"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "+schema+" TO "+user+";\n"+
				"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA "+schema+" TO "+user+";")
		return
	}
	how := "owns it"
	if !owner {
		how = "has USAGE and CREATE on it"
	}
	r.pass(itemSchema, schema+" exists and "+user+" "+how)
}

// pubTable is a row of pg_publication_tables.
type pubTable struct {
	columns   []string // nil before PostgreSQL 15
	rowFilter string
}

// publication checks that the publication exists, publishes inserts and
// covers every table with every mapped column.
func (r *runner) publication(ctx context.Context, d *db) {
	pubName := r.cfg.Source.Publication
	pub := pgcat.QuoteIdent(pubName)
	full := r.cfg.Source.Mode != config.ModeReadOnly
	var refs []setupsql.Table
	ownsAll, allExist := true, true
	for _, t := range d.tables {
		refs = append(refs, setupsql.Table{Schema: t.cfg.Schema, Name: t.cfg.Name})
		ownsAll = ownsAll && t.exists && t.owned
		allExist = allExist && t.exists
	}
	canCreate := full && !d.standby && ownsAll
	var insert bool
	err := d.conn.QueryRow(ctx, `SELECT pubinsert FROM pg_catalog.pg_publication WHERE pubname = $1`, pubName).Scan(&insert)
	if errors.Is(err, pgx.ErrNoRows) {
		create := setupsql.CreatePublicationSQL(pubName, refs)
		switch {
		case canCreate:
			r.pass(itemPub, pub+" does not exist yet; pgsignal creates it at its first start (the user owns every table)")
		case !allExist:
			r.fail(itemPub, pub+" does not exist, and cannot be created before every configured table exists (see the select items)",
				"create the tables, then, as their owner (or pgsignal setup --apply):\n"+create)
		case full:
			r.fail(itemPub, pub+" does not exist, and pgsignal cannot create it: only the owner of every table may",
				"as an owner of the tables (or pgsignal setup --apply):\n"+create)
		default:
			r.fail(itemPub, pub+" does not exist; read-only mode does not create it",
				"as an owner of the tables, on the primary (or pgsignal setup --apply):\n"+create)
		}
		return
	}
	if err != nil {
		r.queryFailed(itemPub, err)
		return
	}
	if !insert {
		r.fail(itemPub, pub+" does not publish inserts", "ALTER PUBLICATION "+pub+" SET (publish = 'insert');")
		return
	}
	cols := `NULL::text[], NULL::text`
	if d.version >= versionFilters {
		cols = `attnames::text[], rowfilter`
	}
	rows, err := d.conn.Query(ctx, `SELECT schemaname::text, tablename::text, `+cols+`
FROM pg_catalog.pg_publication_tables WHERE pubname = $1`, pubName)
	if err != nil {
		r.queryFailed(itemPub, err)
		return
	}
	have := map[setupsql.Table]pubTable{}
	var key setupsql.Table
	var pt pubTable
	var filter *string
	_, err = pgx.ForEachRow(rows, []any{&key.Schema, &key.Name, &pt.columns, &filter}, func() error {
		pt.rowFilter = ""
		if filter != nil {
			pt.rowFilter = *filter
		}
		have[key] = pt
		pt = pubTable{}
		return nil
	})
	if err != nil {
		r.queryFailed(itemPub, err)
		return
	}
	if err := addDirectMembers(ctx, d, pubName, have); err != nil {
		r.queryFailed(itemPub, err)
		return
	}
	var missing, problems, fixes, warnings []string
	addable := full && !d.standby
	if p, fix, err := viaRoot(ctx, d, pubName); err != nil {
		r.queryFailed(itemPub, err)
		return
	} else if p != "" && addable {
		warnings = append(warnings, p+"; pgsignal sets publish_via_partition_root at its first start")
	} else if p != "" {
		problems, fixes = append(problems, p), append(fixes, fix)
	}
	for _, t := range d.tables {
		ref := setupsql.Table{Schema: t.cfg.Schema, Name: t.cfg.Name}
		got, ok := have[ref]
		if !ok {
			missing = append(missing, t.quoted())
			addable = addable && t.exists && t.owned
			continue
		}
		if got.columns != nil {
			// From PostgreSQL 15 every table has attnames, with or without
			// a column list: a mapped column missing from the table itself
			// is the columns item's to report, not the list's.
			var absent []string
			for _, c := range t.cfg.MappedColumns() {
				if !slices.Contains(got.columns, c.Column) && columnExists(ctx, d, t.oid, c.Column) {
					absent = append(absent, strconv.Quote(c.Column))
				}
			}
			if len(absent) > 0 {
				problems = append(problems, fmt.Sprintf("its column list for %s leaves out %s", t.quoted(), strings.Join(absent, ", ")))
				fixes = append(fixes, "ALTER PUBLICATION "+pub+" DROP TABLE "+t.quoted()+";\nALTER PUBLICATION "+pub+" ADD TABLE "+t.quoted()+";")
			}
		}
		if got.rowFilter != "" {
			warnings = append(warnings, fmt.Sprintf("%s has a row filter: only inserts WHERE %s become events", t.quoted(), got.rowFilter))
		}
	}
	if len(missing) > 0 {
		if addable {
			warnings = append(warnings, "it lacks "+strings.Join(missing, ", ")+"; pgsignal adds them at its first start (the user owns them)")
		} else {
			problems = append(problems, "it lacks "+strings.Join(missing, ", "))
			fixes = append(fixes, "as an owner of the tables (or pgsignal setup --apply):\nALTER PUBLICATION "+pub+" ADD TABLE "+strings.Join(missing, ", ")+";")
		}
	}
	switch {
	case len(problems) > 0:
		r.fail(itemPub, pub+": "+strings.Join(append(problems, warnings...), "; "), strings.Join(fixes, "\n"))
	case len(warnings) > 0:
		r.warn(itemPub, pub+" publishes inserts, but "+strings.Join(warnings, "; "), "")
	default:
		r.pass(itemPub, pub+" publishes the inserts of every configured table")
	}
}

// columnExists reports whether the table with OID rel has the column (true
// when the catalog cannot say, so that a problem is not hidden).
func columnExists(ctx context.Context, d *db, rel uint32, column string) bool {
	var ok bool
	err := d.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = $1 AND attname = $2 AND attnum > 0 AND NOT attisdropped)`,
		rel, column).Scan(&ok)
	return err != nil || ok
}

// column is a row of pg_attribute.
type column struct {
	typ       uint32
	typName   string
	generated bool
}

// columns checks that every mapped column exists with a usable type.
func (r *runner) columns(ctx context.Context, d *db, t tableState) {
	name := columnsPrefix + displayName(t.cfg)
	if !t.exists {
		r.skip(name, "the table was not found (see "+selectPrefix+displayName(t.cfg)+")")
		return
	}
	gen := `false`
	if d.version >= 120000 {
		gen = `a.attgenerated <> ''`
	}
	rows, err := d.conn.Query(ctx, `SELECT a.attname::text, a.atttypid, pg_catalog.format_type(a.atttypid, a.atttypmod), `+gen+`
FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`, t.oid)
	if err != nil {
		r.queryFailed(name, err)
		return
	}
	cols := map[string]column{}
	var order []string
	var colName string
	var c column
	_, err = pgx.ForEachRow(rows, []any{&colName, &c.typ, &c.typName, &c.generated}, func() error {
		cols[colName] = c
		order = append(order, strconv.Quote(colName))
		return nil
	})
	if err != nil {
		r.queryFailed(name, err)
		return
	}
	path := fmt.Sprintf("tables[%d].", t.index)
	var ok, problems, fixes []string
	if bf := t.cfg.Backfill; bf != nil {
		problems, fixes = backfillProblems(ctx, d, t, path, cols, order)
	}
	if t.cfg.Transform != "" {
		r.transform(ctx, d, t, name, path, problems, fixes)
		return
	}
	for _, m := range t.cfg.MappedColumns() {
		if m.Field == "backfill" {
			continue // backfillProblems
		}
		c, found := cols[m.Column]
		switch {
		case !found:
			problems = append(problems, fmt.Sprintf("%s has no column %q (%s%s)", t.quoted(), m.Column, path, m.Key))
			fixes = append(fixes, fmt.Sprintf("set %s%s to one of the columns of %s: %s", path, m.Key, t.quoted(), strings.Join(order, ", ")))
		case c.generated && d.version < 180000 && !d.query: // the query method reads generated columns
			problems = append(problems, fmt.Sprintf("column %q is generated; logical replication sends generated columns only from PostgreSQL 18", m.Column))
			fixes = append(fixes, fmt.Sprintf("map %s%s to a stored (not generated) column", path, m.Key))
		case m.Key == "timestamp" && t.cfg.TimestampUnit != "" && !mapper.IsEpochType(c.typ):
			// The mapper reads epoch time from integer and numeric columns only.
			problems = append(problems, fmt.Sprintf("timestamp column %q is %s; timestamp_unit %q needs an integer or numeric column holding epoch time", m.Column, c.typName, t.cfg.TimestampUnit))
			fixes = append(fixes, fmt.Sprintf("map %stimestamp to an integer or numeric column holding epoch time, or remove %stimestamp_unit to read a timestamptz, timestamp or date column", path, path))
		case m.Key == "timestamp" && t.cfg.TimestampUnit == "" && mapper.IsEpochType(c.typ):
			problems = append(problems, fmt.Sprintf("timestamp column %q is %s, not timestamptz, timestamp or date", m.Column, c.typName))
			fixes = append(fixes, fmt.Sprintf("if %q holds epoch time, set %stimestamp_unit to s (seconds) or ms (milliseconds); otherwise map %stimestamp to a timestamptz, timestamp or date column, or remove it to use the commit time", m.Column, path, path))
		case m.Key == "timestamp" && t.cfg.TimestampUnit == "" && c.typ != pgtype.TimestamptzOID && c.typ != pgtype.TimestampOID && c.typ != pgtype.DateOID:
			problems = append(problems, fmt.Sprintf("timestamp column %q is %s, not timestamptz, timestamp or date", m.Column, c.typName))
			fixes = append(fixes, fmt.Sprintf("map %stimestamp to a timestamptz, timestamp or date column, remove it to use the commit time, or:\nALTER TABLE %s ALTER COLUMN %s TYPE timestamptz USING %s::timestamptz;",
				path, t.quoted(), pgcat.QuoteIdent(m.Column), pgcat.QuoteIdent(m.Column)))
		case m.Key == "properties" && c.typ != pgtype.JSONOID && c.typ != pgtype.JSONBOID:
			problems = append(problems, fmt.Sprintf("properties column %q is %s, not json or jsonb", m.Column, c.typName))
			fixes = append(fixes, fmt.Sprintf("write %sproperties as a list, [%s], to send the column as one property, or map it to a json/jsonb column", path, m.Column))
		default:
			ok = append(ok, fmt.Sprintf("%s ← %s (%s)", m.Field, m.Column, c.typName))
		}
	}
	if len(problems) > 0 {
		r.fail(name, strings.Join(problems, "; "), strings.Join(fixes, "\n"))
		return
	}
	r.pass(name, strings.Join(ok, ", "))
}

// transform checks a table's SQL transform: PostgreSQL prepares it against
// the table's columns and it returns the event's columns.
func (r *runner) transform(ctx context.Context, d *db, t tableState, name, path string, problems, fixes []string) {
	tr, err := transform.New(d.pool, []transform.Spec{app.TransformSpec(t.cfg)})
	if err == nil {
		err = tr.Check(ctx)
	}
	if err != nil {
		problems = append(problems, err.Error())
		fixes = append(fixes, fmt.Sprintf("correct %stransform: a SELECT over changes (the columns of %s) returning name, external_id and optionally timestamp and properties", path, t.quoted()))
	}
	if len(problems) > 0 {
		r.fail(name, strings.Join(problems, "; "), strings.Join(fixes, "\n"))
		return
	}
	r.pass(name, "the transform prepares and returns the event's columns (the user needs SELECT on the tables it joins)")
}

// backfillProblems checks what a table's backfill needs: the window column
// with a usable type, and a primary key (or replica identity index) for the
// events' keys.
func backfillProblems(ctx context.Context, d *db, t tableState, path string, cols map[string]column, order []string) (problems, fixes []string) {
	col := t.cfg.BackfillColumn()
	c, found := cols[col]
	switch {
	case !found:
		problems = append(problems, fmt.Sprintf("%s has no column %q (the backfill's window column)", t.quoted(), col))
		fixes = append(fixes, fmt.Sprintf("set %sbackfill.column to one of the columns of %s: %s", path, t.quoted(), strings.Join(order, ", ")))
	case c.generated && !d.query:
		problems = append(problems, fmt.Sprintf("backfill column %q is generated; pgsignal reads the columns logical replication sends, which leaves generated ones out", col))
		fixes = append(fixes, fmt.Sprintf("set %sbackfill.column to a stored (not generated) column", path))
	case c.typ == pgtype.TimestamptzOID || c.typ == pgtype.TimestampOID || c.typ == pgtype.DateOID:
	case (c.typ == pgtype.Int2OID || c.typ == pgtype.Int4OID || c.typ == pgtype.Int8OID || c.typ == pgtype.NumericOID ||
		c.typ == pgtype.Float4OID || c.typ == pgtype.Float8OID) && t.cfg.TimestampUnit != "":
	default:
		problems = append(problems, fmt.Sprintf("backfill column %q is %s, not timestamptz, timestamp or date (or epoch time with timestamp_unit)", col, c.typName))
		fixes = append(fixes, fmt.Sprintf("set %sbackfill.column to the column holding the row's time", path))
	}
	var keyed bool
	err := d.conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_index WHERE indrelid = $1 AND (indisprimary OR indisreplident))`, t.oid).Scan(&keyed)
	switch {
	case err != nil:
		problems = append(problems, fmt.Sprintf("cannot read the indexes of %s: %v", t.quoted(), err))
		fixes = append(fixes, "see the error")
	case !keyed:
		problems = append(problems, fmt.Sprintf("%s has no primary key: a backfill derives each event's idempotency key from it", t.quoted()))
		fixes = append(fixes, fmt.Sprintf("ALTER TABLE %s ADD PRIMARY KEY (...); or remove %sbackfill", t.quoted(), path))
	}
	return problems, fixes
}
