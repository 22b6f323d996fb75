package replication

import (
	"github.com/pgsignal/pgsignal/internal/pgcat"
)

// Key returns the relation's table as a TableRef, a map key that keeps the
// schema and the name apart: "a.b".c and a."b.c" are different keys, while
// their QualifiedName (for display) is the same.
func (r *Relation) Key() TableRef { return TableRef{Schema: r.Namespace, Name: r.Name} }

// Display returns "schema.name" for logs and messages, with a part in
// double quotes when it is not a plain lower-case identifier, so that
// "a.b".c and a."b.c" read differently.
func (t TableRef) Display() string { return displayIdent(t.Schema) + "." + displayIdent(t.Name) }

// displayIdent quotes id unless it is a plain lower-case identifier.
func displayIdent(id string) string {
	plain := id != ""
	for i, c := range id {
		if !(c == '_' || c >= 'a' && c <= 'z' || i > 0 && (c >= '0' && c <= '9' || c == '$')) {
			plain = false
			break
		}
	}
	if plain {
		return id
	}
	return pgcat.QuoteIdent(id)
}
