package check

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/app"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/internal/setupsql"
	"github.com/pgsignal/pgsignal/mapper"
	"github.com/pgsignal/pgsignal/mapper/transform"
	"github.com/pgsignal/pgsignal/replication"
)

// Names of the database items, in check order (the per-table items are
// "select <table>" and "columns <table>").
const (
	itemReach      = "reachability"
	itemTLS        = "tls"
	itemLogin      = "login"
	itemVersion    = "server version"
	itemEncoding   = "server encoding"
	itemRole       = "primary or standby"
	itemWALLevel   = "wal_level"
	itemSlots      = "replication slots"
	itemSenders    = "wal senders"
	itemReplPriv   = "replication privilege"
	itemReplConn   = "replication connection"
	itemSchema     = "bookkeeping schema"
	itemPub        = "publication"
	itemSlot       = "slot"
	itemKeepSize   = "max_slot_wal_keep_size"
	selectPrefix   = "select "
	columnsPrefix  = "columns "
	versionLogical = 100000
	versionFilters = 150000
	versionStandby = 160000
)

// db is what the database items learn.
type db struct {
	pool     *pgxpool.Pool
	conn     *pgxpool.Conn
	cfg      *pgconn.Config
	user     string
	database string
	super    bool
	version  int
	standby  bool
	logical  bool
	platform setupsql.Platform
	tables   []tableState
}

// tableState is a configured table as found in the catalog.
type tableState struct {
	cfg    config.Table
	index  int
	exists bool
	oid    uint32
	owned  bool
}

func (t tableState) quoted() string { return pgcat.QualifiedName(t.cfg.Schema, t.cfg.Name) }

// displayName returns schema.name as it is written in the configuration:
// each part bare when it reads back unchanged, double-quoted otherwise.
func displayName(t config.Table) string { return displayIdent(t.Schema) + "." + displayIdent(t.Name) }

func displayIdent(id string) string {
	for i, c := range id {
		if !(c == '_' || 'a' <= c && c <= 'z' || i > 0 && ('0' <= c && c <= '9' || c == '$')) {
			return pgcat.QuoteIdent(id)
		}
	}
	if id == "" {
		return `""`
	}
	return id
}

// dbNames lists the database items in check order.
func (r *runner) dbNames() []string {
	names := []string{itemReach, itemTLS, itemLogin, itemVersion, itemEncoding, itemRole, itemWALLevel, itemSlots,
		itemSenders, itemReplPriv, itemReplConn}
	for _, t := range r.cfg.Tables {
		names = append(names, selectPrefix+displayName(t))
	}
	names = append(names, itemSchema, itemPub)
	for _, t := range r.cfg.Tables {
		names = append(names, columnsPrefix+displayName(t))
	}
	return append(names, itemSlot, itemKeepSize)
}

// database runs the database items. Whatever happens, every item of
// dbNames is reported, in that order.
func (r *runner) database(ctx context.Context) {
	names := r.dbNames()
	defer func() {
		order := map[string]int{}
		for i, n := range names {
			order[n] = i
		}
		slices.SortStableFunc(r.items, func(a, b Item) int { return order[a.Name] - order[b.Name] })
	}()
	d, reason := r.connect(ctx)
	if d == nil {
		r.skipRest(names, reason)
		return
	}
	defer d.pool.Close()
	defer d.conn.Release()
	if reason := r.session(ctx, d); reason != "" {
		r.skipRest(names, reason)
		return
	}
	r.encoding(ctx, d)
	r.standby(ctx, d)
	r.walLevel(ctx, d)
	r.slotCapacity(ctx, d)
	r.walSenders(ctx, d)
	if r.replicationPrivilege(ctx, d) {
		r.replicationConnection(ctx, d)
	} else {
		r.skip(itemReplConn, "the user lacks the REPLICATION privilege")
	}
	for i, t := range r.cfg.Tables {
		d.tables = append(d.tables, r.selectTable(ctx, d, i, t))
	}
	r.schema(ctx, d)
	r.publication(ctx, d)
	r.updateIdentity(ctx, d)
	for _, t := range d.tables {
		r.columns(ctx, d, t)
	}
	r.slot(ctx, d)
	r.keepSize(ctx, d)
}

// connect opens the session the items use. On failure it reports
// reachability and login, and returns the reason to skip the rest.
func (r *runner) connect(ctx context.Context) (*db, string) {
	// Two connections: the items hold one, a transform check takes the other.
	pool, err := replication.NewPool(ctx, r.opts.Source, 2)
	if err != nil {
		r.fail(itemReach, err.Error(), "fix source.dsn: a postgres:// URL or libpq key=value pairs")
		return nil, "source.dsn is not valid"
	}
	ccfg := pool.Config().ConnConfig
	target := describeTarget(&ccfg.Config)
	cctx, cancel := context.WithTimeout(ctx, r.opts.ConnectTimeout)
	conn, err := pool.Acquire(cctx)
	cancel()
	if err == nil {
		r.pass(itemReach, target+" answered")
		return &db{pool: pool, conn: conn, cfg: &ccfg.Config}, ""
	}
	pool.Close()
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		r.fail(itemReach, fmt.Sprintf("cannot connect to %s: %v", target, err), reachFix(err, r.opts.ConnectTimeout.String()))
		return nil, "the database is not reachable"
	}
	r.pass(itemReach, target+" answered")
	user, dbname := pgcat.QuoteIdent(ccfg.User), pgcat.QuoteIdent(ccfg.Database)
	var fix string
	switch pe.Code {
	case pgcat.InvalidPassword:
		fix = "check the password: the one in source.dsn (better through ${VAR}) or PGPASSWORD. To set a new one, as an admin:\n" +
			"ALTER ROLE " + user + " WITH PASSWORD '...';  (or: pgsignal setup --apply --password-env VAR)"
		if ccfg.Password == "" {
			fix = "no password was supplied: source.dsn has none, PGPASSWORD is not set and no ~/.pgpass (or PGPASSFILE) line matches; " +
				"set PGPASSWORD, add a .pgpass line, or write it in the dsn (through ${VAR}, percent-encoded in a URL)"
		}
	case pgcat.InvalidAuthorization:
		fix = "the user is unknown, or pg_hba.conf has no line for this user, database and client address; " +
			"create the user with pgsignal setup, or add a line like\n" +
			"host " + ccfg.Database + " " + ccfg.User + " <client-address>/32 scram-sha-256\n" +
			"to pg_hba.conf, then SELECT pg_reload_conf();"
	case pgcat.InvalidCatalogName:
		fix = "fix the database name in source.dsn"
	case pgcat.InsufficientPrivilege:
		fix = "GRANT CONNECT ON DATABASE " + dbname + " TO " + user + ";"
	case pgcat.TooManyConnections:
		fix = "the server has no free connection: close idle ones or raise max_connections (a restart applies it)"
	case pgcat.CannotConnectNow:
		fix = "the server is starting up or shutting down: retry in a moment"
	default:
		fix = "see the server's message above"
	}
	r.fail(itemLogin, fmt.Sprintf("%s cannot log in to database %s: %s (SQLSTATE %s)", user, dbname, pe.Message, pe.Code), fix)
	return nil, "login failed"
}

// describeTarget names the server the DSN points at.
func describeTarget(c *pgconn.Config) string {
	if strings.HasPrefix(c.Host, "/") {
		return fmt.Sprintf("socket %s/.s.PGSQL.%d", c.Host, c.Port)
	}
	return net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
}

// reachFix tells how to fix a connection that got no answer.
func reachFix(err error, timeout string) string {
	var (
		unknownCA *x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostname), errors.As(err, &invalid), errors.As(err, &verify):
		return "the server's TLS certificate was not accepted: set sslrootcert in source.dsn to the CA that signed it, " +
			"and with sslmode=verify-full connect with the host name the certificate names"
	case errors.Is(err, context.DeadlineExceeded):
		return "no answer within " + timeout + ": check host and port in source.dsn and the firewalls or security groups between this host and the server"
	}
	return "check host and port in source.dsn, that PostgreSQL listens there (listen_addresses, port), that no firewall blocks it " +
		"and, when sslmode requires TLS, that the server has ssl = on"
}

// session reports TLS, login and the server version. It returns why nothing
// more can be checked, or "".
func (r *runner) session(ctx context.Context, d *db) string {
	var verText string
	err := d.conn.QueryRow(ctx, `SELECT current_user, current_database(),
  COALESCE((SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user), false),
  current_setting('server_version_num')::int, current_setting('server_version'),
  pg_catalog.pg_is_in_recovery(), current_setting('wal_level') = 'logical'`).
		Scan(&d.user, &d.database, &d.super, &d.version, &verText, &d.standby, &d.logical)
	if err != nil {
		r.fail(itemLogin, "logged in, but cannot read the session: "+err.Error(), "see the error; the user must be able to read pg_catalog")
		return "the session could not be read"
	}
	r.tls(ctx, d)
	who := fmt.Sprintf("logged in as %s to database %s", pgcat.QuoteIdent(d.user), pgcat.QuoteIdent(d.database))
	if d.super {
		who += " (a superuser: more rights than pgsignal needs)"
	}
	r.pass(itemLogin, who)
	if p, err := setupsql.DetectPlatform(ctx, d.conn); err == nil {
		d.platform = p
	} else {
		d.platform = setupsql.Postgres
	}

	yes := func(ok bool) string {
		if ok {
			return "yes"
		}
		return "no"
	}
	detail := fmt.Sprintf("PostgreSQL %s: logical replication %s (10+), row filters %s (15+), decoding on a standby %s (16+)",
		verText, yes(d.version >= versionLogical), yes(d.version >= versionFilters), yes(d.version >= versionStandby))
	if d.version < versionLogical {
		r.fail(itemVersion, detail, "upgrade PostgreSQL: pgsignal needs logical replication (PostgreSQL 10 or later)")
		return "PostgreSQL < 10 has no logical replication"
	}
	r.pass(itemVersion, detail)
	return ""
}

// encoding warns about a SQL_ASCII database: PostgreSQL neither checks nor
// converts its text, so bytes that are not UTF-8 reach pgsignal as they
// are, and the rows holding them in a name, external_id or property become
// dead letters (sending them would merge users: OneSignal reads such bytes
// as U+FFFD). Every other server encoding is converted to UTF-8 by
// PostgreSQL (pgsignal's connections use client_encoding UTF8).
func (r *runner) encoding(ctx context.Context, d *db) {
	var enc string
	if err := d.conn.QueryRow(ctx, `SELECT current_setting('server_encoding')`).Scan(&enc); err != nil {
		r.queryFailed(itemEncoding, err)
		return
	}
	switch enc {
	case "UTF8":
		r.pass(itemEncoding, "UTF8")
	case "SQL_ASCII":
		r.warn(itemEncoding, fmt.Sprintf("SQL_ASCII: database %s stores text bytes as they were given, without checking or converting them; "+
			"a row whose name, external_id or properties hold bytes that are not valid UTF-8 (such as Latin-1 \"caf\\xe9\") becomes a dead letter "+
			"instead of an event, since sending it would make different users one (OneSignal reads such bytes as U+FFFD)",
			pgcat.QuoteIdent(d.database)),
			"the database should use UTF8: create one with CREATE DATABASE ... TEMPLATE template0 ENCODING 'UTF8', "+
				"and move the data into it converting the text from the encoding the application really wrote (pg_dump, then restore with that client_encoding); "+
				"until then keep the mapped columns valid UTF-8")
	default:
		r.pass(itemEncoding, enc+": PostgreSQL converts text to UTF-8 for pgsignal (client_encoding UTF8)")
	}
}

// tls reports whether the session is encrypted, and how the certificate
// was checked.
func (r *runner) tls(ctx context.Context, d *db) {
	var ssl bool
	var version, cipher string
	err := d.conn.QueryRow(ctx, `SELECT ssl, COALESCE(version, ''), COALESCE(cipher, '')
FROM pg_catalog.pg_stat_ssl WHERE pid = pg_catalog.pg_backend_pid()`).Scan(&ssl, &version, &cipher)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		r.warn(itemTLS, "cannot read pg_stat_ssl: "+err.Error(), "")
		return
	}
	fix := "set sslmode=verify-full and sslrootcert=<CA file> in source.dsn (the server needs ssl = on)"
	if !ssl {
		if isLocal(d.cfg.Host) {
			r.pass(itemTLS, "off (a local connection)")
			return
		}
		r.warn(itemTLS, "off: the connection, the password exchange included, is not encrypted", fix)
		return
	}
	on := fmt.Sprintf("on (%s, %s)", version, cipher)
	t := d.cfg.TLSConfig
	switch {
	case t != nil && !t.InsecureSkipVerify:
		r.pass(itemTLS, on+", certificate and host name verified (sslmode=verify-full)")
	case t != nil && t.VerifyPeerCertificate != nil:
		r.pass(itemTLS, on+", certificate verified against sslrootcert, host name not checked (sslmode=verify-ca)")
	default:
		r.warn(itemTLS, on+", but the server's certificate is not verified (sslmode=require or prefer)", fix)
	}
}

// isLocal reports whether host is a Unix socket directory or a loopback
// address.
func isLocal(host string) bool {
	if strings.HasPrefix(host, "/") || host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// queryFailed reports a catalog query that failed.
func (r *runner) queryFailed(name string, err error) {
	r.fail(name, "query failed: "+err.Error(), "see the error; the user must be able to read the system catalogs")
}

// restartFix returns how to change a setting that needs a restart, on the
// platform.
func restartFix(p setupsql.Platform, setting, value string) string {
	switch p {
	case setupsql.RDS:
		if setting == "wal_level" {
			return "set rds.logical_replication = 1 in the DB parameter group, then reboot the instance"
		}
		return fmt.Sprintf("set %s = %s in the DB parameter group, then reboot the instance", setting, value)
	case setupsql.Azure:
		return fmt.Sprintf("set the server parameter %s = %s (Azure portal or az postgres flexible-server parameter set), then restart the server", setting, value)
	case setupsql.CloudSQL:
		if setting == "wal_level" {
			return "set the database flag cloudsql.logical_decoding = on (the instance restarts)"
		}
		return fmt.Sprintf("set the database flag %s = %s (the instance restarts)", setting, value)
	}
	return fmt.Sprintf("ALTER SYSTEM SET %s = %s;  -- as a superuser, then restart PostgreSQL", setting, value)
}

// standby reports whether the server is a primary or a standby, and what
// that allows.
func (r *runner) standby(ctx context.Context, d *db) {
	if !d.standby {
		r.pass(itemRole, "primary")
		return
	}
	switch {
	case d.version < versionStandby:
		r.fail(itemRole, "a standby of PostgreSQL < 16, which cannot decode logical replication",
			"point source.dsn at the primary, or upgrade to PostgreSQL 16 or later")
	case r.cfg.Source.Mode != config.ModeReadOnly:
		r.fail(itemRole, "a standby: full mode writes its bookkeeping schema and cannot on a standby",
			"set source.mode: read-only (and create the publication on the primary with pgsignal setup), or point source.dsn at the primary")
	default:
		var feedback string
		if err := d.conn.QueryRow(ctx, `SELECT current_setting('hot_standby_feedback')`).Scan(&feedback); err != nil {
			r.queryFailed(itemRole, err)
			return
		}
		if feedback != "on" {
			r.warn(itemRole, "a standby (PostgreSQL 16+ decodes on a standby), but hot_standby_feedback is off: "+
				"the primary may remove rows the slot needs, which invalidates it",
				"on the standby: ALTER SYSTEM SET hot_standby_feedback = on; SELECT pg_reload_conf();  (and use a physical slot: primary_slot_name)")
			return
		}
		r.pass(itemRole, "a standby (PostgreSQL 16+ decodes on a standby; read-only mode)")
	}
}

// walLevel checks wal_level = logical.
func (r *runner) walLevel(ctx context.Context, d *db) {
	if d.logical {
		r.pass(itemWALLevel, "logical")
		return
	}
	var level string
	if err := d.conn.QueryRow(ctx, `SELECT current_setting('wal_level')`).Scan(&level); err != nil {
		r.queryFailed(itemWALLevel, err)
		return
	}
	fix := restartFix(d.platform, "wal_level", "logical")
	if d.standby {
		fix += "  (on the primary and on this standby)"
	}
	r.fail(itemWALLevel, level+"; logical decoding needs wal_level = logical", fix)
}

// slotCapacity checks that a replication slot is free (or ours exists).
func (r *runner) slotCapacity(ctx context.Context, d *db) {
	var used, max int
	var ours bool
	var inactive []string
	err := d.conn.QueryRow(ctx, `SELECT count(*), current_setting('max_replication_slots')::int,
  COALESCE(bool_or(slot_name = $1), false),
  COALESCE(array_agg(slot_name::text ORDER BY slot_name) FILTER (WHERE NOT active), '{}')
FROM pg_catalog.pg_replication_slots`, r.cfg.Source.Slot).Scan(&used, &max, &ours, &inactive)
	if err != nil {
		r.queryFailed(itemSlots, err)
		return
	}
	detail := fmt.Sprintf("%d of max_replication_slots = %d used", used, max)
	switch {
	case ours:
		r.pass(itemSlots, detail+fmt.Sprintf("; slot %q exists", r.cfg.Source.Slot))
	case used < max:
		r.pass(itemSlots, detail+fmt.Sprintf("; %d free", max-used))
	default:
		fix := restartFix(d.platform, "max_replication_slots", strconv.Itoa(max+1))
		if len(inactive) > 0 {
			fix += "\nor drop a slot nobody reads (inactive: " + strings.Join(inactive, ", ") + "): SELECT pg_drop_replication_slot('<name>');"
		}
		r.fail(itemSlots, detail+"; none is free for slot "+strconv.Quote(r.cfg.Source.Slot), fix)
	}
}

// walSenders checks that a WAL sender is free.
func (r *runner) walSenders(ctx context.Context, d *db) {
	var used, max int
	err := d.conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_catalog.pg_stat_replication),
  current_setting('max_wal_senders')::int`).Scan(&used, &max)
	if err != nil {
		r.queryFailed(itemSenders, err)
		return
	}
	detail := fmt.Sprintf("%d of max_wal_senders = %d in use", used, max)
	if used >= max {
		r.fail(itemSenders, detail+"; none is free for pgsignal's stream", restartFix(d.platform, "max_wal_senders", strconv.Itoa(max+2)))
		return
	}
	r.pass(itemSenders, fmt.Sprintf("%s; %d free", detail, max-used))
}

// replicationPrivilege checks the REPLICATION attribute (or RDS's
// rds_replication role).
func (r *runner) replicationPrivilege(ctx context.Context, d *db) bool {
	var repl, rds bool
	err := d.conn.QueryRow(ctx, `SELECT rolreplication,
  COALESCE((SELECT pg_catalog.pg_has_role(current_user, oid, 'MEMBER') FROM pg_catalog.pg_roles WHERE rolname = 'rds_replication'), false)
FROM pg_catalog.pg_roles WHERE rolname = current_user`).Scan(&repl, &rds)
	if err != nil {
		r.queryFailed(itemReplPriv, err)
		return false
	}
	switch {
	case d.super:
		r.pass(itemReplPriv, "a superuser")
	case repl:
		r.pass(itemReplPriv, "the REPLICATION attribute")
	case rds:
		r.pass(itemReplPriv, "a member of rds_replication")
	default:
		user := pgcat.QuoteIdent(d.user)
		fix := "ALTER ROLE " + user + " WITH REPLICATION;  -- as a superuser (or pgsignal setup --apply)"
		if d.platform == setupsql.RDS {
			fix = "GRANT rds_replication TO " + user + ";  -- as the master user (or pgsignal setup --apply)"
		}
		r.fail(itemReplPriv, user+" has neither the REPLICATION attribute nor rds_replication", fix)
		return false
	}
	return true
}

// replicationConnection opens a replication connection, the way pgsignal
// streams, and identifies the system.
func (r *runner) replicationConnection(ctx context.Context, d *db) {
	cctx, cancel := context.WithTimeout(ctx, r.opts.ConnectTimeout)
	defer cancel()
	conn, err := replication.ConnectReplication(cctx, r.opts.Source)
	if err == nil {
		defer conn.Close(context.WithoutCancel(ctx))
		var sys pglogrepl.IdentifySystemResult
		sys, err = pglogrepl.IdentifySystem(cctx, conn)
		if err == nil {
			r.pass(itemReplConn, fmt.Sprintf("system identifier %s, timeline %d", sys.SystemID, sys.Timeline))
			return
		}
	}
	fix := "check that pg_hba.conf lets this user connect to this database from here, and that max_wal_senders has room"
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == pgcat.TooManyConnections {
		fix = restartFix(d.platform, "max_wal_senders", "<more>")
	}
	r.fail(itemReplConn, "cannot open a replication connection: "+err.Error(), fix)
}

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
		if d.version < 130000 {
			r.fail(name, ts.quoted()+" is a partitioned table, which PostgreSQL < 13 cannot publish", "configure its partitions instead")
			return ts
		}
	default:
		what := map[string]string{"v": "a view", "m": "a materialized view", "f": "a foreign table"}[kind]
		if what == "" {
			what = "not a table (relkind " + kind + ")"
		}
		r.fail(name, ts.quoted()+" is "+what+"; logical replication publishes tables only",
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
		case c.generated && d.version < 180000:
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
	case c.generated:
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

// slot checks the replication slot: kind, database, activity, WAL and lag.
func (r *runner) slot(ctx context.Context, d *db) {
	slotName := r.cfg.Source.Slot
	lit := pgcat.QuoteLiteral(slotName)
	// What `pgsignal run` decides about a lost slot, in its words.
	loss, err := replication.StoredSlotLoss(ctx, d.pool, r.cfg.Source.Schema, slotName, r.cfg.Source.Mode != config.ModeReadOnly)
	if err != nil {
		r.queryFailed(itemSlot, err)
		return
	}
	if loss != nil {
		r.slotLost(*loss)
		return
	}
	si, err := pgcat.LookupSlot(ctx, d.conn, slotName)
	typ, plugin, database, confirmed, status := si.SlotType, si.Plugin, si.Database, si.ConfirmedFlushLSN, si.WALStatus
	active, lag := si.Active, si.LagBytes
	if err == nil && !si.Exists {
		if !d.logical {
			r.skip(itemSlot, fmt.Sprintf("slot %q does not exist and cannot be created while wal_level is not logical", slotName))
			return
		}
		detail := fmt.Sprintf("slot %q does not exist yet; pgsignal creates it at its first start", slotName)
		if r.cfg.Source.Mode == config.ModeReadOnly {
			detail += " (to stream the inserts made before then, create it now: " + setupsql.SlotSQL(slotName) + ")"
		}
		r.pass(itemSlot, detail)
		return
	}
	if err != nil {
		r.queryFailed(itemSlot, err)
		return
	}
	drop := "SELECT pg_drop_replication_slot(" + lit + ");"
	switch {
	case typ != "logical" || plugin != "pgoutput":
		r.fail(itemSlot, fmt.Sprintf("slot %q is a %s slot with plugin %q; pgsignal needs a logical pgoutput slot", slotName, typ, plugin),
			"choose another source.slot, or drop this one if nothing uses it: "+drop)
		return
	case database != d.database:
		r.fail(itemSlot, fmt.Sprintf("slot %q belongs to database %q, not %q", slotName, database, d.database),
			"choose another source.slot (a slot belongs to one database)")
		return
	case status == "lost":
		r.fail(itemSlot, fmt.Sprintf("slot %q is invalidated (wal_status = lost): the WAL it needed was removed and events were lost", slotName),
			"drop and recreate it, then restart pgsignal: "+drop)
		return
	}
	parts := []string{fmt.Sprintf("slot %q exists (logical, pgoutput)", slotName)}
	if status != "" {
		parts = append(parts, "wal_status "+status)
	}
	if lag != nil {
		parts = append(parts, fmt.Sprintf("confirmed up to %s, %s behind", confirmed, bytesText(*lag)))
	}
	detail := strings.Join(parts, ", ")
	switch {
	case active:
		p := "?"
		if si.ActivePID != 0 {
			p = strconv.Itoa(int(si.ActivePID))
		}
		r.warn(itemSlot, detail+"; it is active (pid "+p+"): another client reads it, and pgsignal waits until it stops", "")
	case status == "unreserved":
		r.warn(itemSlot, detail+"; it is about to lose WAL it needs (past max_slot_wal_keep_size): start pgsignal soon", "")
	default:
		r.pass(itemSlot, detail+", inactive")
	}
}

// slotLost reports a lost slot as `pgsignal run` treats it: it refuses to
// start, unless source.on_slot_lost is recreate.
func (r *runner) slotLost(loss replication.SlotLoss) {
	if r.cfg.Source.OnSlotLost == config.SlotLostRecreate {
		r.warn(itemSlot, loss.Problem()+"; pgsignal run recreates the slot and goes on from now (source.on_slot_lost: recreate)", "")
		return
	}
	r.fail(itemSlot, loss.Problem()+"; pgsignal run refuses to start", loss.Fix())
}

// keepSize gives advice on max_slot_wal_keep_size.
func (r *runner) keepSize(ctx context.Context, d *db) {
	if d.version < 130000 {
		r.skip(itemKeepSize, "PostgreSQL < 13 has no max_slot_wal_keep_size: watch the disk while pgsignal is down")
		return
	}
	var v string
	if err := d.conn.QueryRow(ctx, `SELECT current_setting('max_slot_wal_keep_size')`).Scan(&v); err != nil {
		r.queryFailed(itemKeepSize, err)
		return
	}
	if v == "-1" {
		fix := "ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf();"
		switch d.platform {
		case setupsql.RDS:
			fix = "set max_slot_wal_keep_size in the DB parameter group (in MB)"
		case setupsql.Azure, setupsql.CloudSQL:
			fix = "set the max_slot_wal_keep_size server parameter (flag)"
		}
		r.warn(itemKeepSize, "-1 (no limit): while pgsignal is stopped, its slot keeps WAL until the disk fills",
			fix+"  -- more than the WAL written while pgsignal may be down; a slot further behind is invalidated (its events lost)")
		return
	}
	r.pass(itemKeepSize, v+": a slot further behind is invalidated rather than filling the disk")
}

// bytesText formats a byte count.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	f, suffix := float64(n), ""
	for _, s := range []string{"kB", "MB", "GB", "TB"} {
		f /= unit
		suffix = s
		if f < unit {
			break
		}
	}
	return fmt.Sprintf("%.1f %s (%d bytes)", f, suffix, n)
}
