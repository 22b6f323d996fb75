package setupsql

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/replication"
)

// Platform is the kind of PostgreSQL service; it decides how the REPLICATION
// right is given and which notes the script carries.
type Platform string

// Platforms.
const (
	// Postgres is a self-managed PostgreSQL: ALTER ROLE ... WITH REPLICATION.
	Postgres Platform = "postgres"
	// RDS is Amazon RDS or Aurora: GRANT rds_replication.
	RDS Platform = "rds"
	// Azure is Azure Database for PostgreSQL.
	Azure Platform = "azure"
	// CloudSQL is Google Cloud SQL for PostgreSQL.
	CloudSQL Platform = "cloudsql"
)

// ParsePlatform parses a --platform value.
func ParsePlatform(s string) (Platform, error) {
	switch p := Platform(s); p {
	case Postgres, RDS, Azure, CloudSQL:
		return p, nil
	}
	return "", fmt.Errorf("unknown platform %q: use rds, azure, cloudsql or postgres", s)
}

// Table names a configured table, unquoted.
type Table struct {
	Schema, Name string
	// Where is the table's row filter (tables[].where), "" for none.
	Where string
	// Updates is true when the table emits updates (tables[].emit).
	Updates bool
	// Transform is true when the table has a SQL transform, which may read
	// other tables.
	Transform bool
}

// published is the table as replication publishes it.
func (t Table) published() replication.PublishedTable {
	return replication.PublishedTable{TableRef: replication.TableRef{Schema: t.Schema, Name: t.Name}, Where: t.Where, Updates: t.Updates}
}

// Quoted returns the quoted "schema"."name".
func (t Table) Quoted() string { return pgcat.QualifiedName(t.Schema, t.Name) }

// Options describe what to set up.
type Options struct {
	// User is the role pgsignal logs in as.
	User string
	// Password is the user's password; "" sets none.
	Password string
	// ResetPassword sets Password on an existing user too. When false, the
	// password is given only to a user the script creates.
	ResetPassword bool
	// PasswordGenerated adds a comment saying the password was generated
	// for this script.
	PasswordGenerated bool
	// Platform selects the REPLICATION statement and the notes. Default
	// Postgres.
	Platform Platform
	// ReadOnly leaves out the bookkeeping schema and adds the note about
	// creating the slot up front.
	ReadOnly bool
	// Schema is the bookkeeping schema (full mode).
	Schema string
	// Publication is the publication to create.
	Publication string
	// Slot is the replication slot (named in the read-only note).
	Slot string
	// Tables are the configured tables, in configuration order.
	Tables []Table
	// SchemaGrants grants SELECT on every table and EXECUTE on every
	// function of the tables' schemas, now and later, instead of SELECT on
	// the configured tables only (for transforms that read other tables).
	SchemaGrants bool
	// Query is the query method (source.method: query): pgsignal only
	// reads the tables, so the script gives no REPLICATION right and
	// creates no publication (Publication and Slot are not used); it
	// grants CONNECT on the database instead.
	Query bool
}

// Kind tells what a statement is for.
type Kind int

// Kinds of statements, in script order.
const (
	// KindUser creates the user or sets its password.
	KindUser Kind = iota
	// KindReplication gives the REPLICATION right.
	KindReplication
	// KindSchema creates the bookkeeping schema and grants on it.
	KindSchema
	// KindGrants grants read access to a schema holding configured tables.
	KindGrants
	// KindPublication creates the publication or adds tables to it; it must
	// run as an owner of every table.
	KindPublication
)

// Statement is one idempotent SQL statement of the script.
type Statement struct {
	// Kind tells what the statement is for.
	Kind Kind
	// Title says in a few words what the statement does, for a report line.
	Title string
	// Comment lines printed above the statement (without "-- ").
	Comment []string
	// SQL is the statement, ending with ";".
	SQL string
	// Secret is true when SQL holds the password.
	Secret bool

	display string
}

// Display returns SQL with the password replaced by '********'.
func (s Statement) Display() string {
	if s.Secret {
		return s.display
	}
	return s.SQL
}

// Script is the generated setup.
type Script struct {
	// Options are the options the script was generated from.
	Options Options
	// Header lines (comments, without "-- ") start the script.
	Header []string
	// Statements in the order they must run.
	Statements []Statement
	// Notes (comments) end the script.
	Notes []string
}

const redacted = "'********'"

// Generate returns the setup script for o.
func Generate(o Options) (*Script, error) {
	if err := check(&o); err != nil {
		return nil, err
	}
	s := &Script{Options: o}
	user := pgcat.QuoteIdent(o.User)
	mode := "full mode"
	if o.ReadOnly {
		mode = "read-only mode"
	}
	s.Header = []string{
		fmt.Sprintf("pgsignal setup (%s): user %s, publication %s, %s.", mode, user, pgcat.QuoteIdent(o.Publication), plural(len(o.Tables), "table")),
		"Run it as a superuser (or the platform's admin user) connected to the database pgsignal",
		"streams from. Every statement is idempotent: running the script again is safe.",
	}
	if o.Query {
		s.Header = queryHeader(o, mode)
	}
	if o.ReadOnly {
		s.Header = append(s.Header, "Run it on the primary, even when pgsignal reads a standby: a standby cannot be written to.")
	}

	s.userStatements()
	if o.Query {
		s.connectStatement()
	} else {
		s.replicationStatement()
	}
	if !o.ReadOnly {
		s.schemaStatements()
	}
	s.grantStatements()
	if o.Query {
		s.Notes = queryNotes(o)
		return s, nil
	}
	s.publicationStatement()

	if o.ReadOnly {
		s.Notes = append(s.Notes,
			"Read-only mode: pgsignal creates no schema, table or publication. Create its slot up front,",
			"on the server pgsignal connects to (a standby needs PostgreSQL 16 or later), so that the",
			"inserts made before its first start are streamed too:",
			"  "+SlotSQL(o.Slot),
		)
	}
	return s, nil
}

// check validates o and applies the defaults.
func check(o *Options) error {
	var errs []error
	if o.Platform == "" {
		o.Platform = Postgres
	}
	if _, err := ParsePlatform(string(o.Platform)); err != nil {
		errs = append(errs, err)
	}
	idents := []struct{ name, value string }{
		{"user", o.User}, {"publication", o.Publication}, {"slot", o.Slot},
	}
	if o.Query {
		idents = idents[:1] // no publication, no slot
	}
	for _, v := range idents {
		if err := checkIdent(v.name, v.value); err != nil {
			errs = append(errs, err)
		}
	}
	if !o.ReadOnly {
		if err := checkIdent("bookkeeping schema", o.Schema); err != nil {
			errs = append(errs, err)
		}
	}
	if len(o.Tables) == 0 {
		errs = append(errs, errors.New("no tables: configure at least one table"))
	}
	for _, t := range o.Tables {
		if err := checkIdent("table schema", t.Schema); err != nil {
			errs = append(errs, err)
		}
		if err := checkIdent("table name", t.Name); err != nil {
			errs = append(errs, err)
		}
	}
	if strings.ContainsRune(o.Password, 0) {
		errs = append(errs, errors.New("the password contains a NUL byte"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("generate setup SQL: %w", err)
	}
	return nil
}

// checkIdent rejects an identifier PostgreSQL cannot hold as written.
func checkIdent(what, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("%s: empty name", what)
	case len(id) > 63:
		return fmt.Errorf("%s %s: longer than PostgreSQL's 63 bytes", what, pgcat.QuoteIdent(id))
	case strings.ContainsRune(id, 0):
		return fmt.Errorf("%s: the name contains a NUL byte", what)
	}
	return nil
}

func (s *Script) add(st Statement) { s.Statements = append(s.Statements, st) }

// userStatements create the user, and set its password when asked to.
func (s *Script) userStatements() {
	o := s.Options
	user := pgcat.QuoteIdent(o.User)
	create := func(pw string) string {
		stmt := "CREATE ROLE " + user + " LOGIN"
		if pw != "" {
			stmt += " PASSWORD " + pw
		}
		return doBlock("  IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = " + pgcat.QuoteLiteral(o.User) + ") THEN\n" +
			"    " + stmt + ";\n" +
			"  END IF;\n")
	}
	comment := []string{"The user pgsignal logs in as."}
	switch {
	case o.Password == "":
		comment = append(comment, "It gets no password here: give it one, or another way to log in.")
	case o.ResetPassword:
	default:
		comment = append(comment, "An existing user keeps its password.")
	}
	if o.Password != "" && o.PasswordGenerated {
		comment = append(comment, "The password was generated for this script and is shown only here: store it now",
			"(e.g. as PGPASSWORD, or in source.dsn through ${VAR}).")
	}
	st := Statement{Kind: KindUser, Title: "user " + user, Comment: comment}
	if o.Password == "" || o.ResetPassword {
		st.SQL = create("")
	} else {
		st.SQL, st.display, st.Secret = create(pgcat.QuoteLiteral(o.Password)), create(redacted), true
	}
	s.add(st)
	if o.Password != "" && o.ResetPassword {
		set := func(pw string) string { return "ALTER ROLE " + user + " WITH PASSWORD " + pw + ";" }
		s.add(Statement{Kind: KindUser, Title: "password of " + user,
			SQL: set(pgcat.QuoteLiteral(o.Password)), display: set(redacted), Secret: true})
	}
}

// replicationStatement gives the REPLICATION right the platform's way.
func (s *Script) replicationStatement() {
	o := s.Options
	user := pgcat.QuoteIdent(o.User)
	alter := "ALTER ROLE " + user + " WITH REPLICATION;"
	grant := "GRANT " + pgcat.QuoteIdent("rds_replication") + " TO " + user + ";"
	st := Statement{Kind: KindReplication, Title: "REPLICATION for " + user, SQL: alter,
		Comment: []string{"REPLICATION lets it open a logical replication stream and create its slot."}}
	switch o.Platform {
	case RDS:
		st.SQL = grant
		st.Title = "rds_replication for " + user
		st.Comment = []string{
			"Amazon RDS and Aurora give the replication right through the rds_replication role.",
			"The parameter group needs rds.logical_replication = 1 (applied at a reboot).",
		}
	case Azure:
		st.Comment = append(st.Comment,
			"Azure Database for PostgreSQL: set the server parameter wal_level = logical (flexible server)",
			"or azure.replication_support = logical (single server) and restart; the admin user (a member",
			"of azure_pg_admin) may give REPLICATION. On single server, log in as user@servername.")
	case CloudSQL:
		st.Comment = append(st.Comment,
			"Cloud SQL: set the database flag cloudsql.logical_decoding = on (restarts the instance) and",
			"run this as a user with the cloudsqlsuperuser role.")
	default:
		st.Comment = append(st.Comment,
			"The server needs wal_level = logical. On Amazon RDS or Aurora use instead",
			"  "+grant+"  (pgsignal setup --platform rds).")
	}
	s.add(st)
}

// schemaStatements create the bookkeeping schema (full mode).
func (s *Script) schemaStatements() {
	o := s.Options
	user, schema := pgcat.QuoteIdent(o.User), pgcat.QuoteIdent(o.Schema)
	s.add(Statement{Kind: KindSchema, Title: "bookkeeping schema " + schema,
		Comment: []string{
			"Bookkeeping schema (full mode): pgsignal keeps its checkpoint, dead letters and run history",
			"here, in tables it creates at its first start.",
		},
		SQL: "CREATE SCHEMA IF NOT EXISTS " + schema + ";"})
	s.add(Statement{Kind: KindSchema, Title: "USAGE, CREATE on schema " + schema,
		SQL: "GRANT USAGE, CREATE ON SCHEMA " + schema + " TO " + user + ";"})
	s.add(Statement{Kind: KindSchema, Title: "rights on the tables of schema " + schema,
		SQL: "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA " + schema + " TO " + user + ";"})
	s.add(Statement{Kind: KindSchema, Title: "rights on the sequences of schema " + schema,
		SQL: "GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA " + schema + " TO " + user + ";"})
}

// grantStatements give read access to the configured tables (USAGE on
// their schemas, SELECT on each), or with SchemaGrants to everything in
// their schemas, now and later.
func (s *Script) grantStatements() {
	o := s.Options
	user := pgcat.QuoteIdent(o.User)
	for i, schema := range s.tableSchemas() {
		q := pgcat.QuoteIdent(schema)
		if !o.SchemaGrants {
			s.add(Statement{Kind: KindGrants, Title: "USAGE on schema " + q, Comment: []string{"Schema " + q + ": read the configured tables."},
				SQL: "GRANT USAGE ON SCHEMA " + q + " TO " + user + ";"})
			for _, t := range o.Tables {
				if t.Schema != schema {
					continue
				}
				st := Statement{Kind: KindGrants, Title: "SELECT on " + t.Quoted(), SQL: "GRANT SELECT ON " + t.Quoted() + " TO " + user + ";"}
				if t.Transform {
					st.Comment = []string{t.Quoted() + " has a transform: grant SELECT on the tables it reads as well",
						"(GRANT SELECT ON <table> TO " + user + ";), or run setup with --schema-grants."}
				}
				s.add(st)
			}
			continue
		}
		comment := []string{"Schema " + q + ": read its tables and call its functions, now and later (--schema-grants)."}
		if i == 0 {
			comment = append(comment,
				"ALTER DEFAULT PRIVILEGES covers what the user running this script creates later; for",
				"objects other users create, repeat it with FOR ROLE <creator> after ALTER DEFAULT PRIVILEGES.")
		}
		s.add(Statement{Kind: KindGrants, Title: "USAGE on schema " + q, Comment: comment,
			SQL: "GRANT USAGE ON SCHEMA " + q + " TO " + user + ";"})
		s.add(Statement{Kind: KindGrants, Title: "SELECT on the tables of schema " + q,
			SQL: "GRANT SELECT ON ALL TABLES IN SCHEMA " + q + " TO " + user + ";"})
		s.add(Statement{Kind: KindGrants, Title: "SELECT on future tables of schema " + q,
			SQL: "ALTER DEFAULT PRIVILEGES IN SCHEMA " + q + " GRANT SELECT ON TABLES TO " + user + ";"})
		s.add(Statement{Kind: KindGrants, Title: "EXECUTE on the functions of schema " + q,
			SQL: "GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA " + q + " TO " + user + ";"})
		s.add(Statement{Kind: KindGrants, Title: "EXECUTE on future functions of schema " + q,
			SQL: "ALTER DEFAULT PRIVILEGES IN SCHEMA " + q + " GRANT EXECUTE ON FUNCTIONS TO " + user + ";"})
	}
}

// tableSchemas lists the schemas of the tables, each once, in configuration
// order.
func (s *Script) tableSchemas() []string {
	var out []string
	seen := map[string]bool{}
	for _, t := range s.Options.Tables {
		if !seen[t.Schema] {
			seen[t.Schema] = true
			out = append(out, t.Schema)
		}
	}
	return out
}

// publicationStatement creates the publication, or adds the tables it
// lacks.
func (s *Script) publicationStatement() {
	o := s.Options
	pub := pgcat.QuoteIdent(o.Publication)
	var b strings.Builder
	b.WriteString("  IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = " + pgcat.QuoteLiteral(o.Publication) + ") THEN\n")
	b.WriteString("    " + CreatePublicationSQL(o.Publication, o.Tables) + "\n")
	b.WriteString("  END IF;\n")
	viaRootStatement(&b, o)
	for _, t := range o.Tables {
		fmt.Fprintf(&b, "  IF NOT EXISTS (SELECT FROM pg_catalog.pg_publication_tables WHERE pubname = %s\n", pgcat.QuoteLiteral(o.Publication))
		fmt.Fprintf(&b, "      AND schemaname = %s AND tablename = %s) THEN\n", pgcat.QuoteLiteral(t.Schema), pgcat.QuoteLiteral(t.Name))
		fmt.Fprintf(&b, "    ALTER PUBLICATION %s ADD TABLE %s;\n", pub, t.published().ForTable())
		b.WriteString("  END IF;\n")
	}
	s.add(Statement{Kind: KindPublication, Title: "publication " + pub,
		Comment: []string{
			"The publication: the inserts of the configured tables. Creating it, or adding a table to it,",
			"must be done by the owner of every table (or a superuser). An existing publication gets the",
			"tables it lacks. A partitioned table is published under its own name (publish_via_partition_root,",
			"PostgreSQL 13 or later), whichever partition a row is in.",
		},
		SQL: doBlock(b.String())})
}

// CreatePublicationSQL returns the CREATE PUBLICATION statement for tables:
// the statement pgsignal itself runs in full mode.
func CreatePublicationSQL(publication string, tables []Table) string {
	pts := make([]replication.PublishedTable, len(tables))
	for i, t := range tables {
		pts[i] = t.published()
	}
	return replication.CreatePublicationSQL(publication, pts)
}

// SlotSQL returns the statement that creates the logical slot.
func SlotSQL(slot string) string {
	return "SELECT pg_create_logical_replication_slot(" + pgcat.QuoteLiteral(slot) + ", 'pgoutput');"
}

// doBlock wraps a PL/pgSQL body in an anonymous DO block.
func doBlock(body string) string {
	return "DO " + dollarQuote("BEGIN\n"+body+"END\n") + ";"
}

// SQL returns the whole script as text, password included.
func (s *Script) SQL() string {
	var b strings.Builder
	for _, l := range s.Header {
		b.WriteString(comment(l))
	}
	for i, st := range s.Statements {
		if len(st.Comment) > 0 || i == 0 {
			b.WriteString("\n")
		}
		for _, l := range st.Comment {
			b.WriteString(comment(l))
		}
		b.WriteString(st.SQL + "\n")
	}
	if len(s.Notes) > 0 {
		b.WriteString("\n")
		for _, l := range s.Notes {
			b.WriteString(comment(l))
		}
	}
	return b.String()
}

// comment renders one comment line. A line break inside (from a quoted
// identifier) is escaped, so that it cannot end the comment.
func comment(l string) string {
	if l == "" {
		return "--\n"
	}
	l = strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(l)
	return "-- " + l + "\n"
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
