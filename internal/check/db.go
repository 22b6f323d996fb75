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

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/internal/setupsql"
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
	query    bool // source.method: query
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
	// partitioned: a partitioned table (relkind p).
	partitioned bool
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
	if r.queryMethod() {
		return r.queryNames()
	}
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
	if d.query = r.queryMethod(); d.query {
		r.queryItems(ctx, d)
		return
	}
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
	if r.queryMethod() {
		detail = fmt.Sprintf("PostgreSQL %s: the query method reads 9.6 and later (tested on 10 to 18), a standby included", verText)
		if d.version < versionQuery {
			r.fail(itemVersion, detail, "upgrade PostgreSQL to 9.6 or later")
			return "PostgreSQL < 9.6"
		}
		r.pass(itemVersion, detail)
		return ""
	}
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
