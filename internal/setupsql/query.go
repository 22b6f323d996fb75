package setupsql

import (
	"fmt"

	"github.com/pgsignal/pgsignal/internal/pgcat"
)

// This file holds what the script of the query method (Options.Query)
// does differently: pgsignal polls the tables with SELECT, so the user
// needs CONNECT, USAGE on the tables' schemas and SELECT on the tables,
// the bookkeeping schema in full mode, and nothing else: no REPLICATION,
// no publication, no slot.

// queryHeader is the script's header for the query method.
func queryHeader(o Options, mode string) []string {
	return []string{
		fmt.Sprintf("pgsignal setup (%s, query method): user %s, %s.", mode, pgcat.QuoteIdent(o.User), plural(len(o.Tables), "table")),
		"The query method reads the tables with SELECT: no REPLICATION right, publication or slot.",
		"Run it as a superuser (or the platform's admin user, or an owner of the tables) connected to",
		"the database pgsignal reads. Every statement is idempotent: running the script again is safe.",
	}
}

// connectStatement grants CONNECT on the current database (PUBLIC has it
// by default, but a locked-down database revokes it).
func (s *Script) connectStatement() {
	o := s.Options
	s.add(Statement{Kind: KindGrants, Title: "CONNECT on the database",
		Comment: []string{"CONNECT on this database (PUBLIC has it unless it was revoked)."},
		SQL:     doBlock("  EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), " + pgcat.QuoteLiteral(o.User) + ");\n")})
}

// queryNotes end the script of the query method.
func queryNotes(o Options) []string {
	if o.ReadOnly {
		return []string{
			"Query method, read-only mode: pgsignal writes nothing to the database; it keeps its position",
			"in source.state_file on its own host. The grants reach a standby through replication.",
		}
	}
	return []string{
		"Query method, full mode: pgsignal keeps its position, dead letters and run history in the",
		"bookkeeping schema; it needs a primary (a standby cannot be written to: use read-only mode).",
	}
}
