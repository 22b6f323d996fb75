package mapper

import (
	"bytes"
	"encoding/json"
	"math/big"
	"reflect"
	"regexp"
	"strconv"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgsignal/pgsignal/mapper/codec"
	"github.com/pgsignal/pgsignal/replication"
)

// fuzz2Rel is the relation FuzzRules maps.
var fuzz2Rel = replication.NewRelation(16400, "public", "events", []replication.Column{
	{Name: "kind", TypeOID: pgtype.TextOID},
	{Name: "user_id", TypeOID: pgtype.TextOID},
	{Name: "data", TypeOID: pgtype.JSONBOID},
	{Name: "plan", TypeOID: pgtype.TextOID},
	{Name: "price", TypeOID: pgtype.NumericOID},
	{Name: "at_ms", TypeOID: pgtype.Int8OID},
	{Name: "at_s", TypeOID: pgtype.NumericOID},
	{Name: "at_local", TypeOID: pgtype.TimestampOID},
})

// Column indexes of fuzz2Rel.
const (
	f2Data = 2 + iota
	f2Plan
	f2Price
	f2AtMs
	f2AtS
	f2AtLocal
)

// fuzz2Rules exercise the richer mappings: merged properties with exclude,
// epoch timestamps, a zone, properties_columns alone.
var fuzz2Rules = []Rule{
	{Schema: "public", Table: "events", NameColumn: "kind", ExternalID: "user_id", Timestamp: "at_ms", TimestampUnit: UnitMillis,
		Properties: []string{"data"}, PropertiesColumns: []string{"plan", "price"}, Exclude: []string{"secret", "plan"}},
	{Schema: "public", Table: "events", NameColumn: "kind", ExternalID: "user_id", Timestamp: "at_s", TimestampUnit: UnitSeconds,
		Properties: []string{"data"}, Exclude: []string{"secret"}},
	{Schema: "public", Table: "events", NameColumn: "kind", ExternalID: "user_id", Timestamp: "at_local", TimestampZone: "America/New_York",
		PropertiesColumns: []string{"plan", "at_ms"}},
}

// timestampText matches PostgreSQL's ISO output of a timestamp (years 1 to
// 9999 AD).
var timestampText = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?$`)

// numericText matches PostgreSQL's numeric output.
var numericText = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$|^NaN$|^-?Infinity$`)

func FuzzRules(f *testing.F) {
	// nulls: bit i set makes column i NULL.
	f.Add(uint8(0), "purchase", "u1", `{"sku": "A1", "secret": "s", "plan": "old"}`, "pro", "9.90", "1735787045678", "2025-01-02 03:04:05.678")
	f.Add(uint8(1<<f2Data), "signup", "u2", "", "free", "0", "-1", "2025-07-01 12:00:00")
	f.Add(uint8(1<<f2AtMs|1<<f2AtS|1<<f2AtLocal), "x", "u", `{}`, "", "NaN", "", "")
	f.Add(uint8(0), "x", "u", `{"a": 1, "a": 2, "secret": {"b": [1, 2]}}`, "p", "1e3", "1735787045.6789", "bad")
	f.Add(uint8(0), "x", "u", `[1]`, "p", "1", "253402300800", "2025-03-09 02:30:00")
	f.Add(uint8(0), "x", "u", `{"k\u00e9\n": "\u2028"}`, "ü\xff", "-0.5", "-62135596800", "0001-01-01 00:00:00")

	mappers := make([]*Mapper, len(fuzz2Rules))
	for i, r := range fuzz2Rules {
		m, err := New([]Rule{r})
		if err != nil {
			f.Fatal(err)
		}
		mappers[i] = m
	}
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, nulls uint8, kind, user, data, plan, price, epoch, local string) {
		texts := []string{kind, user, data, plan, price, epoch, epoch, local}
		vals := make([][]byte, len(texts))
		for i, s := range texts {
			if nulls&(1<<i) == 0 {
				vals[i] = []byte(s)
			}
		}
		// Keep the values PostgreSQL could send for the column types.
		if vals[f2Data] != nil && !json.Valid(vals[f2Data]) {
			vals[f2Data] = nil
		}
		if vals[f2Price] != nil && !numericText.Match(vals[f2Price]) {
			vals[f2Price] = nil
		}
		if _, err := strconv.ParseInt(epoch, 10, 64); err != nil {
			vals[f2AtMs] = nil
		}
		if vals[f2AtS] != nil && !numericText.Match(vals[f2AtS]) {
			vals[f2AtS] = nil
		}
		if vals[f2AtLocal] != nil && !timestampText.Match(vals[f2AtLocal]) {
			// Dead letters embed a timestamp's text as is (see AppendJSON).
			vals[f2AtLocal] = nil
		}
		for ri, rule := range fuzz2Rules {
			ch := &replication.Change{Rel: fuzz2Rel, Values: vals, CommitTime: rulesCommit}
			ev := mappers[ri].Map(ch)
			if ev == nil {
				t.Fatal("Map returned nil for the mapped table")
			}
			if ev.Reject != "" {
				if ev.JSON != nil || !json.Valid(ev.Row) || !utf8.ValidString(ev.Reject) {
					t.Fatalf("rule %d: rejected (%q) with JSON %s, row %s", ri, ev.Reject, ev.JSON, ev.Row)
				}
				continue
			}
			checkRulesEvent(t, ri, rule, vals, ev.JSON, ny)
		}
	})
}

// checkRulesEvent checks an accepted event against an independent reading
// of the row.
func checkRulesEvent(t *testing.T, ri int, rule Rule, vals [][]byte, raw []byte, ny *time.Location) {
	t.Helper()
	if !json.Valid(raw) || len(raw) > MaxEventBytes {
		t.Fatalf("rule %d: invalid or oversize event (%d bytes): %s", ri, len(raw), raw)
	}
	var ev struct {
		Timestamp  string                     `json:"timestamp"`
		Properties map[string]json.RawMessage `json:"properties"`
	}
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("rule %d: %v: %s", ri, err, raw)
	}
	// The timestamp.
	want := rulesCommit
	idx := fuzz2Rel.Index(rule.Timestamp)
	if v := vals[idx]; v != nil {
		switch rule.TimestampUnit {
		case UnitMillis:
			n, _ := strconv.ParseInt(string(v), 10, 64)
			want = time.UnixMilli(n)
		case UnitSeconds:
			r, ok := new(big.Rat).SetString(string(v))
			if !ok {
				t.Fatalf("rule %d: accepted epoch %q", ri, v)
			}
			r.Mul(r, big.NewRat(1000, 1))
			ms := new(big.Int).Quo(r.Num(), r.Denom()) // truncated toward zero
			want = time.UnixMilli(ms.Int64())
		default:
			tt, err := time.Parse("2006-01-02 15:04:05.999999999", string(v))
			if err != nil {
				t.Fatalf("rule %d: accepted timestamp %q: %v", ri, v, err)
			}
			want = pgLocal(tt, ny)
		}
	}
	if got := string(codec.AppendTimestampMillis(nil, want)); ev.Timestamp != got {
		t.Fatalf("rule %d: timestamp %s, want %s (row %q)", ri, ev.Timestamp, got, vals)
	}
	// The properties: the json object less exclude and the columns, then
	// the columns.
	wantProps := map[string]json.RawMessage{}
	hasProps := false
	if len(rule.Properties) == 1 && vals[f2Data] != nil {
		hasProps = true
		if err := json.Unmarshal(vals[f2Data], &wantProps); err != nil {
			t.Fatalf("rule %d: accepted non-object %s", ri, vals[f2Data])
		}
		for _, k := range rule.Exclude {
			delete(wantProps, k)
		}
	}
	for _, c := range rule.PropertiesColumns {
		hasProps = true
		i := fuzz2Rel.Index(c)
		wantProps[c] = codec.AppendJSON(nil, fuzz2Rel.Columns[i].TypeOID, vals[i])
	}
	if !hasProps {
		if ev.Properties != nil {
			t.Fatalf("rule %d: properties %s, want none", ri, raw)
		}
		return
	}
	if !sameProps(ev.Properties, wantProps) {
		t.Fatalf("rule %d: event %s\nwant properties %s", ri, raw, mustMarshal(t, wantProps))
	}
}

func sameProps(a, b map[string]json.RawMessage) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok {
			return false
		}
		var x, y any
		da, db := json.NewDecoder(bytes.NewReader(va)), json.NewDecoder(bytes.NewReader(vb))
		da.UseNumber()
		db.UseNumber()
		if da.Decode(&x) != nil || db.Decode(&y) != nil || !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}

func mustMarshal(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pgLocal reads the wall clock of wall in loc as PostgreSQL does, found
// without zone bounds: of the instants local-offset for the offsets in force
// a day before and a day after, the latest that shows that wall clock, or
// the latest of all when none does (a time skipped by spring forward).
func pgLocal(wall time.Time, loc *time.Location) time.Time {
	local := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), wall.Nanosecond(), time.UTC)
	var valid, latest time.Time
	var found bool
	for i, d := range []time.Duration{-24 * time.Hour, 24 * time.Hour} {
		_, off := local.Add(d).In(loc).Zone()
		c := local.Add(-time.Duration(off) * time.Second)
		if i == 0 || c.After(latest) {
			latest = c
		}
		y, mo, dd := c.In(loc).Date()
		h, mi, sec := c.In(loc).Clock()
		if time.Date(y, mo, dd, h, mi, sec, c.Nanosecond(), time.UTC).Equal(local) && (!found || c.After(valid)) {
			valid, found = c, true
		}
	}
	if found {
		return valid
	}
	return latest
}
