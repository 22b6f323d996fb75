package mapper

import (
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/replication"
)

// The tests of this file build their own rows, so that they do not depend on
// the helpers of mapper_test.go.

var rulesCommit = time.Date(2025, 10, 21, 19, 9, 32, 263_000_000, time.UTC)

// rulesRel is public.events with columns kind (text), user_id (text) and
// cols.
func rulesRel(cols ...replication.Column) *replication.Relation {
	all := append([]replication.Column{{Name: "kind", TypeOID: pgtype.TextOID}, {Name: "user_id", TypeOID: pgtype.TextOID}}, cols...)
	return replication.NewRelation(16390, "public", "events", all)
}

// rulesMap maps one row of rel (kind "buy", user_id "u1", then vals; "\x00"
// stands for NULL) with rule r.
func rulesMap(t *testing.T, r Rule, rel *replication.Relation, vals ...string) *cdc.Event {
	t.Helper()
	r.Schema, r.Table, r.NameColumn, r.ExternalID = "public", "events", "kind", "user_id"
	m, err := New([]Rule{r})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	row := [][]byte{[]byte("buy"), []byte("u1")}
	for _, s := range vals {
		if s == "\x00" {
			row = append(row, nil)
			continue
		}
		row = append(row, []byte(s))
	}
	return m.Map(&replication.Change{Rel: rel, Values: row, CommitTime: rulesCommit})
}

const rulesHead = `{"name":"buy","external_id":"u1",`

func TestRulesTimestamp(t *testing.T) {
	c := func(oid uint32) *replication.Relation { return rulesRel(replication.Column{Name: "at", TypeOID: oid}) }
	tests := []struct {
		name string
		rule Rule
		rel  *replication.Relation
		val  string
		want string
	}{
		{"timestamp in UTC by default", Rule{Timestamp: "at"}, c(pgtype.TimestampOID), "2025-01-02 03:04:05.678",
			`"timestamp":"2025-01-02T03:04:05.678Z"`},
		{"timestamp in a zone", Rule{Timestamp: "at", TimestampZone: "America/New_York"}, c(pgtype.TimestampOID), "2025-01-02 03:04:05.678",
			`"timestamp":"2025-01-02T08:04:05.678Z"`},
		{"timestamp in a zone in summer", Rule{Timestamp: "at", TimestampZone: "Europe/Paris"}, c(pgtype.TimestampOID), "2025-07-01 12:00:00",
			`"timestamp":"2025-07-01T10:00:00.000Z"`},
		{"date in a zone", Rule{Timestamp: "at", TimestampZone: "Asia/Tokyo"}, c(pgtype.DateOID), "2025-01-02",
			`"timestamp":"2025-01-01T15:00:00.000Z"`},
		{"timestamptz ignores the zone", Rule{Timestamp: "at", TimestampZone: "Asia/Tokyo"}, c(pgtype.TimestamptzOID), "2025-01-02 03:04:05+00",
			`"timestamp":"2025-01-02T03:04:05.000Z"`},
		{"epoch seconds int8", Rule{Timestamp: "at", TimestampUnit: UnitSeconds}, c(pgtype.Int8OID), "1735787045",
			`"timestamp":"2025-01-02T03:04:05.000Z"`},
		{"epoch seconds int4", Rule{Timestamp: "at", TimestampUnit: UnitSeconds}, c(pgtype.Int4OID), "0",
			`"timestamp":"1970-01-01T00:00:00.000Z"`},
		{"epoch seconds numeric with a fraction", Rule{Timestamp: "at", TimestampUnit: UnitSeconds}, c(pgtype.NumericOID), "1735787045.6789",
			`"timestamp":"2025-01-02T03:04:05.678Z"`},
		{"epoch seconds negative", Rule{Timestamp: "at", TimestampUnit: UnitSeconds}, c(pgtype.NumericOID), "-1.5",
			`"timestamp":"1969-12-31T23:59:58.500Z"`},
		{"epoch milliseconds int8", Rule{Timestamp: "at", TimestampUnit: UnitMillis}, c(pgtype.Int8OID), "1735787045678",
			`"timestamp":"2025-01-02T03:04:05.678Z"`},
		{"epoch milliseconds numeric drops sub-milliseconds", Rule{Timestamp: "at", TimestampUnit: UnitMillis}, c(pgtype.NumericOID), "1735787045678.9",
			`"timestamp":"2025-01-02T03:04:05.678Z"`},
		{"epoch NULL is the commit time", Rule{Timestamp: "at", TimestampUnit: UnitMillis}, c(pgtype.Int8OID), "\x00",
			`"timestamp":"2025-10-21T19:09:32.263Z"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := rulesMap(t, tt.rule, tt.rel, tt.val)
			if ev.Reject != "" {
				t.Fatalf("rejected: %s", ev.Reject)
			}
			if want := rulesHead + tt.want + "}"; string(ev.JSON) != want {
				t.Errorf("JSON =\n  %s\nwant\n  %s", ev.JSON, want)
			}
		})
	}
}

func TestRulesTimestampReject(t *testing.T) {
	c := func(oid uint32) *replication.Relation { return rulesRel(replication.Column{Name: "at", TypeOID: oid}) }
	ms := Rule{Timestamp: "at", TimestampUnit: UnitMillis}
	s := Rule{Timestamp: "at", TimestampUnit: UnitSeconds}
	tests := []struct {
		name string
		rule Rule
		rel  *replication.Relation
		val  string
		want string
	}{
		{"unit on a timestamptz column", ms, c(pgtype.TimestamptzOID), "2025-01-02 03:04:05+00",
			`timestamp column "at" of public.events is not an integer or numeric column, which timestamp_unit "ms" needs`},
		{"unit on a text column", s, c(pgtype.TextOID), "1",
			`timestamp column "at" of public.events is not an integer or numeric column, which timestamp_unit "s" needs`},
		{"numeric NaN", s, c(pgtype.NumericOID), "NaN", `timestamp column "at": cannot read "NaN" as epoch seconds`},
		{"numeric Infinity", ms, c(pgtype.NumericOID), "Infinity", `timestamp column "at": cannot read "Infinity" as epoch milliseconds`},
		{"beyond the year 9999", s, c(pgtype.Int8OID), "253402300800", `timestamp column "at": epoch seconds 253402300800 is outside the years 1 to 9999`},
		{"huge milliseconds", ms, c(pgtype.NumericOID), "99999999999999999999999999", `timestamp column "at": epoch milliseconds 99999999999999999999999999 is outside the years 1 to 9999`},
		{"before the year 1", s, c(pgtype.Int8OID), "-62135596801", `timestamp column "at": epoch seconds -62135596801 is outside the years 1 to 9999`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := rulesMap(t, tt.rule, tt.rel, tt.val)
			if ev.Reject != tt.want {
				t.Errorf("Reject =\n  %s\nwant\n  %s", ev.Reject, tt.want)
			}
			if ev.JSON != nil || ev.Row == nil {
				t.Errorf("a rejected event has JSON %s and row %s; want none and the row", ev.JSON, ev.Row)
			}
		})
	}
}

func TestRulesProperties(t *testing.T) {
	jsonb := func(extra ...replication.Column) *replication.Relation {
		return rulesRel(append([]replication.Column{{Name: "data", TypeOID: pgtype.JSONBOID}}, extra...)...)
	}
	jsonCol := rulesRel(replication.Column{Name: "data", TypeOID: pgtype.JSONOID}, replication.Column{Name: "plan", TypeOID: pgtype.TextOID})
	planPrice := []replication.Column{{Name: "plan", TypeOID: pgtype.TextOID}, {Name: "price", TypeOID: pgtype.NumericOID}}
	tests := []struct {
		name string
		rule Rule
		rel  *replication.Relation
		vals []string
		want string
	}{
		{"columns merged after the json keys", Rule{Properties: []string{"data"}, PropertiesColumns: []string{"plan", "price"}},
			jsonb(planPrice...), []string{`{"a": 1, "b": [true, null]}`, "pro", "9.90"},
			`"properties":{"a":1,"b":[true,null],"plan":"pro","price":9.90}`},
		{"a column wins over the json key", Rule{Properties: []string{"data"}, PropertiesColumns: []string{"plan"}},
			jsonb(planPrice...), []string{`{"plan": "free", "z": "x"}`, "pro", "1"},
			`"properties":{"z":"x","plan":"pro"}`},
		{"a NULL column is a JSON null", Rule{Properties: []string{"data"}, PropertiesColumns: []string{"plan"}},
			jsonb(planPrice...), []string{`{"a": 1}`, "\x00", "1"},
			`"properties":{"a":1,"plan":null}`},
		{"NULL json keeps the columns", Rule{Properties: []string{"data"}, PropertiesColumns: []string{"plan", "price"}},
			jsonb(planPrice...), []string{"\x00", "pro", "5"},
			`"properties":{"plan":"pro","price":5}`},
		{"exclude drops keys", Rule{Properties: []string{"data"}, Exclude: []string{"secret", "absent"}},
			jsonb(), []string{`{"secret": "s3", "keep": {"secret": 1}}`},
			`"properties":{"keep":{"secret":1}}`},
		{"exclude every key", Rule{Properties: []string{"data"}, Exclude: []string{"secret"}},
			jsonb(), []string{`{"secret": "s3"}`},
			`"properties":{}`},
		{"exclude and columns", Rule{Properties: []string{"data"}, Exclude: []string{"internal"}, PropertiesColumns: []string{"price"}},
			jsonb(planPrice...), []string{`{"internal": 1, "price": "old", "x": "a\"b"}`, "pro", "2.5"},
			`"properties":{"x":"a\"b","price":2.5}`},
		{"escaped keys stay escaped", Rule{Properties: []string{"data"}, Exclude: []string{"a\"b"}},
			jsonb(), []string{`{"a\"b": 1, "c\u00e9\n": 2}`},
			`"properties":{"cé\n":2}`},
		{"json duplicate keys keep the last value", Rule{Properties: []string{"data"}, PropertiesColumns: []string{"plan"}},
			jsonCol, []string{`{ "a" : 1, "b": 2, "a": 3 }`, "pro"},
			`"properties":{"a":3,"b":2,"plan":"pro"}`},
		{"NULL json, exclude only: no properties", Rule{Properties: []string{"data"}, Exclude: []string{"x"}},
			jsonb(), []string{"\x00"}, ``},
		{"properties_columns alone", Rule{PropertiesColumns: []string{"price", "plan"}},
			rulesRel(planPrice...), []string{"pro", "3"},
			`"properties":{"price":3,"plan":"pro"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := rulesMap(t, tt.rule, tt.rel, tt.vals...)
			if ev.Reject != "" {
				t.Fatalf("rejected: %s", ev.Reject)
			}
			want := rulesHead + `"timestamp":"2025-10-21T19:09:32.263Z"`
			if tt.want != "" {
				want += "," + tt.want
			}
			want += "}"
			if string(ev.JSON) != want {
				t.Errorf("JSON =\n  %s\nwant\n  %s", ev.JSON, want)
			}
		})
	}
}

func TestRulesPropertiesReject(t *testing.T) {
	rel := rulesRel(replication.Column{Name: "data", TypeOID: pgtype.JSONBOID}, replication.Column{Name: "plan", TypeOID: pgtype.TextOID})
	merge := Rule{Properties: []string{"data"}, PropertiesColumns: []string{"plan"}}
	tests := []struct {
		name string
		rule Rule
		rel  *replication.Relation
		vals []string
		want string
	}{
		{"json array", merge, rel, []string{`[1]`, "p"}, `properties column "data" holds an array, not a JSON object`},
		{"invalid json text", merge, rulesRel(replication.Column{Name: "data", TypeOID: pgtype.JSONOID}, replication.Column{Name: "plan", TypeOID: pgtype.TextOID}),
			[]string{`{"a": }`, "p"}, `properties column "data" holds invalid JSON: invalid character '}' looking for beginning of value`},
		{"missing column", Rule{Properties: []string{"data"}, PropertiesColumns: []string{"nope"}}, rel, []string{`{}`, "p"},
			`mapped column(s) ["nope"] not found in public.events`},
		{"text properties column with exclude", Rule{Properties: []string{"plan"}, Exclude: []string{"x"}}, rel, []string{`{}`, "p"},
			"properties column \"plan\" of public.events is not json or jsonb; write `properties: [plan]` to send it as one property"},
		{"merged event over the limit", merge, rel, []string{`{"a": 1}`, strings.Repeat("x", 2000)},
			`event is 2103 bytes; OneSignal accepts at most 2024 bytes per event`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev := rulesMap(t, tt.rule, tt.rel, tt.vals...)
			if ev.Reject != tt.want {
				t.Errorf("Reject =\n  %s\nwant\n  %s", ev.Reject, tt.want)
			}
		})
	}
}

func TestRulesNew(t *testing.T) {
	tests := []struct {
		name string
		rule Rule
		want string
	}{
		{"bad unit", Rule{Timestamp: "at", TimestampUnit: "us"}, `table public.events: timestamp_unit "us" is not "s" or "ms"`},
		{"bad zone", Rule{Timestamp: "at", TimestampZone: "Mars/Olympus"}, `table public.events: timestamp_zone: unknown time zone Mars/Olympus`},
		{"exclude without json", Rule{Properties: []string{"a", "b"}, PropertiesList: true, Exclude: []string{"x"}},
			`table public.events: exclude needs properties to be one json/jsonb column`},
		{"columns with a list", Rule{Properties: []string{"a"}, PropertiesList: true, PropertiesColumns: []string{"x"}},
			`table public.events: properties_columns needs properties to be one json/jsonb column, or no properties`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.rule
			r.Schema, r.Table, r.NameColumn, r.ExternalID = "public", "events", "kind", "user_id"
			_, err := New([]Rule{r})
			if err == nil || err.Error() != tt.want {
				t.Errorf("New = %v, want %s", err, tt.want)
			}
		})
	}
}

func TestRulesMapUpdate(t *testing.T) {
	rel := rulesRel()
	ch := &replication.Change{Rel: rel, Values: [][]byte{[]byte("buy"), []byte("u1")}, CommitTime: rulesCommit}
	base := Rule{Schema: "public", Table: "events", NameColumn: "kind", ExternalID: "user_id"}
	m, err := New([]Rule{base})
	if err != nil {
		t.Fatal(err)
	}
	if ev := m.MapUpdate(ch); ev != nil {
		t.Errorf("MapUpdate without Updates = %s, want nil", ev.JSON)
	}
	base.Updates = true
	if m, err = New([]Rule{base}); err != nil {
		t.Fatal(err)
	}
	ev := m.MapUpdate(ch)
	if want := rulesHead + `"timestamp":"2025-10-21T19:09:32.263Z"}`; ev == nil || string(ev.JSON) != want {
		t.Errorf("MapUpdate with Updates = %+v, want %s", ev, want)
	}
	other := replication.NewRelation(1, "public", "other", rel.Columns)
	if ev := m.MapUpdate(&replication.Change{Rel: other, Values: ch.Values}); ev != nil {
		t.Errorf("MapUpdate of an unmapped table = %s, want nil", ev.JSON)
	}
}
