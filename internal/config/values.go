package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// durationError explains why a value is not a duration.
func durationError(s string) string {
	t := strings.TrimSpace(s)
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return fmt.Sprintf(`expected a duration with a unit, got %s; write e.g. "%ss"`, short(t), t)
	}
	return fmt.Sprintf(`expected a duration like "30s", "250ms" or "1m30s", got %q; units are ns, us, ms, s, m, h`, short(s))
}

// parseDuration parses a Go duration string. A bare number other than 0 is
// rejected: "30" could mean seconds or milliseconds.
func parseDuration(s string) (time.Duration, bool) {
	t := strings.TrimSpace(s)
	if t == "0" {
		return 0, true
	}
	if _, err := strconv.ParseFloat(t, 64); err == nil {
		return 0, false
	}
	d, err := time.ParseDuration(t)
	return d, err == nil
}

// ParseSince parses a backfill window: a number of days ("7d"), a Go
// duration ("36h", "90m") or both ("1d12h"). It must be positive.
func ParseSince(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	var total time.Duration
	if i := strings.IndexByte(t, 'd'); i >= 0 {
		days, err := strconv.ParseFloat(t[:i], 64)
		if err != nil || days < 0 || days > 36500 {
			return 0, fmt.Errorf("invalid window %q: write a number of days like \"7d\", hours like \"36h\", or both like \"1d12h\"", s)
		}
		total = time.Duration(days * 24 * float64(time.Hour))
		t = t[i+1:]
	}
	if t != "" {
		d, err := time.ParseDuration(t)
		if err != nil {
			return 0, fmt.Errorf("invalid window %q: write a number of days like \"7d\", hours like \"36h\", or both like \"1d12h\"", s)
		}
		total += d
	}
	if total <= 0 {
		return 0, fmt.Errorf("window %q is not positive: write how far back to send rows, e.g. \"7d\"", s)
	}
	return total, nil
}

// sizeUnits maps the lower-cased units accepted in byte sizes to their
// multipliers.
var sizeUnits = map[string]int64{
	"":    1,
	"b":   1,
	"kb":  1000,
	"mb":  1000 * 1000,
	"gb":  1000 * 1000 * 1000,
	"kib": 1 << 10,
	"mib": 1 << 20,
	"gib": 1 << 30,
}

// parseSize parses a byte size: an integer number of bytes, or a number
// followed by B, KB, MB, GB (powers of 1000) or KiB, MiB, GiB (powers of
// 1024), case-insensitively, with optional space: "64MiB", "1.5 GB".
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && (t[i] >= '0' && t[i] <= '9' || t[i] == '.' || t[i] == '_') {
		i++
	}
	num := strings.ReplaceAll(t[:i], "_", "")
	unit := strings.TrimSpace(t[i:])
	mult, ok := sizeUnits[strings.ToLower(unit)]
	if num == "" || !ok {
		if strings.HasPrefix(t, "-") {
			return 0, fmt.Errorf("expected a positive size, got %q", short(s))
		}
		return 0, fmt.Errorf(`expected a size like "64MiB" or an integer number of bytes, got %q; units are B, KB, MB, GB (powers of 1000) and KiB, MiB, GiB (powers of 1024)`, short(s))
	}
	if n, err := strconv.ParseInt(num, 10, 64); err == nil {
		if n > math.MaxInt64/mult {
			return 0, fmt.Errorf("size %q is too large", short(s))
		}
		return n * mult, nil
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil {
		return 0, fmt.Errorf(`expected a size like "64MiB" or an integer number of bytes, got %q`, short(s))
	}
	v := f * float64(mult)
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q is too large", short(s))
	}
	return int64(v), nil
}

// formatSize formats n bytes with the largest binary unit that divides it
// exactly, so parseSize(formatSize(n)) == n.
func formatSize(n int64) string {
	for _, u := range []struct {
		name string
		mult int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n != 0 && n%u.mult == 0 {
			return strconv.FormatInt(n/u.mult, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}

// short truncates a value quoted in a message, so that a long value does not
// swamp it.
func short(s string) string {
	const max = 40
	if len(s) <= max {
		return s
	}
	r := []rune(s)
	if len(r) <= max {
		return s
	}
	return string(r[:max]) + "..."
}

// validUUID reports whether s has the 8-4-4-4-12 hexadecimal form.
func validUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// validSlotName reports whether s is a valid replication slot name:
// [a-z0-9_]{1,63}.
func validSlotName(s string) bool {
	if s == "" || len(s) > MaxIdentifierLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// parseTableName parses a table reference as PostgreSQL would: "table" or
// "schema.table", each part a bare identifier (folded to lower case) or a
// double-quoted one (kept as written, "" being a literal quote). The schema
// defaults to DefaultTableSchema.
func parseTableName(s string) (schema, name string, err error) {
	var parts []string
	i := 0
	skipSpace := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
	}
	skipSpace()
	for {
		part, n, err := parseIdent(s, i)
		if err != nil {
			return "", "", err
		}
		parts = append(parts, part)
		i = n
		skipSpace()
		if i == len(s) {
			break
		}
		if s[i] != '.' {
			return "", "", fmt.Errorf(`unexpected %q at position %d; quote identifiers that contain unusual characters, e.g. '"Odd; Name".events'`, s[i:i+1], i+1)
		}
		i++
		skipSpace()
	}
	switch len(parts) {
	case 1:
		return DefaultTableSchema, parts[0], nil
	case 2:
		return parts[0], parts[1], nil
	default:
		return "", "", fmt.Errorf(`too many dots: write "schema.table" or "table" (the database comes from source.dsn)`)
	}
}

// parseIdent parses one identifier of s starting at i and returns it and the
// index after it.
func parseIdent(s string, i int) (string, int, error) {
	if i == len(s) {
		return "", i, fmt.Errorf(`missing identifier at position %d: write "schema.table" or "table"`, i+1)
	}
	if s[i] == '"' {
		var b strings.Builder
		for j := i + 1; j < len(s); j++ {
			if s[j] != '"' {
				b.WriteByte(s[j])
				continue
			}
			if j+1 < len(s) && s[j+1] == '"' {
				b.WriteByte('"')
				j++
				continue
			}
			id := b.String()
			if id == "" {
				return "", 0, fmt.Errorf(`empty quoted identifier "" at position %d`, i+1)
			}
			if err := checkIdentLen(id); err != nil {
				return "", 0, err
			}
			return id, j + 1, nil
		}
		return "", 0, fmt.Errorf(`unterminated quoted identifier starting at position %d: close it with '"' (write "" for a quote inside)`, i+1)
	}
	j := i
	for j < len(s) && isIdentByte(s[j], j > i) {
		j++
	}
	if j == i {
		return "", 0, fmt.Errorf(`unexpected %q at position %d; quote identifiers that contain unusual characters or start with a digit, e.g. '"Odd; Name".events'`, s[i:i+1], i+1)
	}
	id := strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s[i:j])
	if err := checkIdentLen(id); err != nil {
		return "", 0, err
	}
	return id, j, nil
}

// isIdentByte reports whether c may appear in a bare identifier; digits and
// "$" only after the first character.
func isIdentByte(c byte, notFirst bool) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', c == '_', c >= 0x80:
		return true
	case '0' <= c && c <= '9', c == '$':
		return notFirst
	}
	return false
}

// isBareIdent reports whether id reads back unchanged when written without
// quotes.
func isBareIdent(id string) bool {
	if id == "" {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !isIdentByte(c, i > 0) || 'A' <= c && c <= 'Z' {
			return false
		}
	}
	return true
}

// checkIdentLen rejects an identifier PostgreSQL would truncate.
func checkIdentLen(id string) error {
	if len(id) > MaxIdentifierLen {
		return fmt.Errorf("identifier %q is %d bytes long; PostgreSQL identifiers are at most %d bytes", short(id), len(id), MaxIdentifierLen)
	}
	return nil
}

// quoteIdent returns id as it would be written in the config file: bare when
// it reads back unchanged, double-quoted otherwise.
func quoteIdent(id string) string {
	if isBareIdent(id) {
		return id
	}
	return `"` + strings.ReplaceAll(id, `"`, `""`) + `"`
}
