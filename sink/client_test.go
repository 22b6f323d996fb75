package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

const secretKey = "os_v2_app_s3cr3t-k3y-do-not-log"

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want Kind
	}{
		{"network error", errors.New("connection reset by peer"), Retry},
		{"context deadline", context.DeadlineExceeded, Retry},
		{"400", &StatusError{Status: 400}, BadRequest},
		{"413", &StatusError{Status: 413}, BadRequest},
		{"401", &StatusError{Status: 401}, Unauthorized},
		{"403", &StatusError{Status: 403}, Unauthorized},
		{"429", &StatusError{Status: 429}, Retry},
		{"500", &StatusError{Status: 500}, Retry},
		{"502", &StatusError{Status: 502}, Retry},
		{"503", &StatusError{Status: 503}, Retry},
		{"504", &StatusError{Status: 504}, Retry},
		{"404", &StatusError{Status: 404}, Fatal},
		{"405", &StatusError{Status: 405}, Fatal},
		{"409", &StatusError{Status: 409}, Fatal},
		{"422", &StatusError{Status: 422}, Fatal},
		{"301", &StatusError{Status: 301}, Fatal},
		{"wrapped 403", fmt.Errorf("post: %w", &StatusError{Status: 403}), Unauthorized},
		{"wrapped 400", fmt.Errorf("a: %w", fmt.Errorf("b: %w", &StatusError{Status: 400})), BadRequest},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("%s: Classify = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestOutcome(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, "2xx"},
		{errors.New("reset"), "error"},
		{&StatusError{Status: 400}, "400"},
		{&StatusError{Status: 413}, "400"},
		{&StatusError{Status: 401}, "401/403"},
		{&StatusError{Status: 403}, "401/403"},
		{&StatusError{Status: 429}, "429"},
		{&StatusError{Status: 500}, "5xx"},
		{&StatusError{Status: 503}, "5xx"},
		{&StatusError{Status: 404}, "other"},
		{fmt.Errorf("x: %w", &StatusError{Status: 429}), "429"},
	}
	for _, tt := range tests {
		if got := Outcome(tt.err); got != tt.want {
			t.Errorf("Outcome(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		err  error
		want time.Duration
	}{
		{errors.New("x"), 0},
		{&StatusError{Status: 429, RetryAfter: 3 * time.Second}, 3 * time.Second},
		{fmt.Errorf("w: %w", &StatusError{Status: 503, RetryAfter: time.Second}), time.Second},
		{&StatusError{Status: 429}, 0},
	}
	for _, tt := range tests {
		if got := RetryAfter(tt.err); got != tt.want {
			t.Errorf("RetryAfter(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestStatusErrorText(t *testing.T) {
	tests := []struct {
		err  *StatusError
		want string
	}{
		{&StatusError{Status: 500}, "OneSignal answered 500"},
		{&StatusError{Status: 400, Errors: []string{"events[0]: name is required"}}, "OneSignal answered 400: events[0]: name is required"},
		{&StatusError{Status: 400, Errors: []string{"a", "b"}}, "OneSignal answered 400: a; b"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestAppendBody(t *testing.T) {
	tests := []struct {
		dst    string
		events []string
		want   string
	}{
		{"", nil, `{"events":[]}`},
		{"", []string{`{"a":1}`}, `{"events":[{"a":1}]}`},
		{"", []string{`{"a":1}`, `{"b":2}`, `{}`}, `{"events":[{"a":1},{"b":2},{}]}`},
		{"prefix", []string{`{}`}, `prefix{"events":[{}]}`},
	}
	for _, tt := range tests {
		var evs [][]byte
		for _, e := range tt.events {
			evs = append(evs, []byte(e))
		}
		if got := AppendBody([]byte(tt.dst), evs); string(got) != tt.want {
			t.Errorf("AppendBody(%q, %q) = %s, want %s", tt.dst, tt.events, got, tt.want)
		}
		if len(AppendBody(nil, evs)) != bodyOverhead+len(strings.Join(tt.events, ",")) {
			t.Errorf("bodyOverhead %d does not match the body of %q", bodyOverhead, tt.events)
		}
	}
}

// captured is one request a test server received.
type captured struct {
	method, path, auth, contentType, accept string
	body                                    string
}

// answerServer answers every request with status, headers and body, and
// records what it received.
func answerServer(t *testing.T, status int, header map[string]string, body string) (*httptest.Server, func() []captured) {
	t.Helper()
	var (
		mu  sync.Mutex
		got []captured
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, captured{r.Method, r.URL.Path, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), r.Header.Get("Accept"), string(b)})
		mu.Unlock()
		for k, v := range header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(ts.Close)
	return ts, func() []captured {
		mu.Lock()
		defer mu.Unlock()
		return append([]captured(nil), got...)
	}
}

func TestClientRequest(t *testing.T) {
	ts, got := answerServer(t, http.StatusAccepted, nil, `{}`)
	c := NewClient(ClientConfig{BaseURL: ts.URL + "/", AppID: "5eb5a37e-b458-11e3-ac11-000c2940e62c", APIKey: secretKey})
	body := AppendBody(nil, [][]byte{[]byte(`{"name":"a","external_id":"u"}`)})
	res, err := c.Send(context.Background(), body)
	if err != nil || len(res.Failed) != 0 {
		t.Fatalf("Send = %+v, %v", res, err)
	}
	reqs := got()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	want := captured{
		method: "POST", path: "/apps/5eb5a37e-b458-11e3-ac11-000c2940e62c/custom_events",
		auth: "Key " + secretKey, contentType: "application/json", accept: "application/json", body: string(body),
	}
	if reqs[0] != want {
		t.Errorf("request\n  %+v\nwant\n  %+v", reqs[0], want)
	}
}

func TestClientAgainstFake(t *testing.T) {
	srv, c := startFake(t, onesignaltest.Options{})
	srv.SetUnknownUsers("ghost")
	body := AppendBody(nil, [][]byte{
		newEvent(1, "alive", 0).JSON,
		[]byte(`{"name":"x","external_id":"ghost","properties":{"event_id":"ev-1"}}`),
	})
	res, err := c.Send(context.Background(), body)
	if err != nil {
		t.Fatal(err)
	}
	want := []EventError{{ExternalID: "ghost", EventID: "ev-1", Code: "not found", Title: "failed to find a onesignal_id for user_id ghost"}}
	if !reflect.DeepEqual(res.Failed, want) {
		t.Errorf("Failed = %+v, want %+v", res.Failed, want)
	}
	if srv.Count() != 1 {
		t.Errorf("fake accepted %d events, want 1", srv.Count())
	}
}

func TestClientAnswers(t *testing.T) {
	tests := []struct {
		name   string
		status int
		header map[string]string
		body   string
		want   Result
		err    *StatusError // nil: success
	}{
		{"202 {}", 202, nil, `{}`, Result{}, nil},
		{"202 per-event errors", 202, nil,
			`{"errors":[{"event_user_id":"abc123","event_id":"567491ee-9105-4a87-9cbc-ed78a571645b","error":{"code":"not found","title":"failed to find a onesignal_id for user_id abc123"}},{"event_user_id":"u2","error":{"code":"invalid","title":"bad"}}]}`,
			Result{Failed: []EventError{
				{ExternalID: "abc123", EventID: "567491ee-9105-4a87-9cbc-ed78a571645b", Code: "not found", Title: "failed to find a onesignal_id for user_id abc123"},
				{ExternalID: "u2", Code: "invalid", Title: "bad"},
			}}, nil},
		{"400 strings", 400, nil, `{"errors":["events[0]: name is required","events[3]: timestamp \"x\" is not an ISO 8601 date-time"]}`, Result{},
			&StatusError{Status: 400, Errors: []string{"events[0]: name is required", `events[3]: timestamp "x" is not an ISO 8601 date-time`}}},
		{"400 objects", 400, nil, `{"errors":[{"code":"invalid_name","title":"Name too long"},{"title":"only a title"},{"code":"only_code"}]}`, Result{},
			&StatusError{Status: 400, Errors: []string{"invalid_name: Name too long", ": only a title", "only_code:"}}},
		{"400 other values", 400, nil, `{"errors":[42,{"x":1},null]}`, Result{},
			&StatusError{Status: 400, Errors: []string{"42", `{"x":1}`, ""}}}, // null decodes as an empty string
		{"403", 403, nil, onesignaltest.AccessDeniedBody, Result{},
			&StatusError{Status: 403, Errors: []string{"Access denied.  Please include an 'Authorization: ...' header with a valid API key (https://documentation.onesignal.com/docs/en/keys-and-ids#api-keys)."}}},
		{"429 Retry-After seconds", 429, map[string]string{"Retry-After": "3"}, onesignaltest.RateLimitBody, Result{},
			&StatusError{Status: 429, Errors: []string{"API rate limit exceeded."}, RetryAfter: 3 * time.Second}},
		{"429 Retry-After with spaces", 429, map[string]string{"Retry-After": " 2 "}, `{}`, Result{}, &StatusError{Status: 429, RetryAfter: 2 * time.Second}},
		{"429 Retry-After zero", 429, map[string]string{"Retry-After": "0"}, `{}`, Result{}, &StatusError{Status: 429}},
		{"429 Retry-After garbage", 429, map[string]string{"Retry-After": "soon"}, `{}`, Result{}, &StatusError{Status: 429}},
		{"429 Retry-After negative", 429, map[string]string{"Retry-After": "-5"}, `{}`, Result{}, &StatusError{Status: 429}},
		{"500 empty", 500, nil, ``, Result{}, &StatusError{Status: 500}},
		{"503 text", 503, nil, "upstream unavailable", Result{}, &StatusError{Status: 503, Errors: []string{"upstream unavailable"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts, _ := answerServer(t, tt.status, tt.header, tt.body)
			c := NewClient(ClientConfig{BaseURL: ts.URL, AppID: "app", APIKey: secretKey})
			res, err := c.Send(context.Background(), []byte(`{"events":[]}`))
			if tt.err == nil {
				if err != nil {
					t.Fatalf("Send: %v", err)
				}
				if !reflect.DeepEqual(res, tt.want) {
					t.Errorf("Result = %+v, want %+v", res, tt.want)
				}
				return
			}
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v, want a *StatusError", err)
			}
			if !reflect.DeepEqual(se, tt.err) {
				t.Errorf("StatusError = %#v, want %#v", se, tt.err)
			}
			if strings.Contains(err.Error(), secretKey) {
				t.Errorf("error shows the API key: %v", err)
			}
		})
	}
}

func TestClientRetryAfterHTTPDate(t *testing.T) {
	at := time.Now().Add(3 * time.Second).UTC().Format(http.TimeFormat)
	ts, _ := answerServer(t, 429, map[string]string{"Retry-After": at}, `{}`)
	c := NewClient(ClientConfig{BaseURL: ts.URL, AppID: "app", APIKey: secretKey})
	_, err := c.Send(context.Background(), []byte(`{"events":[]}`))
	// HTTP dates have whole seconds: the wait is between 2 and 3 seconds.
	if ra := RetryAfter(err); ra <= 1*time.Second || ra > 3*time.Second {
		t.Errorf("RetryAfter = %v for %q, want about 3s", ra, at)
	}
}

func TestClientRetryAfterInThePast(t *testing.T) {
	ts, _ := answerServer(t, 429, map[string]string{"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, `{}`)
	c := NewClient(ClientConfig{BaseURL: ts.URL, AppID: "app", APIKey: secretKey})
	_, err := c.Send(context.Background(), []byte(`{"events":[]}`))
	// A date in the past is a negative wait, which the sink ignores.
	if Classify(err) != Retry || RetryAfter(err) > 0 {
		t.Errorf("err = %v, RetryAfter %v; want a retryable 429 without a positive wait", err, RetryAfter(err))
	}
}

func TestClientRefusesBodyOverOneMegabyte(t *testing.T) {
	ts, got := answerServer(t, 202, nil, `{}`)
	c := NewClient(ClientConfig{BaseURL: ts.URL, AppID: "app", APIKey: secretKey})
	if _, err := c.Send(context.Background(), make([]byte, MaxBodyBytes)); err != nil {
		t.Errorf("a body of exactly 1 MiB: %v", err)
	}
	_, err := c.Send(context.Background(), make([]byte, MaxBodyBytes+1))
	if want := "OneSignal answered 413: request body of 1048577 bytes exceeds OneSignal's 1048576-byte limit (not sent)"; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
	if n := len(got()); n != 1 {
		t.Errorf("%d requests sent, want 1 (the oversized body must not be sent)", n)
	}
}

func TestClientOversizedBodyIsNotRetried(t *testing.T) {
	c := NewClient(ClientConfig{BaseURL: "http://127.0.0.1:1", AppID: "app", APIKey: secretKey})
	_, err := c.Send(context.Background(), make([]byte, MaxBodyBytes+1))
	if Classify(err) == Retry {
		t.Errorf("Classify(%v) = Retry: an oversized body can never succeed", err)
	}
}

func TestClientErrorTextIsValidUTF8(t *testing.T) {
	ts, _ := answerServer(t, 400, nil, strings.Repeat("a", 199)+"éééé")
	c := NewClient(ClientConfig{BaseURL: ts.URL, AppID: "app", APIKey: secretKey})
	_, err := c.Send(context.Background(), []byte(`{"events":[]}`))
	if err == nil || !utf8.ValidString(err.Error()) {
		t.Errorf("error text %q is not valid UTF-8", err)
	}
}

func TestClientTimeout(t *testing.T) {
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer ts.Close()
	defer close(release)
	c := NewClient(ClientConfig{BaseURL: ts.URL, AppID: "app", APIKey: secretKey, Timeout: 50 * time.Millisecond})
	start := time.Now()
	_, err := c.Send(context.Background(), []byte(`{"events":[]}`))
	if err == nil {
		t.Fatal("no error from a server that never answers")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Send returned after %v with a 50ms time-out", d)
	}
	if Classify(err) != Retry || !strings.Contains(err.Error(), "timed out") || strings.Contains(err.Error(), secretKey) {
		t.Errorf("err = %v (kind %v), want a retryable time-out without the key", err, Classify(err))
	}
}

func TestClientContextCancel(t *testing.T) {
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer ts.Close()
	defer close(release)
	c := NewClient(ClientConfig{BaseURL: ts.URL, AppID: "app", APIKey: secretKey})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Send(ctx, []byte(`{"events":[]}`)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
}

func TestClientNeverShowsTheKey(t *testing.T) {
	// A closed port, a reset, a 403 and a 500: none of the errors may show
	// the key.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()

	srv, _ := startFake(t, onesignaltest.Options{APIKey: secretKey})
	var errs []error
	send := func(base, key string) {
		c := NewClient(ClientConfig{BaseURL: base, AppID: srv.AppID(), APIKey: key, Timeout: time.Second})
		_, err := c.Send(context.Background(), AppendBody(nil, [][]byte{newEvent(1, "u", 0).JSON}))
		errs = append(errs, err)
	}
	send(closed, secretKey)
	send(srv.URL(), secretKey+"-wrong")
	srv.SetFaults(onesignaltest.Faults{ResetRate: 1})
	send(srv.URL(), secretKey)
	srv.SetFaults(onesignaltest.Faults{Rate500: 1})
	send(srv.URL(), secretKey)
	for i, err := range errs {
		if err == nil {
			t.Errorf("case %d: no error", i)
			continue
		}
		if strings.Contains(err.Error(), secretKey) || strings.Contains(fmt.Sprintf("%+v %#v", err, err), secretKey) {
			t.Errorf("case %d: error shows the API key: %v", i, err)
		}
	}
}
