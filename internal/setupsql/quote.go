package setupsql

import "strings"

// QuoteIdent returns id as a double-quoted SQL identifier ("" doubles a
// quote). It always quotes, so the case of id is kept.
func QuoteIdent(id string) string {
	return `"` + strings.ReplaceAll(id, `"`, `""`) + `"`
}

// QuoteLiteral returns s as an SQL string literal. A backslash makes it an
// escape string (E'...') with the backslash doubled, so the literal reads
// the same whatever standard_conforming_strings is.
func QuoteLiteral(s string) string {
	q := "'" + strings.ReplaceAll(s, "'", "''") + "'"
	if strings.Contains(s, `\`) {
		q = "E" + strings.ReplaceAll(q, `\`, `\\`)
	}
	return q
}

// QualifiedName returns "schema"."name".
func QualifiedName(schema, name string) string {
	return QuoteIdent(schema) + "." + QuoteIdent(name)
}

// dollarQuote wraps body in a dollar-quoted string whose tag does not occur
// in body.
func dollarQuote(body string) string {
	tag := "$pgsignal$"
	for i := 1; strings.Contains(body, tag); i++ {
		tag = "$pgsignal" + strings.Repeat("_", i) + "$"
	}
	return tag + "\n" + body + tag
}
