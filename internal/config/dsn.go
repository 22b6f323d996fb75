package config

import (
	"fmt"
	"strings"
)

// DSN handling. Nothing here may put any part of a connection string in an
// error message: it may hold a password.

// isURLDSN reports whether dsn is in libpq's URL form.
func isURLDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// span is a byte range [start, end) of a string.
type span struct{ start, end int }

// checkDSN reports what is wrong with the form of a libpq connection string,
// without quoting it.
func checkDSN(dsn string) error {
	if isURLDSN(dsn) {
		return nil
	}
	if i := strings.Index(dsn, "://"); i > 0 && isScheme(dsn[:i]) {
		return fmt.Errorf("unsupported URL scheme %q; use postgres:// or postgresql://", dsn[:i])
	}
	_, err := kvPasswordSpans(dsn)
	return err
}

// isScheme reports whether s looks like a URL scheme.
func isScheme(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.')) {
			return false
		}
	}
	return s != ""
}

// dsnPasswordSpans returns where passwords are written in dsn: the password
// of a URL's user information, a URL's password= parameter, or a password=
// keyword. It follows libpq's parsers; a malformed string yields what could
// be found.
func dsnPasswordSpans(dsn string) []span {
	if isURLDSN(dsn) {
		return urlPasswordSpans(dsn)
	}
	spans, _ := kvPasswordSpans(dsn)
	return spans
}

// urlPasswordSpans finds passwords in a postgres:// URL the way libpq's
// conninfo_uri_parse_options does.
func urlPasswordSpans(dsn string) []span {
	var spans []span
	start := strings.Index(dsn, "://") + 3
	p := start
	for p < len(dsn) && dsn[p] != '@' && dsn[p] != '/' {
		p++
	}
	rest := start
	if p < len(dsn) && dsn[p] == '@' {
		if c := strings.IndexByte(dsn[start:p], ':'); c >= 0 {
			spans = append(spans, span{start + c + 1, p})
		}
		rest = p + 1
	}
	q := strings.IndexByte(dsn[rest:], '?')
	if q < 0 {
		return spans
	}
	pos := rest + q + 1
	for _, param := range strings.Split(dsn[pos:], "&") {
		if k, _, ok := strings.Cut(param, "="); ok && k == "password" {
			spans = append(spans, span{pos + len(k) + 1, pos + len(param)})
		}
		pos += len(param) + 1
	}
	return spans
}

// kvPasswordSpans parses a key=value connection string the way libpq's
// conninfo_parse does and returns where the password values are (inside
// the quotes of a quoted value).
func kvPasswordSpans(dsn string) ([]span, error) {
	var spans []span
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	i, pairs := 0, 0
	for {
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		if i == len(dsn) {
			break
		}
		kstart := i
		for i < len(dsn) && dsn[i] != '=' && !isSpace(dsn[i]) {
			i++
		}
		key := dsn[kstart:i]
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		if i == len(dsn) || dsn[i] != '=' {
			if pairs == 0 {
				return spans, fmt.Errorf(`not a connection string: write a postgres:// URL or key=value pairs, e.g. "host=db.internal dbname=app user=pgsignal"`)
			}
			return spans, fmt.Errorf(`missing "=" after keyword number %d; write key=value pairs separated by spaces, and quote values containing spaces with single quotes`, pairs+1)
		}
		i++
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		vstart, vend := i, i
		if i < len(dsn) && dsn[i] == '\'' {
			i++
			vstart = i
			closed := false
			for i < len(dsn) {
				if dsn[i] == '\\' && i+1 < len(dsn) {
					i += 2
					continue
				}
				if dsn[i] == '\'' {
					closed = true
					break
				}
				i++
			}
			if !closed {
				return spans, fmt.Errorf(`unterminated quoted value of keyword number %d; close it with "'" (write \' for a quote inside)`, pairs+1)
			}
			vend = i
			i++
		} else {
			for i < len(dsn) && !isSpace(dsn[i]) {
				if dsn[i] == '\\' && i+1 < len(dsn) {
					i++
				}
				i++
			}
			vend = i
		}
		if key == "password" {
			spans = append(spans, span{vstart, vend})
		}
		pairs++
	}
	if pairs == 0 {
		return spans, fmt.Errorf("empty connection string")
	}
	return spans, nil
}

// dsnHasLiteralPassword reports whether the unexpanded DSN as written in the
// file contains a password that does not come from an environment
// variable.
func dsnHasLiteralPassword(raw string) bool {
	for _, s := range dsnPasswordSpans(raw) {
		if pw := raw[s.start:s.end]; pw != "" && !strings.Contains(pw, "${") {
			return true
		}
	}
	return false
}

// dsnPasswords returns the passwords written in dsn.
func dsnPasswords(dsn string) []string {
	var pws []string
	for _, s := range dsnPasswordSpans(dsn) {
		if s.end > s.start {
			pws = append(pws, dsn[s.start:s.end])
		}
	}
	return pws
}

// redactDSN replaces every password in dsn with "REDACTED".
func redactDSN(dsn string) string {
	spans := dsnPasswordSpans(dsn)
	var b strings.Builder
	last := 0
	for _, s := range spans {
		if s.end == s.start {
			continue
		}
		b.WriteString(dsn[last:s.start])
		b.WriteString(redacted)
		last = s.end
	}
	b.WriteString(dsn[last:])
	return b.String()
}

// redacted replaces a secret in output.
const redacted = "REDACTED"
