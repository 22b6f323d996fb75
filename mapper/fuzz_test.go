package mapper

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgsignal/pgsignal/mapper/codec"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// fuzzRel is the fixed relation FuzzMap maps.
var fuzzRel = eventsRel(
	col("id", pgtype.Int8OID),
	col("kind", pgtype.TextOID),
	col("user_id", pgtype.TextOID),
	col("amount", pgtype.Int4OID),
	col("props", pgtype.JSONBOID),
	col("at", pgtype.TimestamptzOID),
)

// fuzzRules map fuzzRel with a jsonb properties column and with a list.
var fuzzRules = []Rule{
	{Schema: "public", Table: "events", NameColumn: "kind", NamePrefix: "app.", ExternalID: "user_id", Timestamp: "at", Properties: []string{"props"}},
	{Schema: "public", Table: "events", NameColumn: "kind", ExternalID: "user_id", Timestamp: "at",
		Properties: []string{"id", "amount", "props", "at", "kind"}, PropertiesList: true},
}

// decodedEvent is the wire form of an event.
type decodedEvent struct {
	Name           *string         `json:"name"`
	ExternalID     *string         `json:"external_id"`
	Timestamp      *string         `json:"timestamp"`
	IdempotencyKey *string         `json:"idempotency_key"`
	Properties     json.RawMessage `json:"properties"`
}

// jsonString is what s decodes to after a JSON round trip (invalid UTF-8
// becomes U+FFFD).
func jsonString(t *testing.T, s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var out string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func FuzzMap(f *testing.F) {
	// nulls: bit i set makes column i NULL.
	f.Add(uint8(0), "1", "purchase", "user_1", "42", `{"sku": "A1", "price": 24.99}`, "2025-10-21 19:09:32.263+00")
	f.Add(uint8(1<<4|1<<5), "2", "signup", "u", "0", "", "")
	f.Add(uint8(1<<1), "3", "", "u", "1", `{}`, "2024-01-02 08:34:05.5+05:30")
	f.Add(uint8(0), "4", "x", "", "-1", `[1, 2]`, "infinity")
	f.Add(uint8(0), "5", strings.Repeat("n", 130), "u", "x", `"str"`, "2024-01-02 03:04:05")
	f.Add(uint8(0), "6", "big", "u", "7", `{"pad": "`+strings.Repeat("x", 1900)+`"}`, "2024-01-02 03:04:05+00")
	f.Add(uint8(0), "7", "esc\"\\\n\u2028", "ü\xff", "7", `{"a": "\u0000<&>"}`, "1900-01-01 00:00:00+00:53:28")

	fake := onesignaltest.New(onesignaltest.Options{CountOnly: true, DedupWindow: -1})
	f.Cleanup(func() { fake.Close() })
	mappers := make([]*Mapper, len(fuzzRules))
	for i, r := range fuzzRules {
		mappers[i] = mustNew(f, r)
	}

	f.Fuzz(func(t *testing.T, nulls uint8, id, kind, user, amount, props, at string) {
		texts := []string{id, kind, user, amount, props, at}
		vals := make([][]byte, len(texts))
		for i, s := range texts {
			if nulls&(1<<i) == 0 {
				vals[i] = []byte(s)
			}
		}
		if vals[4] != nil && !json.Valid(vals[4]) {
			// PostgreSQL's jsonb output is always valid JSON; the mapper
			// embeds it as is.
			vals[4] = nil
		}
		if ts, err := codec.ParseTimestamp(pgtype.TimestamptzOID, vals[5], time.UTC); vals[5] != nil && err == nil && (ts.UTC().Year() < 1 || ts.UTC().Year() > 9999) {
			// The replication connection runs with TimeZone=UTC, so
			// PostgreSQL prints timestamptz with +00, and years 1 to 9999
			// AD in four digits (BC and five-digit years are rejected):
			// an offset never moves the UTC year out of that range.
			vals[5] = nil
		}
		for ri, rule := range fuzzRules {
			ev := mappers[ri].Map(change(fuzzRel, vals...))
			if ev == nil {
				t.Fatal("Map returned nil for the mapped table")
			}
			if ev.Reject != "" {
				if ev.JSON != nil {
					t.Fatalf("rule %d: rejected (%s) with JSON %s", ri, ev.Reject, ev.JSON)
				}
				// The reason goes to a text column: it must be valid UTF-8
				// whatever the row holds.
				if !json.Valid(ev.Row) || !utf8.ValidString(ev.Reject) {
					t.Fatalf("rule %d: rejected with row %s, reason %q", ri, ev.Row, ev.Reject)
				}
				continue
			}
			checkFuzzEvent(t, fake, ri, rule, vals, ev.JSON, ev.Name, ev.ExternalID)
		}
	})
}

func checkFuzzEvent(t *testing.T, fake *onesignaltest.Server, ri int, rule Rule, vals [][]byte, raw []byte, name, ext string) {
	t.Helper()
	if !json.Valid(raw) {
		t.Fatalf("rule %d: invalid event JSON %s", ri, raw)
	}
	if len(raw) > MaxEventBytes {
		t.Fatalf("rule %d: event of %d bytes accepted", ri, len(raw))
	}
	if name != rule.NamePrefix+string(vals[1]) || ext != string(vals[2]) {
		t.Fatalf("rule %d: Name %q, ExternalID %q from kind %q, user_id %q", ri, name, ext, vals[1], vals[2])
	}
	var ev decodedEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		t.Fatalf("rule %d: %v: %s", ri, err, raw)
	}
	if ev.Name == nil || *ev.Name != jsonString(t, name) {
		t.Fatalf("rule %d: name field %v, want %q", ri, ev.Name, name)
	}
	if ev.ExternalID == nil || *ev.ExternalID != jsonString(t, ext) {
		t.Fatalf("rule %d: external_id field %v, want %q", ri, ev.ExternalID, ext)
	}
	if ev.IdempotencyKey == nil || *ev.IdempotencyKey != testKey {
		t.Fatalf("rule %d: idempotency_key %v", ri, ev.IdempotencyKey)
	}
	if ev.Timestamp == nil {
		t.Fatalf("rule %d: no timestamp", ri)
	}
	ts, err := time.Parse(time.RFC3339, *ev.Timestamp)
	if err != nil {
		t.Fatalf("rule %d: timestamp %q: %v", ri, *ev.Timestamp, err)
	}
	if vals[5] == nil && !ts.Equal(commitTime) {
		t.Fatalf("rule %d: NULL timestamp gave %v, want the commit time", ri, ts)
	}
	if vals[5] != nil {
		want, err := codec.ParseTimestamp(pgtype.TimestamptzOID, vals[5], time.UTC)
		if err != nil || !ts.Equal(want.Truncate(time.Millisecond)) {
			t.Fatalf("rule %d: timestamp %v from %q (parsed %v, %v)", ri, ts, vals[5], want, err)
		}
	}
	if !rule.PropertiesList {
		if vals[4] == nil {
			if ev.Properties != nil {
				t.Fatalf("rule %d: NULL properties gave %s", ri, ev.Properties)
			}
		} else if !sameJSON(ev.Properties, vals[4]) {
			t.Fatalf("rule %d: properties %s from %s", ri, ev.Properties, vals[4])
		}
	} else {
		var props map[string]json.RawMessage
		if err := json.Unmarshal(ev.Properties, &props); err != nil || len(props) != len(rule.Properties) {
			t.Fatalf("rule %d: properties %s: %v", ri, ev.Properties, err)
		}
	}
	// The faithful fake accepts every event the mapper did not reject.
	body := append(append([]byte(`{"events":[`), raw...), "]}"...)
	req := httptest.NewRequest(http.MethodPost, "/apps/"+onesignaltest.DefaultAppID+"/custom_events", bytes.NewReader(body))
	req.Header.Set("Authorization", "Key "+onesignaltest.DefaultAPIKey)
	rec := httptest.NewRecorder()
	fake.ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		t.Fatalf("rule %d: the fake answered %d %s to %s", ri, rec.Code, rec.Body, raw)
	}
}

func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
