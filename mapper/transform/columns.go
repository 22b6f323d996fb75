package transform

import (
	"regexp"
	"strings"

	"github.com/pgsignal/pgsignal/replication"
)

// UsesColumn reports whether the transform of rel's table may read the
// column at index col (replication.ColumnUser), so that an update leaving
// that column's large value out (unchanged TOAST) can still be transformed
// when it does not. It reads the transform's text and errs towards "yes":
// the column is used when its name appears as an identifier, and every
// column is used when the transform has a `*`, a NATURAL join, a whole-row
// reference to changes (to_jsonb(c), changes as a value) or renames its
// columns (changes AS c(a, b)).
func (t *Transformer) UsesColumn(rel *replication.Relation, col int) bool {
	s := t.byKey[rel.Key()]
	if s == nil || col < 0 || col >= len(rel.Columns) {
		return s != nil
	}
	return s.sql.uses(rel.Columns[col].Name)
}

// sqlToken matches, in order: a quoted identifier, a string literal, a
// dollar-quote tag (its body is read as SQL: a column named there counts
// as used), a comment, a word, or any other character.
var sqlToken = regexp.MustCompile(`"(?:[^"]|"")*"|'(?:[^']|'')*'|\$[A-Za-z_0-9]*\$|--[^\n]*|/\*[\s\S]*?\*/|[A-Za-z_][A-Za-z0-9_$]*|\S`)

// tokens returns the SQL's identifiers (lower-cased unless quoted, with the
// quotes) and punctuation, without literals and comments.
func tokens(sql string) []string {
	var out []string
	for _, tok := range sqlToken.FindAllString(sql, -1) {
		switch {
		case strings.HasPrefix(tok, "'"), strings.HasPrefix(tok, "--"), strings.HasPrefix(tok, "/*"):
			continue
		case strings.HasPrefix(tok, `"`):
			out = append(out, tok)
		default:
			out = append(out, strings.ToLower(tok))
		}
	}
	return out
}

var (
	// plainIdent is a name SQL can write unquoted.
	plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)
	wordStart  = regexp.MustCompile(`^[a-z_]`)
)

// notAlias are the words that may follow a table in FROM without being its
// alias.
var notAlias = map[string]bool{
	"where": true, "join": true, "inner": true, "left": true, "right": true, "full": true, "cross": true,
	"natural": true, "on": true, "using": true, "group": true, "order": true, "limit": true, "offset": true,
	"union": true, "except": true, "intersect": true, "window": true, "having": true, "for": true,
	"fetch": true, "tablesample": true, "lateral": true,
}

// uses reports whether the user's SQL may read the changes column named
// name (see UsesColumn).
func (u userSQL) uses(name string) bool {
	toks := tokens(u.text)
	ident := `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
	plain := ""
	if plainIdent.MatchString(name) {
		plain = name
	}
	aliases := map[string]bool{"changes": true, `"changes"`: true}
	defs := map[int]bool{} // token indexes of alias definitions
	for i, tok := range toks {
		switch {
		case tok == "*" || tok == "natural":
			return true
		case tok == ident || (plain != "" && tok == plain):
			return true
		}
		if tok != "changes" && tok != `"changes"` {
			continue
		}
		if i > 0 && (toks[i-1] == "from" || toks[i-1] == "join" || toks[i-1] == ",") {
			defs[i] = true
			j := i + 1
			if j < len(toks) && toks[j] == "as" {
				j++
			}
			if j < len(toks) && !notAlias[toks[j]] && (strings.HasPrefix(toks[j], `"`) || wordStart.MatchString(toks[j])) {
				aliases[toks[j]] = true
				defs[j] = true
				if j+1 < len(toks) && toks[j+1] == "(" {
					return true // columns renamed
				}
			}
		}
	}
	for i, tok := range toks {
		if aliases[tok] && !defs[i] && (i+1 >= len(toks) || toks[i+1] != ".") {
			return true // a whole-row reference
		}
	}
	return false
}
