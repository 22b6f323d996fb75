package config

import (
	"regexp"
	"strings"
)

var (
	// sqlNoise matches what cannot hold a select-list item: string
	// literals and comments.
	sqlNoise = regexp.MustCompile(`'(?:[^']|'')*'|--[^\n]*|/\*[\s\S]*?\*/`)
	// asTimestamp matches any "... AS timestamp".
	asTimestamp = regexp.MustCompile(`(?i)\bas\s+(?:"timestamp"|timestamp\b)`)
	// plainTimestamp matches a select-list item that is a plain column,
	// optionally qualified, named timestamp: "c.created_at AS timestamp"
	// right after SELECT [DISTINCT] or a comma.
	plainTimestamp = regexp.MustCompile(`(?i)(?:\bselect(?:\s+distinct)?|,)\s*(?:("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)\s*\.\s*)?("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)\s+as\s+(?:"timestamp"|timestamp\b)`)
	// changesAlias matches "changes [AS] alias".
	changesAlias = regexp.MustCompile(`(?i)\bchanges\s+(?:as\s+)?([a-z_][a-z0-9_$]*)`)
)

// notAlias are words that may follow "changes" without being its alias.
var notAlias = map[string]bool{"join": true, "left": true, "right": true, "inner": true, "full": true, "cross": true,
	"natural": true, "where": true, "on": true, "using": true, "group": true, "order": true, "limit": true,
	"union": true, "except": true, "intersect": true, "window": true, "having": true, "offset": true, "fetch": true, "for": true}

// TransformTimestampColumn returns the column of `changes` a transform
// sends as its timestamp when every "AS timestamp" of the statement is
// that plain column (c.created_at AS timestamp, changes.created_at AS
// timestamp, created_at AS timestamp), "" otherwise: then a backfill needs
// backfill.column. A qualifier must be changes or its alias.
func TransformTimestampColumn(sql string) string {
	sql = sqlNoise.ReplaceAllString(sql, " ")
	all := len(asTimestamp.FindAllStringIndex(sql, -1))
	matches := plainTimestamp.FindAllStringSubmatch(sql, -1)
	if all == 0 || len(matches) != all {
		return ""
	}
	aliases := map[string]bool{"changes": true}
	for _, m := range changesAlias.FindAllStringSubmatch(sql, -1) {
		if a := strings.ToLower(m[1]); !notAlias[a] {
			aliases[a] = true
		}
	}
	col := ""
	for _, m := range matches {
		if m[1] != "" && !aliases[ident(m[1])] {
			return "" // another table's column
		}
		c := ident(m[2])
		if col != "" && c != col {
			return ""
		}
		col = c
	}
	return col
}

// ident returns an identifier as PostgreSQL reads it: unquoted and folded
// to lower case, or quoted and kept.
func ident(s string) string {
	if strings.HasPrefix(s, `"`) {
		return strings.ReplaceAll(s[1:len(s)-1], `""`, `"`)
	}
	return strings.ToLower(s)
}
