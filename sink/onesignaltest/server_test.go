package onesignaltest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestAuth(t *testing.T) {
	tests := []struct {
		name     string
		auth     string
		wantCode int
		wantBody string
	}{
		{"missing", "", http.StatusForbidden, AccessDeniedBody},
		{"wrong key", "Key os_v2_app_other", http.StatusForbidden, AccessDeniedBody},
		{"no scheme", DefaultAPIKey, http.StatusForbidden, AccessDeniedBody},
		{"bearer scheme", "Bearer " + DefaultAPIKey, http.StatusForbidden, AccessDeniedBody},
		{"empty token", "Key ", http.StatusForbidden, AccessDeniedBody},
		{"key prefix only", "Key " + DefaultAPIKey[:5], http.StatusForbidden, AccessDeniedBody},
		{"Key", "Key " + DefaultAPIKey, http.StatusAccepted, "{}"},
		{"lower-case key", "key " + DefaultAPIKey, http.StatusAccepted, "{}"},
		{"upper-case KEY", "KEY " + DefaultAPIKey, http.StatusAccepted, "{}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{})
			w := serve(t, s, http.MethodPost, testPath, tt.auth, batch(ev("a", "u")))
			if w.Code != tt.wantCode || w.Body.String() != tt.wantBody {
				t.Fatalf("got %d %s, want %d %s", w.Code, w.Body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

func TestAuthCustomKeyAndForbiddenStat(t *testing.T) {
	s := New(Options{APIKey: "os_v2_app_custom"})
	if w := post(t, s, batch(ev("a", "u"))); w.Code != http.StatusForbidden {
		t.Fatalf("default key with custom APIKey: got %d, want 403", w.Code)
	}
	w := serve(t, s, http.MethodPost, testPath, "Key os_v2_app_custom", batch(ev("a", "u")))
	if w.Code != http.StatusAccepted {
		t.Fatalf("custom key: got %d %s, want 202", w.Code, w.Body)
	}
	if got := s.Stats().Forbidden; got != 1 {
		t.Fatalf("Forbidden = %d, want 1", got)
	}
}

func TestRouting(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		path     string
		wantCode int
		wantErr  string
	}{
		{"current path", http.MethodPost, "/apps/" + DefaultAppID + "/custom_events", http.StatusAccepted, ""},
		{"beta path", http.MethodPost, "/apps/" + DefaultAppID + "/integrations/custom_events", http.StatusAccepted, ""},
		{"wrong app id", http.MethodPost, "/apps/00000000-0000-4000-8000-000000000000/custom_events",
			http.StatusBadRequest, "app_id not found: 00000000-0000-4000-8000-000000000000"},
		{"PUT", http.MethodPut, testPath, http.StatusMethodNotAllowed, "method PUT not allowed; use POST (GET lists what the fake accepted)"},
		{"root", http.MethodPost, "/", http.StatusNotFound, "not found: /"},
		{"notifications", http.MethodPost, "/notifications", http.StatusNotFound, "not found: /notifications"},
		{"no app id", http.MethodPost, "/apps//custom_events", http.StatusNotFound, "not found: /apps//custom_events"},
		{"trailing slash", http.MethodPost, testPath + "/", http.StatusNotFound, "not found: " + testPath + "/"},
		{"other resource", http.MethodPost, "/apps/" + DefaultAppID + "/users", http.StatusNotFound,
			"not found: /apps/" + DefaultAppID + "/users"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{})
			w := serve(t, s, tt.method, tt.path, testAuth, batch(ev("a", "u")))
			if w.Code != tt.wantCode {
				t.Fatalf("got %d %s, want %d", w.Code, w.Body, tt.wantCode)
			}
			if got := w.Header().Get("Content-Type"); got != "application/json; charset=utf-8" {
				t.Errorf("Content-Type = %q", got)
			}
			if tt.wantErr == "" {
				if w.Body.String() != "{}" {
					t.Fatalf("body = %s, want {}", w.Body)
				}
				return
			}
			if got := errorsOf(t, w.Body.String()); !reflect.DeepEqual(got, []string{tt.wantErr}) {
				t.Fatalf("errors = %q, want [%q]", got, tt.wantErr)
			}
		})
	}
}

func TestMethodNotAllowedSetsAllow(t *testing.T) {
	w := serve(t, New(Options{}), http.MethodDelete, testPath, testAuth, "")
	if got := w.Header().Get("Allow"); got != "GET, POST" {
		t.Fatalf("Allow = %q, want GET, POST", got)
	}
}

// GET lists the accepted events (the fake's own view, not OneSignal's API):
// authenticated like POST, the last ?limit events, with the counters.
func TestGetListsAccepted(t *testing.T) {
	s := New(Options{})
	post(t, s, batch(ev("a", "u1"), ev("b", "u2")))
	if w := serve(t, s, http.MethodGet, testPath, "Key wrong", ""); w.Code != http.StatusForbidden {
		t.Fatalf("GET with a wrong key: %d", w.Code)
	}
	w := serve(t, s, http.MethodGet, testPath+"?limit=1", testAuth, "")
	if w.Code != http.StatusOK {
		t.Fatalf("GET: %d %s", w.Code, w.Body)
	}
	var got struct {
		Count, Duplicates int
		Events            []struct {
			Name       string `json:"name"`
			ExternalID string `json:"external_id"`
		}
	}
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Count != 2 || got.Duplicates != 0 || len(got.Events) != 1 || got.Events[0].Name != "b" || got.Events[0].ExternalID != "u2" {
		t.Fatalf("GET ?limit=1 = %s", w.Body)
	}
	if w := serve(t, s, http.MethodGet, testPath+"?limit=x", testAuth, ""); w.Code != http.StatusBadRequest {
		t.Fatalf("GET ?limit=x: %d", w.Code)
	}
}

func TestCustomAppID(t *testing.T) {
	const app = "11111111-2222-4333-8444-555555555555"
	s := New(Options{AppID: app})
	if w := serve(t, s, http.MethodPost, "/apps/"+app+"/custom_events", testAuth, batch(ev("a", "u"))); w.Code != http.StatusAccepted {
		t.Fatalf("custom app id: got %d %s", w.Code, w.Body)
	}
	if w := post(t, s, batch(ev("a", "u"))); w.Code != http.StatusBadRequest {
		t.Fatalf("default app id on custom server: got %d, want 400", w.Code)
	}
	if s.AppID() != app || s.APIKey() != DefaultAPIKey {
		t.Fatalf("AppID, APIKey = %q, %q", s.AppID(), s.APIKey())
	}
}

func TestValidation(t *testing.T) {
	name128 := strings.Repeat("n", 128)
	name128Runes := strings.Repeat("é", 128) // 256 bytes, 128 characters
	name129 := strings.Repeat("n", 129)
	const key = "123e4567-e89b-12d3-a456-426614174000"
	tests := []struct {
		name     string
		body     string
		wantCode int
		wantErrs []string // nil: want 202 {}
	}{
		// Request level.
		{"malformed JSON", `{"events":[`, 400, []string{"request body is not valid JSON: unexpected end of JSON input"}},
		{"trailing garbage", `{"events":[]} x`, 400, []string{"request body is not valid JSON: invalid character 'x' after top-level value"}},
		{"empty body", ``, 400, []string{"request body is not valid JSON: unexpected end of JSON input"}},
		{"body not an object", `[]`, 400, []string{"request body must be a JSON object"}},
		{"body null", `null`, 400, []string{"request body must be a JSON object"}},
		{"events missing", `{}`, 400, []string{"events is required"}},
		{"events key case matters", `{"Events":[]}`, 400, []string{"events is required"}},
		{"events an object", `{"events":{}}`, 400, []string{"events must be an array"}},
		{"events null", `{"events":null}`, 400, []string{"events must be an array"}},
		{"events empty", `{"events":[]}`, 202, nil},
		{"event not an object", `{"events":[1]}`, 400, []string{"events[0]: event must be a JSON object"}},

		// Field names: exact case, escapes decoded, the last repeat wins,
		// unknown fields ignored, spaces allowed.
		{"field name case matters", batch(`{"Name":"a","external_id":"u"}`), 400, []string{"events[0]: name is required"}},
		{"escaped field name", batch(`{"n\u0061me":"a","external_id":"u"}`), 202, nil},
		{"repeated field, last wins", batch(`{"name":"","name":"a","external_id":"u"}`), 202, nil},
		{"repeated field, last is bad", batch(`{"name":"a","name":"","external_id":"u"}`), 400, []string{"events[0]: name is required"}},
		{"unknown fields ignored", batch(`{"name":"a","external_id":"u","extra":{"name":5}}`), 202, nil},
		{"spaces everywhere", " { \"events\" : [ { \"name\" : \"a\" ,\n\t\"external_id\" : \"u\" } ] } ", 202, nil},

		// name
		{"name missing", batch(`{"external_id":"u"}`), 400, []string{"events[0]: name is required"}},
		{"name empty", batch(`{"name":"","external_id":"u"}`), 400, []string{"events[0]: name is required"}},
		{"name null", batch(`{"name":null,"external_id":"u"}`), 400, []string{"events[0]: name is required"}},
		{"name not a string", batch(`{"name":5,"external_id":"u"}`), 400, []string{"events[0]: name must be a string"}},
		{"name 128 chars", batch(ev(name128, "u")), 202, nil},
		{"name 128 multibyte chars", batch(ev(name128Runes, "u")), 202, nil},
		{"name 129 chars", batch(ev(name129, "u")), 400, []string{"events[0]: name must be at most 128 characters"}},

		// ids
		{"no id", batch(`{"name":"a"}`), 400, []string{"events[0]: external_id or onesignal_id is required"}},
		{"empty external_id", batch(`{"name":"a","external_id":""}`), 400, []string{"events[0]: external_id or onesignal_id is required"}},
		{"external_id not a string", batch(`{"name":"a","external_id":7}`), 400, []string{"events[0]: external_id must be a string"}},
		{"onesignal_id not a string", batch(`{"name":"a","onesignal_id":true}`), 400, []string{"events[0]: onesignal_id must be a string"}},
		{"onesignal_id only", batch(`{"name":"a","onesignal_id":"1589641e-9d52-4b3b-8e6d-2c7a2f0e9b11"}`), 202, nil},
		{"both ids", batch(`{"name":"a","external_id":"u","onesignal_id":"x"}`), 202, nil},

		// timestamp
		{"timestamp RFC 3339 ms Z", batch(`{"name":"a","external_id":"u","timestamp":"2025-10-21T19:09:32.263Z"}`), 202, nil},
		{"timestamp offset", batch(`{"name":"a","external_id":"u","timestamp":"2025-10-21T19:09:32+02:00"}`), 202, nil},
		{"timestamp basic offset", batch(`{"name":"a","external_id":"u","timestamp":"2025-10-21T19:09:32.5+0200"}`), 202, nil},
		{"timestamp no zone", batch(`{"name":"a","external_id":"u","timestamp":"2025-10-21T19:09:32"}`), 202, nil},
		{"timestamp date", batch(`{"name":"a","external_id":"u","timestamp":"2025-10-21"}`), 202, nil},
		{"timestamp not a date", batch(`{"name":"a","external_id":"u","timestamp":"yesterday"}`), 400,
			[]string{`events[0]: timestamp "yesterday" is not an ISO 8601 date-time`}},
		{"timestamp bad month", batch(`{"name":"a","external_id":"u","timestamp":"2025-13-21T19:09:32Z"}`), 400,
			[]string{`events[0]: timestamp "2025-13-21T19:09:32Z" is not an ISO 8601 date-time`}},
		{"timestamp empty", batch(`{"name":"a","external_id":"u","timestamp":""}`), 400,
			[]string{`events[0]: timestamp "" is not an ISO 8601 date-time`}},
		{"timestamp a number", batch(`{"name":"a","external_id":"u","timestamp":1729537772}`), 400,
			[]string{"events[0]: timestamp must be a string"}},

		// properties / payload
		{"properties object", batch(`{"name":"a","external_id":"u","properties":{"k":1}}`), 202, nil},
		{"payload object", batch(`{"name":"a","external_id":"u","payload":{"k":1}}`), 202, nil},
		{"properties null", batch(`{"name":"a","external_id":"u","properties":null}`), 202, nil},
		{"properties an array", batch(`{"name":"a","external_id":"u","properties":[1]}`), 400,
			[]string{"events[0]: properties must be a JSON object"}},
		{"payload a string", batch(`{"name":"a","external_id":"u","payload":"x"}`), 400,
			[]string{"events[0]: payload must be a JSON object"}},
		{"properties and payload", batch(`{"name":"a","external_id":"u","properties":{},"payload":{}}`), 400,
			[]string{"events[0]: properties and payload are mutually exclusive"}},

		// size
		{"event 2024 bytes", batch(sizedEvent(2024)), 202, nil},
		{"event 2025 bytes", batch(sizedEvent(2025)), 400, []string{"events[0]: event is 2025 bytes, over the 2024-byte limit"}},

		// idempotency_key
		{"key lower-case", batch(evKey("a", "u", key)), 202, nil},
		{"key upper-case", batch(evKey("a", "u", strings.ToUpper(key))), 202, nil},
		{"key not a UUID", batch(evKey("a", "u", "order-42")), 400, []string{"events[0]: idempotency_key must be a UUID"}},
		{"key without dashes", batch(evKey("a", "u", strings.ReplaceAll(key, "-", ""))), 400,
			[]string{"events[0]: idempotency_key must be a UUID"}},
		{"key with non-hex", batch(evKey("a", "u", "g23e4567-e89b-12d3-a456-426614174000")), 400,
			[]string{"events[0]: idempotency_key must be a UUID"}},
		{"key a number", batch(`{"name":"a","external_id":"u","idempotency_key":42}`), 400,
			[]string{"events[0]: idempotency_key must be a UUID"}},

		// Several failures are all listed, with their event index.
		{"second event bad", batch(ev("a", "u"), `{"external_id":"u"}`), 400, []string{"events[1]: name is required"}},
		{"two failures in one event", batch(ev("a", "u"), ev("b", "u"), `{"name":5}`), 400,
			[]string{"events[2]: name must be a string", "events[2]: external_id or onesignal_id is required"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(Options{})
			w := post(t, s, tt.body)
			if w.Code != tt.wantCode {
				t.Fatalf("got %d %s, want %d", w.Code, w.Body, tt.wantCode)
			}
			if tt.wantErrs == nil {
				if w.Body.String() != "{}" {
					t.Fatalf("body = %s, want {}", w.Body)
				}
				return
			}
			if got := errorsOf(t, w.Body.String()); !reflect.DeepEqual(got, tt.wantErrs) {
				t.Fatalf("errors = %q, want %q", got, tt.wantErrs)
			}
			if st := s.Stats(); st.BadRequests != 1 || st.Accepted != 0 || len(s.Events()) != 0 {
				t.Fatalf("after 400: stats %+v, %d events; want 1 bad request, nothing recorded", st, len(s.Events()))
			}
		})
	}
}

func TestErrorBodyExact(t *testing.T) {
	w := post(t, New(Options{}), batch(ev("a", "u"), `{"external_id":"u"}`))
	const want = `{"errors":["events[1]: name is required"]}`
	if w.Code != http.StatusBadRequest || w.Body.String() != want {
		t.Fatalf("got %d %s, want 400 %s", w.Code, w.Body, want)
	}
}

func TestBodySize(t *testing.T) {
	s := start(t, Options{CountOnly: true})
	c := newClient(t)
	tests := []struct {
		name     string
		size     int
		wantCode int
	}{
		{"exactly 1 MB", MaxBodyBytes, http.StatusAccepted},
		{"1 MB plus one byte", MaxBodyBytes + 1, http.StatusRequestEntityTooLarge},
		{"2 MB", 2 * MaxBodyBytes, http.StatusRequestEntityTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := sizedBody(tt.size)
			if len(body) != tt.size {
				t.Fatalf("built a %d-byte body, want %d", len(body), tt.size)
			}
			resp, got, err := postHTTP(t, c, s, body)
			if err != nil {
				t.Fatalf("post: %v", err)
			}
			if resp.StatusCode != tt.wantCode {
				t.Fatalf("got %d %s, want %d", resp.StatusCode, got, tt.wantCode)
			}
			if tt.wantCode == http.StatusRequestEntityTooLarge {
				want := []string{"request body is over the 1048576-byte limit"}
				if errs := errorsOf(t, got); !reflect.DeepEqual(errs, want) {
					t.Fatalf("errors = %q, want %q", errs, want)
				}
			}
		})
	}
	if st := s.Stats(); st.TooLarge != 2 || st.Accepted == 0 {
		t.Fatalf("stats %+v: want TooLarge 2 and the 1 MB batch accepted", st)
	}
}

func TestUnknownUsers(t *testing.T) {
	s := New(Options{})
	s.SetUnknownUsers("ghost", "phantom")
	body := batch(
		ev("a", "alice"),
		`{"name":"b","external_id":"ghost","properties":{"event_id":"567491ee-9105-4a87-9cbc-ed78a571645b"}}`,
		`{"name":"c","external_id":"phantom","payload":{"event_id":17}}`,
		`{"name":"d","onesignal_id":"ghost"}`,
	)
	w := post(t, s, body)
	const want = `{"errors":[` +
		`{"event_user_id":"ghost","event_id":"567491ee-9105-4a87-9cbc-ed78a571645b","error":{"code":"not found","title":"failed to find a onesignal_id for user_id ghost"}},` +
		`{"event_user_id":"phantom","error":{"code":"not found","title":"failed to find a onesignal_id for user_id phantom"}}]}`
	if w.Code != http.StatusAccepted || w.Body.String() != want {
		t.Fatalf("got %d %s\nwant 202 %s", w.Code, w.Body, want)
	}
	var names []string
	for _, a := range s.Events() {
		names = append(names, a.Name)
	}
	if !reflect.DeepEqual(names, []string{"a", "d"}) {
		t.Fatalf("recorded %q, want [a d]", names)
	}
	if st := s.Stats(); st.NotFound != 2 || st.Accepted != 2 {
		t.Fatalf("stats %+v: want NotFound 2, Accepted 2", st)
	}

	s.SetUnknownUsers() // clears the set
	if w := post(t, s, batch(ev("e", "ghost"))); w.Body.String() != "{}" {
		t.Fatalf("after clearing unknown users: %s, want {}", w.Body)
	}
}

func TestRecordedFields(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 10, 21, 19, 9, 32, 0, time.UTC)}
	s := New(Options{Now: clock.now})
	const key = "123e4567-e89b-12d3-a456-426614174000"
	post(t, s, batch(ev("first", "u1")))
	post(t, s, `{"events":[{"name":"purchase","external_id":"user_12345","timestamp":"2025-10-21T19:09:32.263Z",`+
		`"idempotency_key":"`+key+`","properties":{"item":"T-shirt","price":24.99}},`+
		`{"name":"open","onesignal_id":"os-1","payload":{"k":"v"}}]}`)
	want := []Accepted{
		{Name: "first", ExternalID: "u1", ReceivedAt: clock.t, Request: 1},
		{Name: "purchase", ExternalID: "user_12345", Timestamp: "2025-10-21T19:09:32.263Z", IdempotencyKey: key,
			Properties: json.RawMessage(`{"item":"T-shirt","price":24.99}`), ReceivedAt: clock.t, Request: 2},
		{Name: "open", OnesignalID: "os-1", Properties: json.RawMessage(`{"k":"v"}`), ReceivedAt: clock.t, Request: 2},
	}
	if got := s.Events(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Events() =\n%+v\nwant\n%+v", got, want)
	}
	if s.Count() != 3 || s.Requests() != 2 {
		t.Fatalf("Count, Requests = %d, %d; want 3, 2", s.Count(), s.Requests())
	}
}

func TestPropertiesSurviveBufferReuse(t *testing.T) {
	s := New(Options{})
	post(t, s, batch(`{"name":"a","external_id":"u","properties":{"keep":"me"}}`))
	for range 10 {
		post(t, s, batch(`{"name":"b","external_id":"u","properties":{"over":"written!!!!!!!!!!!!!!"}}`))
	}
	if got := string(s.Events()[0].Properties); got != `{"keep":"me"}` {
		t.Fatalf("first event's properties became %s", got)
	}
}

func TestEscapedStrings(t *testing.T) {
	s := New(Options{})
	post(t, s, batch(`{"name":"caf\u00e9 \"x\"","external_id":"u\/1"}`))
	ev := s.Events()
	if len(ev) != 1 || ev[0].Name != `café "x"` || ev[0].ExternalID != "u/1" {
		t.Fatalf("Events() = %+v", ev)
	}
}

func TestDedup(t *testing.T) {
	const k1 = "123e4567-e89b-12d3-a456-426614174000"
	const k2 = "123e4567-e89b-12d3-a456-426614174001"
	clock := &fakeClock{t: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	s := New(Options{Now: clock.now})

	steps := []struct {
		name           string
		advance        time.Duration
		body           string
		wantCount      int
		wantDuplicates int
	}{
		{"first key", 0, batch(evKey("a", "u", k1)), 1, 0},
		{"same key in one request", 0, batch(evKey("b", "u", k2), evKey("c", "u", k2), ev("no key", "u")), 3, 1},
		{"repeat later", time.Hour, batch(evKey("d", "u", k1)), 3, 2},
		{"upper-case is the same key", 0, batch(evKey("e", "u", strings.ToUpper(k1))), 3, 3},
		{"events without key never dedup", 0, batch(ev("no key", "u")), 4, 3},
		{"just inside the window", 3*time.Hour - time.Nanosecond, batch(evKey("f", "u", k1)), 4, 4},
		{"window expired", time.Nanosecond, batch(evKey("g", "u", k1)), 5, 4},
	}
	for _, st := range steps {
		clock.t = clock.t.Add(st.advance)
		if w := post(t, s, st.body); w.Code != http.StatusAccepted || w.Body.String() != "{}" {
			t.Fatalf("%s: got %d %s, want 202 {}", st.name, w.Code, w.Body)
		}
		if s.Count() != st.wantCount || s.Duplicates() != st.wantDuplicates {
			t.Fatalf("%s: Count, Duplicates = %d, %d; want %d, %d",
				st.name, s.Count(), s.Duplicates(), st.wantCount, st.wantDuplicates)
		}
	}
	var names []string
	for _, a := range s.Events() {
		names = append(names, a.Name)
	}
	if want := []string{"a", "b", "no key", "no key", "g"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("recorded %q, want %q", names, want)
	}
}

func TestDedupDisabledAndCustomWindow(t *testing.T) {
	const k = "123e4567-e89b-12d3-a456-426614174000"
	tests := []struct {
		name           string
		window         time.Duration
		advance        time.Duration
		wantDuplicates int
	}{
		{"disabled", -1, 0, 0},
		{"1m window, within", time.Minute, 59 * time.Second, 1},
		{"1m window, after", time.Minute, time.Minute, 0},
		{"default 4h, within", 0, 4*time.Hour - time.Second, 1},
		{"default 4h, after", 0, 4 * time.Hour, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &fakeClock{t: time.Unix(1e9, 0)}
			s := New(Options{DedupWindow: tt.window, Now: clock.now})
			post(t, s, batch(evKey("a", "u", k)))
			clock.t = clock.t.Add(tt.advance)
			post(t, s, batch(evKey("a", "u", k)))
			if s.Duplicates() != tt.wantDuplicates || s.Count() != 2-tt.wantDuplicates {
				t.Fatalf("Duplicates, Count = %d, %d; want %d, %d", s.Duplicates(), s.Count(), tt.wantDuplicates, 2-tt.wantDuplicates)
			}
		})
	}
}

func TestDedupPrunesExpiredKeys(t *testing.T) {
	clock := &fakeClock{t: time.Unix(1e9, 0)}
	s := New(Options{Now: clock.now, CountOnly: true})
	for i := range minPrune - 1 {
		post(t, s, batch(evKey("a", "u", fmt.Sprintf("00000000-0000-4000-8000-%012d", i))))
	}
	clock.t = clock.t.Add(DefaultDedupWindow)
	post(t, s, batch(evKey("a", "u", "10000000-0000-4000-8000-000000000000")))
	s.mu.Lock()
	n := len(s.keys)
	s.mu.Unlock()
	if n != 1 || s.Count() != minPrune {
		t.Fatalf("keys kept %d, Count %d; want 1, %d", n, s.Count(), minPrune)
	}
}

func TestCountOnly(t *testing.T) {
	const k = "123e4567-e89b-12d3-a456-426614174000"
	s := New(Options{CountOnly: true})
	s.SetUnknownUsers("ghost")
	post(t, s, batch(ev("a", "u"), evKey("b", "u", k), evKey("c", "u", k), ev("d", "ghost")))
	post(t, s, batch(evKey("e", "u", k), ev("f", "u")))
	if w := post(t, s, batch(`{"name":""}`)); w.Code != http.StatusBadRequest {
		t.Fatalf("CountOnly must still validate: got %d", w.Code)
	}
	want := Stats{Requests: 3, Accepted: 3, Duplicates: 2, NotFound: 1, BadRequests: 1}
	if got := s.Stats(); got != want {
		t.Fatalf("Stats() = %+v, want %+v", got, want)
	}
	if ev := s.Events(); len(ev) != 0 {
		t.Fatalf("Events() in CountOnly = %d events, want none", len(ev))
	}
}

func TestWaitForCount(t *testing.T) {
	s := New(Options{})
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		errc <- s.WaitForCount(ctx, 3)
	}()
	post(t, s, batch(ev("a", "u")))
	select {
	case err := <-errc:
		t.Fatalf("WaitForCount returned early at count 1: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	post(t, s, batch(ev("b", "u"), ev("c", "u")))
	if err := <-errc; err != nil {
		t.Fatalf("WaitForCount: %v", err)
	}

	// Already reached: returns at once.
	if err := s.WaitForCount(context.Background(), 3); err != nil {
		t.Fatalf("WaitForCount reached: %v", err)
	}

	// Not reached: the context error is wrapped.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err := s.WaitForCount(ctx, 4)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitForCount(4) = %v, want DeadlineExceeded", err)
	}
	if want := "wait for 4 accepted events (have 3): context deadline exceeded"; err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
}

func TestOnAcceptOrder(t *testing.T) {
	var (
		mu   sync.Mutex
		seen []string
	)
	s := start(t, Options{OnAccept: func(a Accepted) {
		mu.Lock()
		seen = append(seen, a.Name)
		mu.Unlock()
	}})
	s.SetUnknownUsers("ghost")
	const k = "123e4567-e89b-12d3-a456-426614174000"
	c := newClient(t)

	// Sequential: exactly the accepted events, in order.
	for _, body := range []string{
		batch(ev("a", "u"), evKey("b", "u", k)),
		batch(evKey("dup", "u", k), ev("ghost", "ghost"), ev("c", "u")),
		batch(`{"name":""}`),
	} {
		if _, _, err := postHTTP(t, c, s, body); err != nil {
			t.Fatalf("post: %v", err)
		}
	}
	mu.Lock()
	got := append([]string(nil), seen...)
	mu.Unlock()
	if want := []string{"a", "b", "c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("OnAccept saw %q, want %q", got, want)
	}

	// Concurrent: OnAccept order is the recorded order, and every call has
	// happened once WaitForCount returns.
	const workers, perWorker = 8, 20
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range perWorker {
				if _, _, err := postHTTP(t, c, s, batch(ev(fmt.Sprintf("w%d-%d", w, i), "u"), ev("x", "u"))); err != nil {
					t.Errorf("post: %v", err)
				}
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	total := 3 + workers*perWorker*2
	if err := s.WaitForCount(ctx, total); err != nil {
		t.Fatalf("WaitForCount: %v", err)
	}
	mu.Lock()
	got = append([]string(nil), seen...)
	mu.Unlock()
	wg.Wait()
	var recorded []string
	for _, a := range s.Events() {
		recorded = append(recorded, a.Name)
	}
	if len(got) != total || !reflect.DeepEqual(got, recorded) {
		t.Fatalf("OnAccept saw %d events, recorded %d; orders differ: %v", len(got), len(recorded), !reflect.DeepEqual(got, recorded))
	}
}

func TestRejectHook(t *testing.T) {
	var calls []Accepted
	s := New(Options{Reject: func(a Accepted) string {
		calls = append(calls, a)
		if a.Name == "boom" {
			return "boom is not allowed for " + a.ExternalID
		}
		return ""
	}})
	w := post(t, s, batch(ev("ok", "u1"), ev("boom", "u2"), ev("boom", "u3")))
	want := `{"errors":["boom is not allowed for u2","boom is not allowed for u3"]}`
	if w.Code != http.StatusBadRequest || w.Body.String() != want {
		t.Fatalf("got %d %s, want 400 %s", w.Code, w.Body, want)
	}
	if s.Count() != 0 || len(calls) != 3 || calls[0].Request != 1 || calls[0].ExternalID != "u1" {
		t.Fatalf("Count %d, Reject calls %+v", s.Count(), calls)
	}
	if w := post(t, s, batch(ev("ok", "u1"))); w.Code != http.StatusAccepted || s.Count() != 1 {
		t.Fatalf("without a rejected event: got %d, Count %d", w.Code, s.Count())
	}
	// The built-in validation runs first: Reject never sees an invalid event.
	calls = nil
	post(t, s, batch(ev("boom", "u"), `{"name":""}`))
	if len(calls) != 0 {
		t.Fatalf("Reject called %d times for an invalid request", len(calls))
	}
}

func TestReset(t *testing.T) {
	const k = "123e4567-e89b-12d3-a456-426614174000"
	s := New(Options{})
	s.SetUnknownUsers("ghost")
	s.SetFaults(Faults{Latency: time.Millisecond})
	post(t, s, batch(evKey("a", "u", k), evKey("a", "u", k)))
	s.Reset()
	if st := s.Stats(); st != (Stats{}) || len(s.Events()) != 0 {
		t.Fatalf("after Reset: stats %+v, %d events", st, len(s.Events()))
	}
	w := post(t, s, batch(evKey("a", "u", k), ev("b", "ghost")))
	if w.Code != http.StatusAccepted || s.Count() != 1 || s.Duplicates() != 0 {
		t.Fatalf("after Reset the key is forgotten: got %d, Count %d, Duplicates %d", w.Code, s.Count(), s.Duplicates())
	}
	if s.Stats().NotFound != 1 {
		t.Fatalf("Reset must keep unknown users")
	}
	if got := s.Events()[0].Request; got != 1 {
		t.Fatalf("request numbering after Reset starts at %d, want 1", got)
	}
}

func TestStartAddress(t *testing.T) {
	tests := []struct {
		addr    string
		wantErr bool
	}{
		{"", false},
		{"127.0.0.1:0", false},
		{"localhost:0", false},
		{"127.0.0.2:0", false},
		{"0.0.0.0:0", true},
		{":0", true},
		{"192.0.2.1:0", true},
		{"example.com:0", true},
		{"no-port", true},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			s, err := Start(Options{Addr: tt.addr})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Start(%q) error = %v, want error %v", tt.addr, err, tt.wantErr)
			}
			if err != nil {
				return
			}
			defer s.Close()
			if !strings.HasPrefix(s.URL(), "http://") {
				t.Fatalf("URL() = %q", s.URL())
			}
		})
	}
}

func TestStartServes(t *testing.T) {
	s := start(t, Options{})
	if !strings.HasPrefix(s.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL() = %q, want http://127.0.0.1:port", s.URL())
	}
	resp, body, err := postHTTP(t, newClient(t), s, batch(ev("a", "u")))
	if err != nil || resp.StatusCode != http.StatusAccepted || body != "{}" {
		t.Fatalf("post: %v %v %s", err, resp, body)
	}
	if New(Options{}).URL() != "" {
		t.Fatalf("New(...).URL() must be empty")
	}
}

func TestCloseIsIdempotentAndRefusesLateRequests(t *testing.T) {
	s := New(Options{})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	w := post(t, s, batch(ev("a", "u")))
	if w.Code != http.StatusServiceUnavailable || s.Count() != 0 {
		t.Fatalf("after Close: got %d, Count %d; want 503, 0", w.Code, s.Count())
	}
}
