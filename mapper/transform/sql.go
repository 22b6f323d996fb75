package transform

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/pgsignal/pgsignal/internal/pgcat"
)

// OIDs of the parameters' types.
const (
	textOID      = 25
	textArrayOID = 1009
)

// Names of the hidden columns the wrapping statement adds before the
// transform's own: the input's ordinal in the batch, the marker of a lateral
// row that exists, and the output's number within its input.
const (
	ordColumn    = "__pgsignal_ord"
	hitColumn    = "__pgsignal_hit"
	numColumn    = "__pgsignal_n"
	hiddenFields = 3
)

// userSQL is a transform's SELECT, trimmed, with a leading WITH [RECURSIVE]
// located so that `changes` can join its list.
type userSQL struct {
	text      string // trimmed SQL
	with      bool
	recursive bool
	bodyOff   int // byte offset in text of what follows WITH [RECURSIVE] (0 without WITH)
}

// parseUserSQL trims trailing white space and semicolons from sql and finds
// a leading WITH [RECURSIVE] (after white space and comments).
func parseUserSQL(sql string) userSQL {
	u := userSQL{text: strings.TrimRight(sql, " \t\r\n\f\v;")}
	i := skipSpace(u.text, 0)
	if j, ok := keyword(u.text, i, "with"); ok {
		u.with, u.bodyOff = true, j
		if k, ok := keyword(u.text, skipSpace(u.text, j), "recursive"); ok {
			u.recursive, u.bodyOff = true, k
		}
	}
	return u
}

// body is the part of the SQL that follows the wrapper's WITH clause.
func (u userSQL) body() string { return u.text[u.bodyOff:] }

// skipSpace returns the offset of the first byte at or after i that is
// neither white space nor inside a comment (-- to the end of the line, or a
// possibly nested /* */).
func skipSpace(s string, i int) int {
	for i < len(s) {
		switch {
		case strings.ContainsRune(" \t\r\n\f\v", rune(s[i])):
			i++
		case strings.HasPrefix(s[i:], "--"):
			j := strings.IndexByte(s[i:], '\n')
			if j < 0 {
				return len(s)
			}
			i += j + 1
		case strings.HasPrefix(s[i:], "/*"):
			depth := 0
			for i < len(s) {
				if strings.HasPrefix(s[i:], "/*") {
					depth++
					i += 2
				} else if strings.HasPrefix(s[i:], "*/") {
					depth--
					i += 2
					if depth == 0 {
						break
					}
				} else {
					i++
				}
			}
		default:
			return i
		}
	}
	return i
}

// keyword reports whether s holds the keyword kw (case-insensitively, as a
// whole word) at i, and the offset after it.
func keyword(s string, i int, kw string) (int, bool) {
	j := i + len(kw)
	if j > len(s) || !strings.EqualFold(s[i:j], kw) {
		return i, false
	}
	if j < len(s) && isIdentChar(s[j]) {
		return i, false
	}
	return j, true
}

func isIdentChar(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// statement is the SQL that evaluates a transform for a batch of one
// version of a table.
type statement struct {
	sql string
	// params is the number of parameters (one text[] per column, at least
	// one).
	params int
	// userStart is the character (not byte) offset in sql where the user's
	// SQL (its body) starts; userChars is its length in characters.
	userStart, userChars int
}

// buildStatement writes the statement that evaluates u for a batch of rows
// whose columns are named names, of the SQL types types (format_type's
// output). Each parameter is a text[] holding one column's values; the rows
// are unnested with their ordinal, cast back to the column types, and every
// row is the one-row `changes` of its own lateral evaluation of u.
func buildStatement(u userSQL, names, types []string) statement {
	var b strings.Builder
	b.WriteString("SELECT b." + ordColumn + ", t.* FROM (\n  SELECT u." + ordColumn)
	for i, n := range names {
		fmt.Fprintf(&b, ", u.c%d::%s AS %s", i+1, types[i], pgcat.QuoteIdent(n))
	}
	b.WriteString("\n  FROM unnest(")
	params := max(len(names), 1)
	for i := range params {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "$%d::text[]", i+1)
	}
	b.WriteString(") WITH ORDINALITY AS u(")
	if len(names) == 0 {
		// A table without columns: one parameter of NULLs, for the count.
		b.WriteString("__pgsignal_none")
	}
	for i := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "c%d", i+1)
	}
	b.WriteString(", " + ordColumn + ")) b\nLEFT JOIN LATERAL (\n  SELECT true AS " + hitColumn +
		", row_number() OVER () AS " + numColumn + ", x.* FROM (\n    WITH ")
	if u.recursive {
		b.WriteString("RECURSIVE ")
	}
	b.WriteString("changes AS (SELECT ")
	for i, n := range names {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("b." + pgcat.QuoteIdent(n))
	}
	b.WriteString(")")
	if u.with {
		b.WriteString(",")
	}
	b.WriteString("\n")
	st := statement{params: params, userStart: utf8.RuneCountInString(b.String())}
	body := u.body()
	st.userChars = utf8.RuneCountInString(body)
	b.WriteString(body)
	// A new line first: the user's SQL may end with a -- comment.
	b.WriteString("\n  ) x) t ON true\nORDER BY b." + ordColumn + ", t." + numColumn)
	st.sql = b.String()
	return st
}

// locate turns a 1-based character position in the statement (an error's
// position) into the line and column (1-based, in characters) in the user's
// SQL, with that line's text; ok is false when the position is outside it.
func (st statement) locate(u userSQL, pos int) (line, column int, text string, ok bool) {
	p := pos - 1 - st.userStart
	if pos <= 0 || p < 0 || p > st.userChars {
		return 0, 0, "", false
	}
	// Character offset in u.text.
	p += utf8.RuneCountInString(u.text[:u.bodyOff])
	line, column = 1, 1
	lineStart := 0
	for i, r := range u.text {
		if p == 0 {
			break
		}
		p--
		if r == '\n' {
			line++
			column = 1
			lineStart = i + 1
		} else {
			column++
		}
	}
	end := strings.IndexByte(u.text[lineStart:], '\n')
	if end < 0 {
		end = len(u.text) - lineStart
	}
	return line, column, strings.TrimRight(u.text[lineStart:lineStart+end], "\r"), true
}

// appendTextArray appends the binary form of a one-dimensional text[] of
// the given elements (nil is NULL) to dst.
func appendTextArray(dst []byte, elems [][]byte) []byte {
	hasNull := uint32(0)
	for _, e := range elems {
		if e == nil {
			hasNull = 1
			break
		}
	}
	dst = binary.BigEndian.AppendUint32(dst, 1) // dimensions
	dst = binary.BigEndian.AppendUint32(dst, hasNull)
	dst = binary.BigEndian.AppendUint32(dst, textOID)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(elems)))
	dst = binary.BigEndian.AppendUint32(dst, 1) // lower bound
	for _, e := range elems {
		if e == nil {
			dst = binary.BigEndian.AppendUint32(dst, 0xffffffff) // -1: NULL
			continue
		}
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(e)))
		dst = append(dst, e...)
	}
	return dst
}
