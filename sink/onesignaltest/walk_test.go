package onesignaltest

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// checkWalk compares the walker's view of the valid JSON value raw with
// encoding/json's, recursively.
func checkWalk(t *testing.T, raw []byte) {
	t.Helper()
	switch raw[0] {
	case '{':
		want := map[string]json.RawMessage{}
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatalf("reference decode of %s: %v", raw, err)
		}
		got := map[string][]byte{}
		eachMember(raw, 0, func(key, value []byte) { got[string(keyText(key))] = value })
		if len(got) != len(want) {
			t.Fatalf("object %s: walker found %d members, encoding/json %d", raw, len(got), len(want))
		}
		for k, v := range want {
			if !bytes.Equal(got[k], v) {
				t.Fatalf("object %s member %q: walker %s, encoding/json %s", raw, k, got[k], v)
			}
			checkWalk(t, v)
		}
	case '[':
		var want []json.RawMessage
		if err := json.Unmarshal(raw, &want); err != nil {
			t.Fatalf("reference decode of %s: %v", raw, err)
		}
		var got [][]byte
		eachElement(raw, func(v []byte) { got = append(got, v) })
		if len(got) != len(want) {
			t.Fatalf("array %s: walker found %d elements, encoding/json %d", raw, len(got), len(want))
		}
		for i := range want {
			if !bytes.Equal(got[i], want[i]) {
				t.Fatalf("array %s element %d: walker %s, encoding/json %s", raw, i, got[i], want[i])
			}
			checkWalk(t, want[i])
		}
	}
}

// FuzzParseBody checks that parseBody never panics and that, on valid JSON,
// the walker splits objects and arrays exactly as encoding/json does.
func FuzzParseBody(f *testing.F) {
	for _, s := range []string{
		`{"events":[{"name":"a","external_id":"u"}]}`,
		`{"events":[{"name":"a\"b\\","external_id":"u","properties":{"x":[1,{"y":"}]"}],"z":null}}]}`,
		` { "events" : [ { "n\u0061me" : "a" , "onesignal_id" : "o" } , 1 , [] , "s" ] } `,
		`{"events":[{"name":"a","name":"b","external_id":"u","payload":{"event_id":"e"}}],"events":[]}`,
		`{"events":[{"name":"a","external_id":"u","timestamp":"2025-10-21T19:09:32.263Z","idempotency_key":"123e4567-e89b-12d3-a456-426614174000"}]}`,
		`[]`, `null`, `{}`, `{"events":null}`, `"x"`, `12`, `{"a":"\\\\"}`, `{"a":"\\\""}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		evs, errs := parseBody(body)
		if len(errs) == 0 {
			for i := range evs {
				_ = evs[i].accepted(testTime, 1)
				_ = eventID(evs[i].props)
			}
		}
		if !json.Valid(body) || !utf8.Valid(body) {
			return
		}
		raw := bytes.TrimSpace(body) // json.Valid allows the same spaces as TrimSpace trims
		checkWalk(t, raw)
	})
}
