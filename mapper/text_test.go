package mapper

import (
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgsignal/pgsignal/replication"
)

// textRel has text columns for every field, a json column and a text[]
// column, as a SQL_ASCII database sends them.
var textRel = eventsRel(
	col("kind", pgtype.TextOID),
	col("user_id", pgtype.TextOID),
	col("note", pgtype.TextOID),
	col("data", pgtype.JSONOID),
	col("tags", pgtype.TextArrayOID),
)

// textRules map textRel with the json column (plus note merged into it) and
// with a list of columns.
var textRules = []Rule{
	{Schema: "public", Table: "events", NameColumn: "kind", ExternalID: "user_id", Properties: []string{"data"}, PropertiesColumns: []string{"note"}},
	{Schema: "public", Table: "events", NameColumn: "kind", ExternalID: "user_id", Properties: []string{"note", "tags"}, PropertiesList: true},
}

// A name, external_id or property that is not valid UTF-8 is rejected with a
// reason that quotes its bytes (valid UTF-8, no U+FFFD), and the dead
// letter's row keeps every byte; different users never map to one
// external_id.
func TestNotUTF8Rejected(t *testing.T) {
	tests := []struct {
		name   string
		rule   int
		vals   [][]byte
		reason string
	}{
		{"latin-1 user", 0, [][]byte{v("ev"), v("caf\xe9"), nil, nil, nil},
			`external_id column "user_id" holds text that is not valid UTF-8 (byte 3): "caf\xe9", \x636166e9; it is not sent`},
		{"other latin-1 user", 0, [][]byte{v("ev"), v("caf\xe8"), nil, nil, nil},
			`external_id column "user_id" holds text that is not valid UTF-8 (byte 3): "caf\xe8", \x636166e8`},
		{"truncated sequence", 1, [][]byte{v("ev"), v("caf\xc3"), nil, nil, nil},
			`(byte 3): "caf\xc3", \x636166c3`},
		{"name", 1, [][]byte{v("sign\xe9up"), v("u"), nil, nil, nil},
			`event name column "kind" holds text that is not valid UTF-8 (byte 4): "sign\xe9up", \x7369676ee97570`},
		{"json property", 0, [][]byte{v("ev"), v("u"), nil, v(`{"k": "` + "\xff" + `"}`), nil},
			`properties column "data" holds text that is not valid UTF-8 (byte 7): "{\"k\": \"\xff\"}"`},
		{"merged column", 0, [][]byte{v("ev"), v("u"), v("n\xf6te"), v(`{}`), nil},
			`properties column "note" holds text that is not valid UTF-8 (byte 1): "n\xf6te"`},
		{"listed text", 1, [][]byte{v("ev"), v("u"), v("\x80"), nil, nil},
			`properties column "note" holds text that is not valid UTF-8 (byte 0): "\x80", \x80`},
		{"array element", 1, [][]byte{v("ev"), v("u"), nil, nil, v("{a,\xe9}")},
			`properties column "tags" holds text that is not valid UTF-8 (byte 3): "{a,\xe9}"`},
		{"long value", 1, [][]byte{v("ev"), v(strings.Repeat("a", 100) + "\xe9" + strings.Repeat("b", 100)), nil, nil, nil},
			`(byte 100): …"aaaaaaaaaaaaaaaaaaaaaaaa\xe9bbbbbbbbbbbbbbbbbbbbbbb"…, \x` + strings.Repeat("61", 24) + "e9" + strings.Repeat("62", 23) + ` (bytes 76 to 124 of 201)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustNew(t, textRules[tt.rule])
			ev := m.Map(change(textRel, tt.vals...))
			if ev.Reject == "" || ev.JSON != nil {
				t.Fatalf("accepted: %s", ev.JSON)
			}
			if !strings.Contains(ev.Reject, tt.reason) {
				t.Fatalf("reason %q\nwant it to hold %q", ev.Reject, tt.reason)
			}
			if !utf8.ValidString(ev.Reject) || strings.ContainsRune(ev.Reject, utf8.RuneError) {
				t.Fatalf("reason %q is not valid UTF-8 or holds U+FFFD", ev.Reject)
			}
			checkRowLossless(t, ev.Row, textRel, tt.vals)
		})
	}
}

// checkRowLossless checks that row is valid UTF-8 JSON from which every
// text column's value (vals[i]) can be read back byte for byte.
func checkRowLossless(t *testing.T, row []byte, rel *replication.Relation, vals [][]byte) {
	t.Helper()
	if !utf8.Valid(row) || !json.Valid(row) {
		t.Fatalf("row %q is not valid UTF-8 JSON", row)
	}
	var cols map[string]json.RawMessage
	if err := json.Unmarshal(row, &cols); err != nil {
		t.Fatal(err)
	}
	for i, c := range rel.Columns {
		if c.TypeOID != pgtype.TextOID {
			continue
		}
		raw := cols[c.Name]
		var got []byte
		var s *string
		var wrapped struct {
			NotUTF8 string `json:"not_utf8"`
		}
		switch {
		case json.Unmarshal(raw, &s) == nil:
			if s != nil {
				got = []byte(*s)
			}
		case json.Unmarshal(raw, &wrapped) == nil && strings.HasPrefix(wrapped.NotUTF8, `\x`):
			b, err := hex.DecodeString(wrapped.NotUTF8[2:])
			if err != nil {
				t.Fatal(err)
			}
			got = b
		default:
			t.Fatalf("column %s is %s in the row", c.Name, raw)
		}
		if string(got) != string(vals[i]) || (got == nil) != (vals[i] == nil) {
			t.Fatalf("column %s: row gives %q, the value was %q", c.Name, got, vals[i])
		}
	}
}

// Whatever bytes the text columns hold: an accepted event is valid UTF-8
// JSON whose name and external_id are exactly the columns' text (so two
// users are one only when their bytes are equal), and a rejected row's
// reason is valid UTF-8 and its row lossless.
func FuzzNotUTF8(f *testing.F) {
	f.Add("ev", "caf\xe9", "n", `{"k": "v"}`, "{a,b}")
	f.Add("ev", "caf\xef\xbf\xbd", "n\xff", `{"k": "`+"\xff"+`"}`, "{\xe9}")
	f.Add("\xed\xa0\x80", "u", "", `{}`, "{}")
	mappers := make([]*Mapper, len(textRules))
	for i, r := range textRules {
		mappers[i] = mustNew(f, r)
	}
	f.Fuzz(func(t *testing.T, kind, user, note, data, tags string) {
		vals := [][]byte{v(kind), v(user), v(note), v(data), v(tags)}
		if !json.Valid(vals[3]) {
			vals[3] = nil // PostgreSQL's json output is JSON (whatever the bytes in its strings)
		}
		for ri := range textRules {
			ev := mappers[ri].Map(change(textRel, vals...))
			if ev.Reject != "" {
				if !utf8.ValidString(ev.Reject) {
					t.Fatalf("rule %d: reason %q is not valid UTF-8", ri, ev.Reject)
				}
				checkRowLossless(t, ev.Row, textRel, vals)
				continue
			}
			if !utf8.Valid(ev.JSON) || !json.Valid(ev.JSON) {
				t.Fatalf("rule %d: event %q is not valid UTF-8 JSON", ri, ev.JSON)
			}
			var got struct {
				Name       string `json:"name"`
				ExternalID string `json:"external_id"`
			}
			if err := json.Unmarshal(ev.JSON, &got); err != nil {
				t.Fatal(err)
			}
			if got.Name != kind || got.ExternalID != user || ev.ExternalID != user {
				t.Fatalf("rule %d: sent name %q, external_id %q for %q, %q", ri, got.Name, got.ExternalID, kind, user)
			}
		}
	})
}
