package config

import (
	"fmt"
	"net/url"
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
		if why := urlDSNProblem(dsn); why != "" {
			return fmt.Errorf("the postgres:// URL would not be read as written: %s. "+
				`Percent-encode the user name and the password in a URL ("@" is %%40, "/" is %%2F, "#" is %%23, ":" is %%3A, "%%" is %%25), `+
				`or leave the password out of the URL and set PGPASSWORD (or use a .pgpass file), or write a key=value dsn: host=... user=... password='...'`, why)
		}
		return nil
	}
	if i := strings.Index(dsn, "://"); i > 0 && isScheme(dsn[:i]) {
		return fmt.Errorf("unsupported URL scheme %q; use postgres:// or postgresql://", dsn[:i])
	}
	_, err := kvPasswordSpans(dsn)
	return err
}

// urlDSNProblem reports why libpq (and pgx, which follows it) would not read
// a postgres:// URL as its author meant, typically because a password holds
// an unescaped "@", "/" or "#"; "" when nothing is wrong. It walks the URL as
// libpq's conninfo_uri_parse_options does: the user information ends at the
// first "@" before any "/", so an "@" or "/" in a password moves the rest of
// it into the host, the port, the database name or the parameters (and from
// there to the DNS resolver and into error messages). The reasons quote
// nothing of the URL.
func urlDSNProblem(dsn string) string {
	p := dsn[strings.Index(dsn, "://")+3:]
	if i := strings.IndexAny(p, "@/"); i >= 0 && p[i] == '@' {
		ui := p[:i]
		if strings.IndexByte(ui, '#') >= 0 {
			return `the user information holds a "#", which URL parsers read as the start of a fragment`
		}
		if !validEscapes(ui) {
			return `the user information holds a "%" that does not start a %XX escape`
		}
		p = p[i+1:]
	}
	const atInHost = `an "@" ends up in the host name, which happens when the user name or the password holds an "@"`
	for {
		var host string
		if strings.HasPrefix(p, "[") {
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return "" // pgx reports the unclosed IPv6 address
			}
			host, p = p[1:end], p[end+1:]
		} else {
			i := strings.IndexAny(p, ":/?,")
			if i < 0 {
				i = len(p)
			}
			host, p = p[:i], p[i:]
		}
		if strings.IndexByte(host, '@') >= 0 {
			return atInHost
		}
		if strings.HasPrefix(p, ":") {
			p = p[1:]
			i := strings.IndexAny(p, "/?,")
			if i < 0 {
				i = len(p)
			}
			port := p[:i]
			p = p[i:]
			if strings.IndexByte(port, '@') >= 0 {
				return atInHost
			}
			if strings.Trim(port, "0123456789") != "" {
				return `a port is not a number, which happens when the password holds a "/" or "#" (or when the port is mistyped)`
			}
		}
		if !strings.HasPrefix(p, ",") {
			break
		}
		p = p[1:]
	}
	if strings.HasPrefix(p, "/") {
		db := p[1:]
		p = ""
		if q := strings.IndexByte(db, '?'); q >= 0 {
			db, p = db[:q], db[q:]
		}
		if strings.IndexByte(db, '@') >= 0 {
			return `an "@" ends up in the database name, which happens when the password holds a "/"`
		}
	}
	if strings.HasPrefix(p, "?") {
		for _, kv := range strings.Split(p[1:], "&") {
			key, _, _ := strings.Cut(kv, "=")
			if strings.ContainsAny(key, "@/#") {
				return `an "@" or "/" ends up in a parameter name, which happens when the password holds a "/" or "?"`
			}
		}
	}
	return ""
}

// validEscapes reports whether every "%" in s starts a %XX escape.
func validEscapes(s string) bool {
	isHex := func(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && (i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2])) {
			return false
		}
	}
	return true
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

// isPasswordKey reports whether a connection parameter holds a secret.
func isPasswordKey(key string) bool { return key == "password" || key == "sslpassword" }

// urlPasswordSpans finds passwords in a postgres:// URL the way libpq's
// conninfo_uri_parse_options does.
func urlPasswordSpans(dsn string) []span {
	var spans []span
	start := strings.Index(dsn, "://") + 3
	if urlDSNProblem(dsn) != "" {
		// libpq would not read it as written: the password may run up to
		// any "@", so everything up to the last one counts as secret.
		if last := strings.LastIndexByte(dsn, '@'); last > start {
			spans = append(spans, span{start, last})
			for _, prm := range urlParams(dsn) {
				if isPasswordKey(prm.key) && prm.val.start > last {
					spans = append(spans, prm.val)
				}
			}
			return spans
		}
	}
	p := start
	for p < len(dsn) && dsn[p] != '@' && dsn[p] != '/' {
		p++
	}
	if p < len(dsn) && dsn[p] == '@' {
		if c := strings.IndexByte(dsn[start:p], ':'); c >= 0 {
			spans = append(spans, span{start + c + 1, p})
		}
	}
	for _, prm := range urlParams(dsn) {
		if isPasswordKey(prm.key) {
			spans = append(spans, prm.val)
		}
	}
	return spans
}

// param is one connection parameter written in a DSN.
type param struct {
	key string
	// val is where the value is written (inside the quotes of a quoted
	// key=value value).
	val span
	// value is the value with escapes and quoting undone.
	value string
}

// urlQuery returns the index of the "?" starting the query of a
// postgres:// URL, or -1. It skips the user information, which may contain
// a "?" in its password.
func urlQuery(dsn string) int {
	start := strings.Index(dsn, "://") + 3
	p := start
	for p < len(dsn) && dsn[p] != '@' && dsn[p] != '/' {
		p++
	}
	rest := start
	if p < len(dsn) && dsn[p] == '@' {
		rest = p + 1
	}
	q := strings.IndexByte(dsn[rest:], '?')
	if q < 0 {
		return -1
	}
	return rest + q
}

// urlParams returns the query parameters of a postgres:// URL, decoded the
// way pgx decodes them.
func urlParams(dsn string) []param {
	q := urlQuery(dsn)
	if q < 0 {
		return nil
	}
	var params []param
	pos := q + 1
	for _, kv := range strings.Split(dsn[pos:], "&") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			key, err := url.QueryUnescape(k)
			if err != nil {
				key = k
			}
			value, err := url.QueryUnescape(v)
			if err != nil {
				value = v
			}
			params = append(params, param{key: key, val: span{pos + len(k) + 1, pos + len(kv)}, value: value})
		}
		pos += len(kv) + 1
	}
	return params
}

// kvPasswordSpans parses a key=value connection string the way libpq's
// conninfo_parse does and returns where the password values are (inside
// the quotes of a quoted value).
func kvPasswordSpans(dsn string) ([]span, error) {
	params, err := kvParams(dsn)
	var spans []span
	for _, p := range params {
		if isPasswordKey(p.key) {
			spans = append(spans, p.val)
		}
	}
	return spans, err
}

// kvParams parses a key=value connection string the way libpq's
// conninfo_parse does. On a syntax error it returns the parameters before
// it and an error that does not quote the string.
func kvParams(dsn string) ([]param, error) {
	var params []param
	isSpace := func(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' }
	i := 0
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
			if len(params) == 0 {
				return params, fmt.Errorf(`not a connection string: write a postgres:// URL or key=value pairs, e.g. "host=db.internal dbname=app user=pgsignal"`)
			}
			return params, fmt.Errorf(`missing "=" after keyword number %d; write key=value pairs separated by spaces, and quote values containing spaces with single quotes`, len(params)+1)
		}
		i++
		for i < len(dsn) && isSpace(dsn[i]) {
			i++
		}
		var value strings.Builder
		vstart, vend := i, i
		if i < len(dsn) && dsn[i] == '\'' {
			i++
			vstart = i
			closed := false
			for i < len(dsn) {
				if dsn[i] == '\\' && i+1 < len(dsn) {
					value.WriteByte(dsn[i+1])
					i += 2
					continue
				}
				if dsn[i] == '\'' {
					closed = true
					break
				}
				value.WriteByte(dsn[i])
				i++
			}
			if !closed {
				return params, fmt.Errorf(`unterminated quoted value of keyword number %d; close it with "'" (write \' for a quote inside)`, len(params)+1)
			}
			vend = i
			i++
		} else {
			for i < len(dsn) && !isSpace(dsn[i]) {
				if dsn[i] == '\\' && i+1 < len(dsn) {
					i++
				}
				value.WriteByte(dsn[i])
				i++
			}
			vend = i
		}
		params = append(params, param{key: key, val: span{vstart, vend}, value: value.String()})
	}
	if len(params) == 0 {
		return params, fmt.Errorf("empty connection string")
	}
	return params, nil
}

// dsnParam returns the value of connection parameter key in dsn (the last
// one when it is written several times, as libpq does).
func dsnParam(dsn, key string) (string, bool) {
	var params []param
	if isURLDSN(dsn) {
		params = urlParams(dsn)
	} else {
		params, _ = kvParams(dsn)
	}
	value, found := "", false
	for _, p := range params {
		if p.key == key {
			value, found = p.value, true
		}
	}
	return value, found
}

// withParam returns dsn with key=value added, quoted or escaped for the
// form of dsn; the rest of dsn is kept as it is. The caller checks that key
// is not in dsn already.
func withParam(dsn, key, value string) string {
	if isURLDSN(dsn) {
		sep := "&"
		switch q := urlQuery(dsn); {
		case q < 0:
			sep = "?"
		case q == len(dsn)-1 || strings.HasSuffix(dsn, "&"):
			sep = ""
		}
		return dsn + sep + key + "=" + urlEscape(value)
	}
	sep := " "
	if dsn == "" || strings.TrimRight(dsn, " \t\n\r\f\v") != dsn {
		sep = ""
	}
	return dsn + sep + key + "=" + kvQuote(value)
}

// urlEscape percent-encodes a URL query value. Only unreserved characters
// and "/" are kept: "+" and " " are encoded so that libpq and pgx read the
// same value, and "@" so that libpq cannot mistake it for the end of the
// user information.
func urlEscape(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~/", c) >= 0 {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// kvQuote writes a key=value value: bare when libpq reads it back
// unchanged, else in single quotes with "\" and "'" escaped.
func kvQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " \t\n\r\f\v'\\") {
		return s
	}
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`)
	return "'" + r.Replace(s) + "'"
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
