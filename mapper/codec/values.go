package codec

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

// typeMap knows PostgreSQL's built-in types; it tells an array type's element
// type and delimiter. It is only read, so one shared map is safe.
var typeMap = pgtype.NewMap()

// AppendJSON appends the JSON form of one column value, given in PostgreSQL's
// text output format (as pgoutput sends it), to dst. typeOID is the column's
// type from the Relation message. A nil text is SQL NULL and becomes null.
//
// The mapping keeps JSON types real: integers and numerics are JSON numbers
// (numeric digits are kept exactly), booleans are booleans, json and jsonb are
// embedded as JSON, timestamptz becomes an RFC 3339 UTC string, bytea a base64
// string, and arrays JSON arrays. NaN and infinities, enums, domains and every
// type pgsignal does not know become their text form as a JSON string.
//
// The replication connection must use DateStyle=ISO, TimeZone=UTC,
// bytea_output=hex and extra_float_digits=3 (Connect sets them).
func AppendJSON(dst []byte, typeOID uint32, text []byte) []byte {
	if text == nil {
		return append(dst, "null"...)
	}
	switch typeOID {
	case pgtype.BoolOID:
		if len(text) == 1 && text[0] == 't' {
			return append(dst, "true"...)
		}
		if len(text) == 1 && text[0] == 'f' {
			return append(dst, "false"...)
		}
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID:
		if isJSONNumber(text) {
			return append(dst, text...)
		}
	case pgtype.Float4OID, pgtype.Float8OID:
		// NaN, Infinity and -Infinity are not JSON numbers: they fall through
		// to the string form. PostgreSQL < 12's long form becomes 12's
		// shortest one (float.go).
		bits := 64
		if typeOID == pgtype.Float4OID {
			bits = 32
		}
		if out, ok := appendShortestFloat(dst, text, bits); ok {
			return out
		}
	case pgtype.NumericOID:
		// NaN, Infinity and -Infinity are not JSON numbers: they fall through
		// to the string form.
		if isJSONNumber(text) {
			return append(dst, text...)
		}
	case pgtype.JSONOID, pgtype.JSONBOID:
		return append(dst, text...)
	case pgtype.TimestamptzOID:
		if t, ok := parseTimestamptz(text); ok {
			dst = append(dst, '"')
			dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
			return append(dst, '"')
		}
	case pgtype.TimestampOID:
		// "2024-01-02 03:04:05.123" -> "2024-01-02T03:04:05.123" (no zone: the
		// column has none).
		if len(text) >= 19 && text[10] == ' ' && text[4] == '-' && isTimestampText(text) {
			dst = append(dst, '"')
			dst = append(dst, text[:10]...)
			dst = append(dst, 'T')
			dst = append(dst, text[11:]...)
			return append(dst, '"')
		}
	case pgtype.ByteaOID:
		if len(text) >= 2 && text[0] == '\\' && text[1] == 'x' {
			raw := make([]byte, hex.DecodedLen(len(text)-2))
			if _, err := hex.Decode(raw, text[2:]); err == nil {
				dst = append(dst, '"')
				dst = base64.StdEncoding.AppendEncode(dst, raw)
				return append(dst, '"')
			}
		}
	default:
		if elem, delim, ok := arrayElement(typeOID); ok {
			if out, ok := appendArray(dst, elem, delim, text); ok {
				return out
			}
		}
	}
	return AppendString(dst, text)
}

// arrayElement reports the element type and delimiter of a built-in array type.
func arrayElement(typeOID uint32) (uint32, byte, bool) {
	t, ok := typeMap.TypeForOID(typeOID)
	if !ok {
		return 0, 0, false
	}
	ac, ok := t.Codec.(*pgtype.ArrayCodec)
	if !ok || ac.ElementType == nil {
		return 0, 0, false
	}
	delim := ac.Delimiter
	if delim == 0 {
		delim = ','
	}
	return ac.ElementType.OID, delim, true
}

// appendArray converts PostgreSQL's array text form ({1,2,NULL}, {{1,2},{3,4}},
// {"a b","c\"d"}, [0:1]={1,2}) into a (nested) JSON array.
func appendArray(dst []byte, elem uint32, delim byte, text []byte) ([]byte, bool) {
	if len(text) > 0 && text[0] == '[' {
		// Explicit bounds: "[1:2]={...}". Drop the decoration.
		i := strings.Index(string(text), "=")
		if i < 0 {
			return dst, false
		}
		text = text[i+1:]
	}
	start := len(dst)
	p := arrayParser{src: text, elem: elem, delim: delim}
	out, ok := p.parse(dst)
	if !ok || p.pos != len(text) {
		return dst[:start], false
	}
	return out, true
}

type arrayParser struct {
	src   []byte
	pos   int
	elem  uint32
	delim byte
	buf   []byte
}

func (p *arrayParser) parse(dst []byte) ([]byte, bool) {
	if p.pos >= len(p.src) || p.src[p.pos] != '{' {
		return dst, false
	}
	p.pos++
	dst = append(dst, '[')
	if p.pos < len(p.src) && p.src[p.pos] == '}' {
		p.pos++
		return append(dst, ']'), true
	}
	for first := true; ; first = false {
		if !first {
			dst = append(dst, ',')
		}
		if p.pos >= len(p.src) {
			return dst, false
		}
		var ok bool
		switch p.src[p.pos] {
		case '{':
			dst, ok = p.parse(dst)
		case '"':
			dst, ok = p.quoted(dst)
		default:
			dst, ok = p.bare(dst)
		}
		if !ok || p.pos >= len(p.src) {
			return dst, false
		}
		switch c := p.src[p.pos]; {
		case c == '}':
			p.pos++
			return append(dst, ']'), true
		case c == p.delim:
			p.pos++
		default:
			return dst, false
		}
	}
}

func (p *arrayParser) quoted(dst []byte) ([]byte, bool) {
	p.pos++ // opening quote
	if p.buf == nil {
		p.buf = make([]byte, 0, 32) // non-nil: "" is an empty string, not NULL
	}
	p.buf = p.buf[:0]
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch c {
		case '\\':
			if p.pos+1 >= len(p.src) {
				return dst, false
			}
			p.buf = append(p.buf, p.src[p.pos+1])
			p.pos += 2
		case '"':
			p.pos++
			return AppendJSON(dst, p.elem, p.buf), true
		default:
			p.buf = append(p.buf, c)
			p.pos++
		}
	}
	return dst, false
}

func (p *arrayParser) bare(dst []byte) ([]byte, bool) {
	start := p.pos
	for p.pos < len(p.src) && p.src[p.pos] != p.delim && p.src[p.pos] != '}' {
		p.pos++
	}
	v := p.src[start:p.pos]
	if len(v) == 0 {
		return dst, false
	}
	if len(v) == 4 && strings.EqualFold(string(v), "NULL") {
		return append(dst, "null"...), true
	}
	return AppendJSON(dst, p.elem, v), true
}

// isJSONNumber reports whether b is a number as JSON spells it.
func isJSONNumber(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i >= len(b):
		return false
	case b[i] == '0':
		i++
	case b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		d := i + 1
		if i = skipDigits(b, d); i == d {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		if i = skipDigits(b, d); i == d {
			return false
		}
	}
	return i == len(b)
}

// skipDigits returns the index of the first byte at or after i that is not
// an ASCII digit.
func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// ParseTimestamp parses a timestamp column value in PostgreSQL's ISO text
// form. timestamptz values carry their offset; timestamp values (without
// zone) and dates (at midnight) are read in loc as PostgreSQL's AT TIME
// ZONE reads them, including the local times a change of offset skips or
// repeats (see InZone).
func ParseTimestamp(typeOID uint32, text []byte, loc *time.Location) (time.Time, error) {
	switch typeOID {
	case pgtype.TimestamptzOID:
		if t, ok := parseTimestamptz(text); ok {
			return t, nil
		}
	case pgtype.TimestampOID:
		if t, err := time.Parse("2006-01-02 15:04:05.999999999", string(text)); err == nil {
			return InZone(t, loc), nil
		}
	case pgtype.DateOID:
		if t, err := time.Parse("2006-01-02", string(text)); err == nil {
			return InZone(t, loc), nil
		}
	default:
		return time.Time{}, fmt.Errorf("type OID %d is not a timestamp, timestamptz or date", typeOID)
	}
	return time.Time{}, fmt.Errorf("cannot read %q as a timestamp", text)
}

var tstzLayouts = []string{
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07:00:00",
}

func parseTimestamptz(text []byte) (time.Time, bool) {
	if t, ok := fastTimestamptz(text); ok {
		return t, true
	}
	s := string(text)
	for _, l := range tstzLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// AppendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, like
// encoding/json; HTML characters are not escaped.
func AppendString[T []byte | string](dst []byte, s T) []byte {
	const hexdig = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexdig[c>>4], hexdig[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexdig[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// fastTimestamptz parses the common ISO form "2006-01-02 15:04:05[.f…]±hh[:mm[:ss]]"
// without allocating; anything else (BC dates, infinity, years beyond 9999)
// is left to time.Parse.
func fastTimestamptz(b []byte) (time.Time, bool) {
	if len(b) < 22 || b[4] != '-' || b[7] != '-' || b[10] != ' ' || b[13] != ':' || b[16] != ':' {
		return time.Time{}, false
	}
	num := func(s []byte) (int, bool) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(b[0:4])
	month, ok2 := num(b[5:7])
	day, ok3 := num(b[8:10])
	hour, ok4 := num(b[11:13])
	minute, ok5 := num(b[14:16])
	sec, ok6 := num(b[17:19])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) || month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	i := 19
	nsec := 0
	if i < len(b) && b[i] == '.' {
		i++
		digits := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			if digits < 9 {
				nsec = nsec*10 + int(b[i]-'0')
				digits++
			}
			i++
		}
		if digits == 0 {
			return time.Time{}, false
		}
		for ; digits < 9; digits++ {
			nsec *= 10
		}
	}
	if i >= len(b) || (b[i] != '+' && b[i] != '-') {
		return time.Time{}, false
	}
	sign := 1
	if b[i] == '-' {
		sign = -1
	}
	rest := b[i+1:]
	var off int
	switch len(rest) {
	case 2, 5, 8:
		h, ok := num(rest[0:2])
		if !ok {
			return time.Time{}, false
		}
		off = h * 3600
		if len(rest) >= 5 {
			if rest[2] != ':' {
				return time.Time{}, false
			}
			m, ok := num(rest[3:5])
			if !ok {
				return time.Time{}, false
			}
			off += m * 60
		}
		if len(rest) == 8 {
			if rest[5] != ':' {
				return time.Time{}, false
			}
			sc, ok := num(rest[6:8])
			if !ok {
				return time.Time{}, false
			}
			off += sc
		}
	default:
		return time.Time{}, false
	}
	t := time.Date(year, time.Month(month), day, hour, minute, sec, nsec, time.UTC)
	if t.Day() != day { // e.g. February 30th
		return time.Time{}, false
	}
	return t.Add(-time.Duration(sign*off) * time.Second), true
}

// AppendTimestampMillis appends t in UTC as "2006-01-02T15:04:05.000Z", the
// form of an event's timestamp, without going through time.Format.
func AppendTimestampMillis(dst []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(dst, "2006-01-02T15:04:05.000Z07:00")
	}
	hour, minute, sec := t.Clock()
	ms := t.Nanosecond() / 1e6
	d2 := func(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }
	dst = append(dst, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-')
	dst = d2(dst, int(month))
	dst = append(dst, '-')
	dst = d2(dst, day)
	dst = append(dst, 'T')
	dst = d2(dst, hour)
	dst = append(dst, ':')
	dst = d2(dst, minute)
	dst = append(dst, ':')
	dst = d2(dst, sec)
	return append(dst, '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
}

// isTimestampText reports whether b holds only the characters of an ISO
// timestamp, so that it can be copied into a JSON string unescaped.
func isTimestampText(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c == '-' || c == ':' || c == '.' || c == ' ' || c == '+' || c == 'B' || c == 'C') {
			return false
		}
	}
	return true
}
