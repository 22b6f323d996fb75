package mapper

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/replication"
)

var (
	commitTime = time.Date(2025, 10, 21, 19, 9, 32, 263_000_000, time.UTC)
	testPos    = cdc.Position{CommitLSN: 0x16B374D848, Ordinal: 3}
)

const (
	testKey       = "123e4567-e89b-12d3-a456-426614174000"
	commitStamp   = `"timestamp":"2025-10-21T19:09:32.263Z"`
	keyField      = `"idempotency_key":"` + testKey + `"`
	eventsTableID = 16384
)

// col is a column of the test relation.
func col(name string, oid uint32) replication.Column {
	return replication.Column{Name: name, TypeOID: oid}
}

// eventsRel is public.events with the given columns.
func eventsRel(cols ...replication.Column) *replication.Relation {
	return replication.NewRelation(eventsTableID, "public", "events", cols)
}

// v is a non-NULL column value.
func v(s string) []byte { return []byte(s) }

// change is an insert into rel with the given values (nil for NULL).
func change(rel *replication.Relation, vals ...[]byte) *replication.Change {
	return &replication.Change{Rel: rel, Values: vals, Pos: testPos, CommitTime: commitTime, IdempotencyKey: testKey}
}

func mustNew(t testing.TB, rules ...Rule) *Mapper {
	t.Helper()
	m, err := New(rules)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

// baseRule maps public.events: name from kind, external_id from user_id.
func baseRule() Rule {
	return Rule{Schema: "public", Table: "events", NameColumn: "kind", ExternalID: "user_id"}
}

func TestMapEvent(t *testing.T) {
	withRule := func(f func(*Rule)) Rule {
		r := baseRule()
		f(&r)
		return r
	}
	kindUser := eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID))
	tests := []struct {
		name     string
		rule     Rule
		rel      *replication.Relation
		vals     [][]byte
		key      string
		want     string
		wantName string
		wantExt  string
	}{
		{
			name: "name column", rule: baseRule(), rel: kindUser,
			vals: [][]byte{v("purchase"), v("user_1")}, key: testKey,
			want:     `{"name":"purchase","external_id":"user_1",` + commitStamp + `,` + keyField + `}`,
			wantName: "purchase", wantExt: "user_1",
		},
		{
			name: "name value", rule: Rule{Schema: "public", Table: "events", NameValue: "signup", ExternalID: "user_id"}, rel: kindUser,
			vals: [][]byte{v("ignored"), v("u")}, key: testKey,
			want:     `{"name":"signup","external_id":"u",` + commitStamp + `,` + keyField + `}`,
			wantName: "signup", wantExt: "u",
		},
		{
			name: "prefix and name column", rule: withRule(func(r *Rule) { r.NamePrefix = "shop." }), rel: kindUser,
			vals: [][]byte{v("purchase"), v("u")}, key: testKey,
			want:     `{"name":"shop.purchase","external_id":"u",` + commitStamp + `,` + keyField + `}`,
			wantName: "shop.purchase", wantExt: "u",
		},
		{
			name: "prefix and name value", rule: Rule{Schema: "public", Table: "events", NameValue: "signup", NamePrefix: "app_", ExternalID: "user_id"}, rel: kindUser,
			vals: [][]byte{nil, v("u")}, key: testKey,
			want:     `{"name":"app_signup","external_id":"u",` + commitStamp + `,` + keyField + `}`,
			wantName: "app_signup", wantExt: "u",
		},
		{
			name: "no idempotency key", rule: baseRule(), rel: kindUser,
			vals: [][]byte{v("purchase"), v("u")}, key: "",
			want:     `{"name":"purchase","external_id":"u",` + commitStamp + `}`,
			wantName: "purchase", wantExt: "u",
		},
		{
			name: "escaped name and external_id", rule: baseRule(), rel: kindUser,
			vals: [][]byte{v("say \"hi\"\n"), v(`a\b<c>`)}, key: testKey,
			want:     `{"name":"say \"hi\"\n","external_id":"a\\b<c>",` + commitStamp + `,` + keyField + `}`,
			wantName: "say \"hi\"\n", wantExt: `a\b<c>`,
		},
		{
			name: "integer external_id", rule: baseRule(),
			rel:  eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.Int8OID)),
			vals: [][]byte{v("purchase"), v("12345")}, key: testKey,
			want:     `{"name":"purchase","external_id":"12345",` + commitStamp + `,` + keyField + `}`,
			wantName: "purchase", wantExt: "12345",
		},
		{
			name: "name of exactly 128 characters (256 bytes)", rule: baseRule(), rel: kindUser,
			vals: [][]byte{v(strings.Repeat("é", 128)), v("u")}, key: testKey,
			want:     `{"name":"` + strings.Repeat("é", 128) + `","external_id":"u",` + commitStamp + `,` + keyField + `}`,
			wantName: strings.Repeat("é", 128), wantExt: "u",
		},
		{
			name: "prefix plus name of exactly 128 characters", rule: withRule(func(r *Rule) { r.NamePrefix = "ab" }), rel: kindUser,
			vals: [][]byte{v(strings.Repeat("x", 126)), v("u")}, key: testKey,
			want:     `{"name":"ab` + strings.Repeat("x", 126) + `","external_id":"u",` + commitStamp + `,` + keyField + `}`,
			wantName: "ab" + strings.Repeat("x", 126), wantExt: "u",
		},
		{
			name: "timestamptz column", rule: withRule(func(r *Rule) { r.Timestamp = "at" }),
			rel:  eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("at", pgtype.TimestamptzOID)),
			vals: [][]byte{v("p"), v("u"), v("2024-01-02 08:34:05.5+05:30")}, key: testKey,
			want:     `{"name":"p","external_id":"u","timestamp":"2024-01-02T03:04:05.500Z",` + keyField + `}`,
			wantName: "p", wantExt: "u",
		},
		{
			name: "timestamp column is read as UTC and cut to milliseconds", rule: withRule(func(r *Rule) { r.Timestamp = "at" }),
			rel:  eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("at", pgtype.TimestampOID)),
			vals: [][]byte{v("p"), v("u"), v("2024-01-02 03:04:05.123999")}, key: testKey,
			want:     `{"name":"p","external_id":"u","timestamp":"2024-01-02T03:04:05.123Z",` + keyField + `}`,
			wantName: "p", wantExt: "u",
		},
		{
			name: "date column", rule: withRule(func(r *Rule) { r.Timestamp = "at" }),
			rel:  eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("at", pgtype.DateOID)),
			vals: [][]byte{v("p"), v("u"), v("2024-02-29")}, key: testKey,
			want:     `{"name":"p","external_id":"u","timestamp":"2024-02-29T00:00:00.000Z",` + keyField + `}`,
			wantName: "p", wantExt: "u",
		},
		{
			name: "NULL timestamp is the commit time", rule: withRule(func(r *Rule) { r.Timestamp = "at" }),
			rel:  eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("at", pgtype.TimestamptzOID)),
			vals: [][]byte{v("p"), v("u"), nil}, key: testKey,
			want:     `{"name":"p","external_id":"u",` + commitStamp + `,` + keyField + `}`,
			wantName: "p", wantExt: "u",
		},
		{
			name: "jsonb properties are embedded as they are", rule: withRule(func(r *Rule) { r.Properties = []string{"props"} }),
			rel:  eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("props", pgtype.JSONBOID)),
			vals: [][]byte{v("p"), v("u"), v(`{"a": 1, "b": [1, 2], "c": {"d": null}}`)}, key: testKey,
			want:     `{"name":"p","external_id":"u",` + commitStamp + `,` + keyField + `,"properties":{"a": 1, "b": [1, 2], "c": {"d": null}}}`,
			wantName: "p", wantExt: "u",
		},
		{
			name: "json properties are compacted", rule: withRule(func(r *Rule) { r.Properties = []string{"props"} }),
			rel:  eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("props", pgtype.JSONOID)),
			vals: [][]byte{v("p"), v("u"), v("\n  { \"a\" : 1,\n\t\"b\" : [ 1 , \"x y\" ] }  \n")}, key: testKey,
			want:     `{"name":"p","external_id":"u",` + commitStamp + `,` + keyField + `,"properties":{"a":1,"b":[1,"x y"]}}`,
			wantName: "p", wantExt: "u",
		},
		{
			name: "jsonb properties with surrounding white space", rule: withRule(func(r *Rule) { r.Properties = []string{"props"} }),
			rel:  eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("props", pgtype.JSONBOID)),
			vals: [][]byte{v("p"), v("u"), v(" {} ")}, key: testKey,
			want:     `{"name":"p","external_id":"u",` + commitStamp + `,` + keyField + `,"properties":{}}`,
			wantName: "p", wantExt: "u",
		},
		{
			name: "NULL json properties are left out", rule: withRule(func(r *Rule) { r.Properties = []string{"props"} }),
			rel:  eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("props", pgtype.JSONBOID)),
			vals: [][]byte{v("p"), v("u"), nil}, key: testKey,
			want:     `{"name":"p","external_id":"u",` + commitStamp + `,` + keyField + `}`,
			wantName: "p", wantExt: "u",
		},
		{
			name: "property list of typed columns",
			rule: withRule(func(r *Rule) {
				r.Properties = []string{"amount", "tags", "paid", "note", "at", "n"}
				r.PropertiesList = true
			}),
			rel: eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("amount", pgtype.NumericOID),
				col("tags", pgtype.TextArrayOID), col("paid", pgtype.BoolOID), col("note", pgtype.TextOID),
				col("at", pgtype.TimestamptzOID), col("n", pgtype.Int4OID)),
			vals: [][]byte{v("p"), v("u"), v("24.990"), v(`{a,"b c",NULL}`), v("t"), nil, v("2024-01-02 03:04:05.25+00"), v("-7")}, key: testKey,
			want: `{"name":"p","external_id":"u",` + commitStamp + `,` + keyField +
				`,"properties":{"amount":24.990,"tags":["a","b c",null],"paid":true,"note":null,"at":"2024-01-02T03:04:05.25Z","n":-7}}`,
			wantName: "p", wantExt: "u",
		},
		{
			name: "property list order follows the rule, not the table",
			rule: withRule(func(r *Rule) { r.Properties = []string{"b", "a"}; r.PropertiesList = true }),
			rel:  eventsRel(col("a", pgtype.Int4OID), col("kind", pgtype.TextOID), col("b", pgtype.Int4OID), col("user_id", pgtype.TextOID)),
			vals: [][]byte{v("1"), v("p"), v("2"), v("u")}, key: testKey,
			want:     `{"name":"p","external_id":"u",` + commitStamp + `,` + keyField + `,"properties":{"b":2,"a":1}}`,
			wantName: "p", wantExt: "u",
		},
		{
			name: "property list of one json column nests it",
			rule: withRule(func(r *Rule) { r.Properties = []string{"props"}; r.PropertiesList = true }),
			rel:  eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("props", pgtype.JSONBOID)),
			vals: [][]byte{v("p"), v("u"), v(`[1, 2]`)}, key: testKey,
			want:     `{"name":"p","external_id":"u",` + commitStamp + `,` + keyField + `,"properties":{"props":[1, 2]}}`,
			wantName: "p", wantExt: "u",
		},
		{
			name: "property list of one text column",
			rule: withRule(func(r *Rule) { r.Properties = []string{"note"}; r.PropertiesList = true }),
			rel:  eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("note", pgtype.TextOID)),
			vals: [][]byte{v("p"), v("u"), v("hi")}, key: testKey,
			want:     `{"name":"p","external_id":"u",` + commitStamp + `,` + keyField + `,"properties":{"note":"hi"}}`,
			wantName: "p", wantExt: "u",
		},
		{
			name: "property names are escaped",
			rule: withRule(func(r *Rule) { r.Properties = []string{`we"ird`, "new\nline"}; r.PropertiesList = true }),
			rel:  eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col(`we"ird`, pgtype.Int4OID), col("new\nline", pgtype.Int4OID)),
			vals: [][]byte{v("p"), v("u"), v("1"), v("2")}, key: testKey,
			want:     `{"name":"p","external_id":"u",` + commitStamp + `,` + keyField + `,"properties":{"we\"ird":1,"new\nline":2}}`,
			wantName: "p", wantExt: "u",
		},
		{
			name: "same column for name and external_id",
			rule: Rule{Schema: "public", Table: "events", NameColumn: "kind", ExternalID: "kind"},
			rel:  kindUser, vals: [][]byte{v("x"), v("u")}, key: testKey,
			want:     `{"name":"x","external_id":"x",` + commitStamp + `,` + keyField + `}`,
			wantName: "x", wantExt: "x",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustNew(t, tt.rule)
			ch := change(tt.rel, tt.vals...)
			ch.IdempotencyKey = tt.key
			ev := m.Map(ch)
			if ev == nil {
				t.Fatal("Map returned nil for a mapped table")
			}
			if ev.Reject != "" {
				t.Fatalf("rejected: %s", ev.Reject)
			}
			if string(ev.JSON) != tt.want {
				t.Errorf("JSON =\n  %s\nwant\n  %s", ev.JSON, tt.want)
			}
			if !json.Valid(ev.JSON) {
				t.Errorf("JSON is not valid: %s", ev.JSON)
			}
			if ev.Name != tt.wantName || ev.ExternalID != tt.wantExt {
				t.Errorf("Name, ExternalID = %q, %q; want %q, %q", ev.Name, ev.ExternalID, tt.wantName, tt.wantExt)
			}
			if ev.Pos != testPos || ev.Table != "public.events" || ev.IdempotencyKey != tt.key || !ev.CommitTime.Equal(commitTime) {
				t.Errorf("Pos, Table, IdempotencyKey, CommitTime = %v, %q, %q, %v", ev.Pos, ev.Table, ev.IdempotencyKey, ev.CommitTime)
			}
			if ev.Row != nil || ev.Seq != 0 {
				t.Errorf("Row = %s, Seq = %d; want nil, 0 (the stream assigns Seq)", ev.Row, ev.Seq)
			}
		})
	}
}

func TestMapReject(t *testing.T) {
	r := baseRule()
	withTS := r
	withTS.Timestamp = "at"
	withProps := r
	withProps.Properties = []string{"props"}
	prefixed := r
	prefixed.NamePrefix = "app_"
	missing := r
	missing.Properties = []string{"amount", "kind", "currency"}
	missing.PropertiesList = true
	missingAndBadTS := missing
	missingAndBadTS.Timestamp = "n"

	text2 := eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID))
	tsRel := func(oid uint32) *replication.Relation {
		return eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("at", oid))
	}
	propsRel := func(oid uint32) *replication.Relation {
		return eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("props", oid))
	}
	tests := []struct {
		name string
		rule Rule
		rel  *replication.Relation
		vals [][]byte
		want string
	}{
		{"NULL name", r, text2, [][]byte{nil, v("u")}, `event name column "kind" is NULL`},
		{"empty name", r, text2, [][]byte{v(""), v("u")}, `event name column "kind" is empty`},
		{"NULL name and external_id: name first", r, text2, [][]byte{nil, nil}, `event name column "kind" is NULL`},
		{"NULL external_id", r, text2, [][]byte{v("p"), nil}, `external_id column "user_id" is NULL`},
		{"empty external_id", r, text2, [][]byte{v("p"), v("")}, `external_id column "user_id" is empty`},
		{"name of 129 characters", r, text2, [][]byte{v(strings.Repeat("é", 129)), v("u")}, `event name is 129 characters; OneSignal allows at most 128`},
		{"prefix makes the name too long", prefixed, text2, [][]byte{v(strings.Repeat("x", 125)), v("u")}, `event name is 129 characters; OneSignal allows at most 128`},
		{"name of 300 characters", r, text2, [][]byte{v(strings.Repeat("ab", 150)), v("u")}, `event name is 300 characters; OneSignal allows at most 128`},
		{"timestamp column of type int4", withTS, tsRel(pgtype.Int4OID), [][]byte{v("p"), v("u"), v("1")},
			`timestamp column "at" of public.events is not a timestamptz, timestamp or date column`},
		{"timestamp column of type text, NULL value", withTS, tsRel(pgtype.TextOID), [][]byte{v("p"), v("u"), nil},
			`timestamp column "at" of public.events is not a timestamptz, timestamp or date column`},
		{"timestamptz infinity", withTS, tsRel(pgtype.TimestamptzOID), [][]byte{v("p"), v("u"), v("infinity")},
			`timestamp column "at": cannot read "infinity" as a timestamp`},
		{"timestamp -infinity", withTS, tsRel(pgtype.TimestampOID), [][]byte{v("p"), v("u"), v("-infinity")},
			`timestamp column "at": cannot read "-infinity" as a timestamp`},
		{"date BC", withTS, tsRel(pgtype.DateOID), [][]byte{v("p"), v("u"), v("0044-03-15 BC")},
			`timestamp column "at": cannot read "0044-03-15 BC" as a timestamp`},
		{"properties column of type text", withProps, propsRel(pgtype.TextOID), [][]byte{v("p"), v("u"), v(`{}`)},
			"properties column \"props\" of public.events is not json or jsonb; write `properties: [props]` to send it as one property"},
		{"properties array", withProps, propsRel(pgtype.JSONBOID), [][]byte{v("p"), v("u"), v(`[1, 2]`)},
			`properties column "props" holds an array, not a JSON object`},
		{"properties string", withProps, propsRel(pgtype.JSONBOID), [][]byte{v("p"), v("u"), v(`"{}"`)},
			`properties column "props" holds a string, not a JSON object`},
		{"properties number", withProps, propsRel(pgtype.JSONOID), [][]byte{v("p"), v("u"), v(` 12.5`)},
			`properties column "props" holds a number, not a JSON object`},
		{"properties negative number", withProps, propsRel(pgtype.JSONBOID), [][]byte{v("p"), v("u"), v(`-1`)},
			`properties column "props" holds a number, not a JSON object`},
		{"properties boolean", withProps, propsRel(pgtype.JSONBOID), [][]byte{v("p"), v("u"), v(`false`)},
			`properties column "props" holds a boolean, not a JSON object`},
		{"properties JSON null", withProps, propsRel(pgtype.JSONBOID), [][]byte{v("p"), v("u"), v(`null`)},
			`properties column "props" holds null, not a JSON object`},
		{"missing mapped columns", missing, text2, [][]byte{v("p"), v("u")},
			`mapped column(s) ["amount" "currency"] not found in public.events`},
		{"missing name column", r, eventsRel(col("user_id", pgtype.TextOID)), [][]byte{v("u")},
			`mapped column(s) ["kind"] not found in public.events`},
		{"missing external_id and timestamp columns", withTS, eventsRel(col("kind", pgtype.TextOID)), [][]byte{v("p")},
			`mapped column(s) ["user_id" "at"] not found in public.events`},
		{"missing columns win over a bad timestamp type", missingAndBadTS,
			eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("n", pgtype.Int4OID)), [][]byte{v("p"), v("u"), v("1")},
			`mapped column(s) ["amount" "currency"] not found in public.events`},
		{"column names are case-sensitive", r, eventsRel(col("Kind", pgtype.TextOID), col("user_id", pgtype.TextOID)), [][]byte{v("p"), v("u")},
			`mapped column(s) ["kind"] not found in public.events`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustNew(t, tt.rule)
			ev := m.Map(change(tt.rel, tt.vals...))
			if ev == nil {
				t.Fatal("Map returned nil for a mapped table")
			}
			if ev.Reject != tt.want {
				t.Errorf("Reject =\n  %s\nwant\n  %s", ev.Reject, tt.want)
			}
			if ev.JSON != nil || ev.Name != "" || ev.ExternalID != "" {
				t.Errorf("a rejected event has JSON %s, Name %q, ExternalID %q", ev.JSON, ev.Name, ev.ExternalID)
			}
			if want := RowJSON(tt.rel, tt.vals); !bytes.Equal(ev.Row, want) {
				t.Errorf("Row = %s, want %s", ev.Row, want)
			}
			if !json.Valid(ev.Row) {
				t.Errorf("Row is not valid JSON: %s", ev.Row)
			}
			if ev.Pos != testPos || ev.Table != "public.events" || ev.IdempotencyKey != testKey || !ev.CommitTime.Equal(commitTime) {
				t.Errorf("Pos, Table, IdempotencyKey, CommitTime = %v, %q, %q, %v", ev.Pos, ev.Table, ev.IdempotencyKey, ev.CommitTime)
			}
		})
	}
}

func TestMapRejectEmptyJSONText(t *testing.T) {
	// PostgreSQL never sends empty json text, but the reason must still read
	// well.
	rule := baseRule()
	rule.Properties = []string{"props"}
	m := mustNew(t, rule)
	rel := eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("props", pgtype.JSONOID))
	for _, text := range []string{"", " \n\t "} {
		ev := m.Map(change(rel, v("p"), v("u"), v(text)))
		if want := `properties column "props" holds nothing, not a JSON object`; ev.Reject != want {
			t.Errorf("json %q: Reject = %q, want %q", text, ev.Reject, want)
		}
	}
}

// sizedChange returns a change whose event is exactly size bytes: the
// padding goes into a jsonb property.
func sizedChange(t *testing.T, rel *replication.Relation, size int) (*replication.Change, string) {
	t.Helper()
	prefix := `{"name":"p","external_id":"u",` + commitStamp + `,` + keyField + `,"properties":{"pad":"`
	suffix := `"}}`
	pad := size - len(prefix) - len(suffix)
	if pad < 0 {
		t.Fatalf("size %d is too small", size)
	}
	props := `{"pad":"` + strings.Repeat("x", pad) + `"}`
	want := prefix + strings.Repeat("x", pad) + suffix
	if len(want) != size {
		t.Fatalf("test bug: built %d bytes, want %d", len(want), size)
	}
	return change(rel, v("p"), v("u"), v(props)), want
}

func TestMapSizeLimit(t *testing.T) {
	rule := baseRule()
	rule.Properties = []string{"props"}
	rel := eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("props", pgtype.JSONBOID))
	m := mustNew(t, rule)

	ch, want := sizedChange(t, rel, MaxEventBytes)
	ev := m.Map(ch)
	if ev.Reject != "" {
		t.Fatalf("event of exactly %d bytes rejected: %s", MaxEventBytes, ev.Reject)
	}
	if string(ev.JSON) != want || len(ev.JSON) != 2024 {
		t.Errorf("event of %d bytes, want exactly 2024:\n%s", len(ev.JSON), ev.JSON)
	}

	ch, _ = sizedChange(t, rel, MaxEventBytes+1)
	ev = m.Map(ch)
	if want := "event is 2025 bytes; OneSignal accepts at most 2024 bytes per event"; ev.Reject != want {
		t.Errorf("Reject = %q, want %q", ev.Reject, want)
	}
	if ev.JSON != nil {
		t.Errorf("rejected event has JSON")
	}

	// The limit counts the bytes sent: escapes count, and a multi-byte
	// character counts for its bytes, not as one.
	ch = change(rel, v("p"), v("u"), v(`{"s":"`+strings.Repeat("é", 1000)+`"}`))
	if ev := m.Map(ch); !strings.HasPrefix(ev.Reject, "event is 2") {
		t.Errorf("an event with 2000 bytes of é was not rejected: %q", ev.Reject)
	}
	ch = change(rel, v("p"), v("u"), v(`{"s":"`+strings.Repeat(`\n`, 900)+`"}`))
	if ev := m.Map(ch); ev.Reject != "" || !json.Valid(ev.JSON) {
		t.Errorf("900 escaped newlines (1800 bytes) rejected: %q", ev.Reject)
	}
}

func TestMapSizeLimitCountsCompactedJSON(t *testing.T) {
	// A json column's white space is removed before the size is checked.
	rule := baseRule()
	rule.Properties = []string{"props"}
	rel := eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("props", pgtype.JSONOID))
	m := mustNew(t, rule)
	ch, want := sizedChange(t, rel, MaxEventBytes)
	ch.Values[2] = append(v("{   \n\t"), append(ch.Values[2][1:], "   "...)...)
	ev := m.Map(ch)
	if ev.Reject != "" || string(ev.JSON) != want {
		t.Errorf("Reject %q, JSON of %d bytes; want the 2024-byte event", ev.Reject, len(ev.JSON))
	}
}

func TestMapUnmappedTable(t *testing.T) {
	m := mustNew(t, baseRule())
	for _, rel := range []*replication.Relation{
		replication.NewRelation(1, "public", "other", []replication.Column{col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID)}),
		replication.NewRelation(2, "audit", "events", []replication.Column{col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID)}),
		replication.NewRelation(3, "public", "Events", []replication.Column{col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID)}),
	} {
		if ev := m.Map(change(rel, v("p"), v("u"))); ev != nil {
			t.Errorf("Map for unmapped table %s = %+v, want nil", rel.QualifiedName(), ev)
		}
	}
}

func TestMapSeveralTables(t *testing.T) {
	m := mustNew(t,
		baseRule(),
		Rule{Schema: "billing", Table: "events", NameValue: "invoice", ExternalID: "customer"},
	)
	pub := eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID))
	bill := replication.NewRelation(2, "billing", "events", []replication.Column{col("customer", pgtype.TextOID)})
	if ev := m.Map(change(pub, v("p"), v("u"))); ev == nil || ev.Name != "p" || ev.Table != "public.events" {
		t.Errorf("public.events: %+v", ev)
	}
	if ev := m.Map(change(bill, v("c"))); ev == nil || ev.Name != "invoice" || ev.ExternalID != "c" || ev.Table != "billing.events" {
		t.Errorf("billing.events: %+v", ev)
	}
}

func TestMapRecompilesReannouncedRelation(t *testing.T) {
	rule := baseRule()
	rule.Properties = []string{"amount"}
	rule.PropertiesList = true
	m := mustNew(t, rule)

	old := eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID))
	ev := m.Map(change(old, v("p"), v("u")))
	if want := `mapped column(s) ["amount"] not found in public.events`; ev.Reject != want {
		t.Fatalf("before the column exists: Reject = %q, want %q", ev.Reject, want)
	}

	// ALTER TABLE ADD COLUMN amount, and a column order the plan must follow:
	// the server announces the relation again, as a new *Relation.
	re := eventsRel(col("amount", pgtype.NumericOID), col("user_id", pgtype.TextOID), col("kind", pgtype.TextOID))
	ev = m.Map(change(re, v("9.50"), v("u2"), v("refund")))
	want := `{"name":"refund","external_id":"u2",` + commitStamp + `,` + keyField + `,"properties":{"amount":9.50}}`
	if ev.Reject != "" || string(ev.JSON) != want {
		t.Fatalf("after the new Relation: Reject %q, JSON\n  %s\nwant\n  %s", ev.Reject, ev.JSON, want)
	}

	// The column type changes (ALTER COLUMN TYPE): the plan follows.
	re2 := eventsRel(col("amount", pgtype.TextOID), col("user_id", pgtype.TextOID), col("kind", pgtype.TextOID))
	ev = m.Map(change(re2, v("9.50"), v("u2"), v("refund")))
	want = `{"name":"refund","external_id":"u2",` + commitStamp + `,` + keyField + `,"properties":{"amount":"9.50"}}`
	if ev.Reject != "" || string(ev.JSON) != want {
		t.Fatalf("after the type change: Reject %q, JSON\n  %s\nwant\n  %s", ev.Reject, ev.JSON, want)
	}

	// A row still carrying the old *Relation keeps the old plan.
	if ev := m.Map(change(old, v("p"), v("u"))); ev.Reject == "" {
		t.Error("the old Relation's plan was replaced")
	}
}

func TestMapDoesNotAliasInputsOrEarlierEvents(t *testing.T) {
	rule := baseRule()
	rule.Properties = []string{"props"}
	rel := eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("props", pgtype.JSONBOID))
	m := mustNew(t, rule)

	vals := [][]byte{v("first"), v("u1"), v(`{"a": 1}`)}
	ev1 := m.Map(change(rel, vals...))
	want1 := string(ev1.JSON)
	// The stream reuses its receive buffer: the event must not alias it.
	for _, b := range vals {
		for i := range b {
			b[i] = '#'
		}
	}
	if string(ev1.JSON) != want1 || ev1.Name != "first" || ev1.ExternalID != "u1" {
		t.Errorf("overwriting the row changed the event: %s %q %q", ev1.JSON, ev1.Name, ev1.ExternalID)
	}
	// The mapper reuses its buffer: an earlier event must not change.
	ev2 := m.Map(change(rel, v("second-longer-name"), v("u2"), v(`{"b": 2}`)))
	if string(ev1.JSON) != want1 {
		t.Errorf("mapping a second row changed the first event to %s", ev1.JSON)
	}
	if !strings.Contains(string(ev2.JSON), "second-longer-name") {
		t.Errorf("second event: %s", ev2.JSON)
	}

	// A rejected row keeps a copy of the row, too.
	bad := [][]byte{nil, v("u3"), v(`{}`)}
	ev3 := m.Map(change(rel, bad...))
	wantRow := string(ev3.Row)
	bad[1][0] = '#'
	if string(ev3.Row) != wantRow {
		t.Errorf("overwriting the row changed the dead letter's row to %s", ev3.Row)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule
		want  string
	}{
		{"duplicate table", []Rule{baseRule(), baseRule()}, "table public.events is mapped twice"},
		{"name and name_value", []Rule{{Schema: "public", Table: "events", NameColumn: "kind", NameValue: "x", ExternalID: "u"}},
			"table public.events: exactly one of name and name_value is needed"},
		{"neither name nor name_value", []Rule{{Schema: "public", Table: "events", ExternalID: "u"}},
			"table public.events: exactly one of name and name_value is needed"},
		{"no external_id", []Rule{{Schema: "app", Table: "t", NameValue: "x"}}, "table app.t: external_id is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := New(tt.rules)
			if err == nil {
				t.Fatalf("New succeeded (%v), want error %q", m, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q, want %q", err, tt.want)
			}
		})
	}
	if m, err := New(nil); err != nil || m == nil {
		t.Errorf("New(nil) = %v, %v", m, err)
	}
	// The same table name in two schemas is two tables.
	if _, err := New([]Rule{baseRule(), {Schema: "other", Table: "events", NameValue: "x", ExternalID: "u"}}); err != nil {
		t.Errorf("two schemas: %v", err)
	}
}

func TestRowJSON(t *testing.T) {
	rel := eventsRel(
		col("id", pgtype.Int8OID), col("kind", pgtype.TextOID), col("props", pgtype.JSONBOID),
		col("at", pgtype.TimestamptzOID), col("tags", pgtype.TextArrayOID), col("blob", pgtype.ByteaOID),
		col(`q"uote`, pgtype.BoolOID), col("gone", pgtype.Int4OID),
	)
	tests := []struct {
		name string
		vals [][]byte
		want string
	}{
		{"typed values",
			[][]byte{v("42"), v("say \"hi\""), v(`{"a": [1]}`), v("2024-01-02 03:04:05+00"), v(`{x,NULL}`), v(`\x0102`), v("t"), nil},
			`{"id":42,"kind":"say \"hi\"","props":{"a": [1]},"at":"2024-01-02T03:04:05Z","tags":["x",null],"blob":"AQI=","q\"uote":true,"gone":null}`},
		{"fewer values than columns", [][]byte{v("1"), v("")},
			`{"id":1,"kind":"","props":null,"at":null,"tags":null,"blob":null,"q\"uote":null,"gone":null}`},
		{"no values", nil,
			`{"id":null,"kind":null,"props":null,"at":null,"tags":null,"blob":null,"q\"uote":null,"gone":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RowJSON(rel, tt.vals)
			if string(got) != tt.want {
				t.Errorf("RowJSON =\n  %s\nwant\n  %s", got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("not valid JSON: %s", got)
			}
		})
	}
	if got := RowJSON(eventsRel(), nil); string(got) != "{}" {
		t.Errorf("RowJSON of no columns = %s, want {}", got)
	}
}

func BenchmarkMap(b *testing.B) {
	rule := baseRule()
	rule.Timestamp = "at"
	rule.Properties = []string{"amount", "sku", "at"}
	rule.PropertiesList = true
	m := mustNew(b, rule)
	rel := eventsRel(col("kind", pgtype.TextOID), col("user_id", pgtype.TextOID), col("amount", pgtype.NumericOID),
		col("sku", pgtype.TextOID), col("at", pgtype.TimestamptzOID))
	ch := change(rel, v("purchase"), v("user_12345"), v("24.99"), v("T-shirt"), v("2025-10-21 19:09:32.263+00"))
	b.ReportAllocs()
	for b.Loop() {
		if ev := m.Map(ch); ev.Reject != "" {
			b.Fatal(ev.Reject)
		}
	}
}

// ExampleMapper_Map shows the event JSON for a row.
func ExampleMapper_Map() {
	m, _ := New([]Rule{{Schema: "public", Table: "events", NameColumn: "kind", ExternalID: "user_id", Properties: []string{"props"}}})
	rel := replication.NewRelation(1, "public", "events", []replication.Column{
		{Name: "kind", TypeOID: pgtype.TextOID}, {Name: "user_id", TypeOID: pgtype.TextOID}, {Name: "props", TypeOID: pgtype.JSONBOID},
	})
	ev := m.Map(&replication.Change{Rel: rel, Values: [][]byte{[]byte("purchase"), []byte("user_12345"), []byte(`{"item": "T-shirt"}`)},
		CommitTime: time.Date(2025, 10, 21, 19, 9, 32, 263e6, time.UTC), IdempotencyKey: testKey})
	fmt.Println(string(ev.JSON))
	// Output:
	// {"name":"purchase","external_id":"user_12345","timestamp":"2025-10-21T19:09:32.263Z","idempotency_key":"123e4567-e89b-12d3-a456-426614174000","properties":{"item": "T-shirt"}}
}

// Every reconnect brings new Relation values; the plans kept stay bounded
// and mapping stays right.
func TestPlansBounded(t *testing.T) {
	m := mustNew(t, baseRule())
	for i := 0; i < 3*maxPlans; i++ {
		rel := eventsRel(col("kind", 25), col("user_id", 25))
		ev := m.Map(change(rel, v("signup"), v("u1")))
		if ev == nil || ev.Reject != "" || ev.Name != "signup" {
			t.Fatalf("map %d: %+v", i, ev)
		}
	}
	if n := len(m.plans); n > maxPlans {
		t.Errorf("%d plans kept, want at most %d", n, maxPlans)
	}
}
