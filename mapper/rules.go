package mapper

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/mapper/codec"
	"github.com/pgsignal/pgsignal/replication"
)

// checkRule checks the options that New can check without a relation.
func checkRule(r *Rule) error {
	switch r.TimestampUnit {
	case "", UnitSeconds, UnitMillis:
	default:
		return fmt.Errorf("timestamp_unit %q is not %q or %q", r.TimestampUnit, UnitSeconds, UnitMillis)
	}
	if r.TimestampZone != "" {
		if _, err := time.LoadLocation(r.TimestampZone); err != nil {
			return fmt.Errorf("timestamp_zone: %w", err)
		}
	}
	if len(r.Exclude) > 0 && (len(r.Properties) != 1 || r.PropertiesList) {
		return errors.New("exclude needs properties to be one json/jsonb column")
	}
	if len(r.PropertiesColumns) > 0 && r.PropertiesList {
		return errors.New("properties_columns needs properties to be one json/jsonb column, or no properties")
	}
	return nil
}

// MapUpdate maps the new row of an update, like Map maps an inserted row,
// when the table's rule has Updates set; otherwise, or for a table without
// a rule, it returns nil (nothing to deliver). ch.Values are the new
// tuple's values.
func (m *Mapper) MapUpdate(ch *replication.Change) *cdc.Event {
	p := m.plan(ch.Rel)
	if p == nil || !p.rule.Updates {
		return nil
	}
	return m.Map(ch)
}

// compileMerge prepares the merge of PropertiesColumns into the json object
// of the one Properties column, and the keys Exclude drops from it.
func (p *plan) compileMerge(col func(string) int) {
	r := p.rule
	if len(r.PropertiesColumns) == 0 && len(r.Exclude) == 0 {
		return
	}
	p.merge = true
	p.drop = make(map[string]bool, len(r.Exclude)+len(r.PropertiesColumns))
	for _, k := range r.Exclude {
		p.drop[k] = true
	}
	for _, c := range r.PropertiesColumns {
		p.extra = append(p.extra, col(c))
		p.extraKeys = append(p.extraKeys, append(codec.AppendString(nil, c), ':'))
		p.drop[c] = true // the column wins over the json key
	}
}

// appendMerged appends the properties object of a json column less the
// excluded keys, plus the extra columns. A key repeated in a json value
// keeps its last value, at its first place (as jsonb does).
func appendMerged(b []byte, p *plan, ch *replication.Change) ([]byte, string) {
	name := p.rule.Properties[0]
	type pair struct {
		key string
		val []byte
	}
	var pairs []pair
	if v := ch.Values[p.props[0]]; v != nil {
		v = bytes.TrimSpace(v)
		if len(v) == 0 || v[0] != '{' {
			return b, fmt.Sprintf("properties column %q holds %s, not a JSON object", name, jsonKind(v))
		}
		dec := json.NewDecoder(bytes.NewReader(v))
		if _, err := dec.Token(); err != nil {
			return b, fmt.Sprintf("properties column %q holds invalid JSON: %v", name, err)
		}
		at := map[string]int{}
		for dec.More() {
			t, err := dec.Token()
			if err != nil {
				return b, fmt.Sprintf("properties column %q holds invalid JSON: %v", name, err)
			}
			key, _ := t.(string) // object keys are strings
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return b, fmt.Sprintf("properties column %q holds invalid JSON: %v", name, err)
			}
			if p.drop[key] {
				continue
			}
			if i, dup := at[key]; dup {
				pairs[i].val = raw
				continue
			}
			at[key] = len(pairs)
			pairs = append(pairs, pair{key, raw})
		}
		if _, err := dec.Token(); err != nil {
			return b, fmt.Sprintf("properties column %q holds invalid JSON: %v", name, err)
		}
		if _, err := dec.Token(); err != io.EOF {
			return b, fmt.Sprintf("properties column %q holds invalid JSON: data after the object", name)
		}
	} else if len(p.extra) == 0 {
		return b, "" // NULL properties and no columns: none
	}
	b = append(b, `,"properties":{`...)
	n := 0
	for _, kv := range pairs {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = codec.AppendString(b, kv.key)
		b = append(b, ':')
		b = appendCompact(b, kv.val)
	}
	for i, idx := range p.extra {
		if n > 0 {
			b = append(b, ',')
		}
		n++
		b = append(b, p.extraKeys[i]...)
		b = codec.AppendJSON(b, p.rel.Columns[idx].TypeOID, ch.Values[idx])
	}
	return append(b, '}'), ""
}

// appendCompact appends the JSON value v without insignificant white space.
func appendCompact(b, v []byte) []byte {
	var out bytes.Buffer
	if err := json.Compact(&out, v); err != nil {
		return append(b, v...) // the decoder accepted it: cannot happen
	}
	return append(b, out.Bytes()...)
}

// IsEpochType reports whether a column of type oid can hold epoch time for
// timestamp_unit: an integer or numeric.
func IsEpochType(oid uint32) bool {
	switch oid {
	case pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.NumericOID:
		return true
	}
	return false
}

// Bounds of an epoch timestamp: the years 1 to 9999, in milliseconds.
var (
	minEpochMillis = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	maxEpochMillis = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC).UnixMilli()
)

// parseEpoch reads an integer or numeric column's text as epoch seconds or
// milliseconds (unit). Digits below the millisecond are dropped (truncated
// toward zero).
func parseEpoch(text []byte, unit string) (time.Time, error) {
	s := text
	neg := false
	if len(s) > 0 && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	whole, frac, _ := bytes.Cut(s, []byte{'.'})
	if len(whole) == 0 && len(frac) == 0 || !digits(whole) || !digits(frac) {
		return time.Time{}, fmt.Errorf("cannot read %q as epoch %s", text, unitName(unit))
	}
	var n int64
	for _, c := range whole {
		if n > maxEpochMillis {
			break // out of range whatever the unit; checked below
		}
		n = n*10 + int64(c-'0')
	}
	ms := n
	if unit == UnitSeconds {
		if n <= maxEpochMillis/1000+1 {
			ms = n * 1000
		} else {
			ms = maxEpochMillis + 1
		}
		f := int64(0)
		for i := range 3 {
			f *= 10
			if i < len(frac) {
				f += int64(frac[i] - '0')
			}
		}
		ms += f
	}
	if neg {
		ms = -ms
	}
	if ms < minEpochMillis || ms > maxEpochMillis {
		return time.Time{}, fmt.Errorf("epoch %s %s is outside the years 1 to 9999", unitName(unit), text)
	}
	return time.UnixMilli(ms).UTC(), nil
}

// digits reports whether b holds only ASCII digits.
func digits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func unitName(unit string) string {
	if unit == UnitMillis {
		return "milliseconds"
	}
	return "seconds"
}
