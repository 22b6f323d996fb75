package pgcat

import (
	"strings"

	"errors"

	"github.com/jackc/pgx/v5/pgconn"
)

// QuoteIdent returns id as a double-quoted SQL identifier ("" doubles a
// quote). It always quotes, so the case of id is kept.
func QuoteIdent(id string) string {
	return `"` + strings.ReplaceAll(id, `"`, `""`) + `"`
}

// QualifiedName returns "schema"."name".
func QualifiedName(schema, name string) string {
	return QuoteIdent(schema) + "." + QuoteIdent(name)
}

// QuoteLiteral returns s as an SQL string literal. A backslash makes it an
// escape string (E'...') with the backslash doubled, so the literal reads
// the same whatever standard_conforming_strings is.
func QuoteLiteral(s string) string {
	q := QuoteReplLiteral(s)
	if strings.Contains(s, `\`) {
		q = "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q
}

// QuoteReplLiteral quotes s for a command of the replication protocol
// (START_REPLICATION's options, for instance), whose grammar knows only
// '...' with a doubled quote and no E'...' strings; it is also the form an
// operator copies from a message.
func QuoteReplLiteral(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}

// RedactParseError returns the message of a pgconn connection-string parse
// error without the connection string, which it may quote (with its
// password), and whether err was such an error.
func RedactParseError(err error) (string, bool) {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return "", false
	}
	msg := pe.Error()
	if i := strings.LastIndex(msg, "`: "); i >= 0 {
		msg = msg[i+3:]
	}
	if pe.ConnString != "" {
		msg = strings.ReplaceAll(msg, pe.ConnString, "<dsn>")
	}
	return msg, true
}
