package sink

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// htmlPage is what a web site, a proxy or a captive portal answers.
const htmlPage = "<!DOCTYPE html>\n<html><head><title>Welcome</title></head><body>Sign in to the guest network</body></html>"

// truncatedBody is a 202 body cut in the middle.
const truncatedBody = `{"errors":[{"event_user_id":`

// Only OneSignal's JSON ({} or documented per-event errors) is an
// acceptance; a 2xx with any other body, or a 400 that is not OneSignal's
// {"errors":[...]}, is an *UnexpectedAnswerError, retried.
func TestClientAcceptsOnlyOneSignalJSON(t *testing.T) {
	documented := `{"errors":[{"event_user_id":"abc123","event_id":"567491ee-9105-4a87-9cbc-ed78a571645b","error":{"code":"not found","title":"failed to find a onesignal_id for user_id abc123"}}]}`
	accepted := []struct {
		name   string
		status int
		body   string
		want   Result
	}{
		{"202 {}", 202, `{}`, Result{}},
		{"200 {} (older docs)", 200, `{}`, Result{}},
		{"202 {} with white space", 202, " {}\n", Result{}},
		{"202 no errors", 202, `{"errors":[]}`, Result{}},
		{"202 per-event errors", 202, documented, Result{Failed: []EventError{{ExternalID: "abc123",
			EventID: "567491ee-9105-4a87-9cbc-ed78a571645b", Code: "not found", Title: "failed to find a onesignal_id for user_id abc123"}}}},
		{"202 error without event_id", 202, `{"errors":[{"event_user_id":"u2","error":{"code":"invalid","title":"bad"}}]}`,
			Result{Failed: []EventError{{ExternalID: "u2", Code: "invalid", Title: "bad"}}}},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			ts, _ := answerServer(t, tt.status, map[string]string{"Content-Type": "application/json; charset=utf-8"}, tt.body)
			c := NewClient(ClientConfig{BaseURL: ts.URL, AppID: "app", APIKey: secretKey})
			res, err := c.Send(context.Background(), []byte(`{"events":[]}`))
			if err != nil || !reflect.DeepEqual(res, tt.want) {
				t.Fatalf("Send = %+v, %v; want %+v, nil", res, err, tt.want)
			}
		})
	}

	cut := strings.Repeat("<p>lorem</p>", 30)
	refused := []struct {
		name, contentType string
		status            int
		body              string
		wantBody          string
	}{
		{"200 text/html", "text/html; charset=utf-8", 200, htmlPage, htmlPage},
		{"202 truncated JSON", "application/json", 202, truncatedBody, truncatedBody},
		{"200 empty", "", 200, "", ""},
		{"204 no content", "", 204, "", ""},
		{"202 plain text", "text/plain", 202, "accepted\n", "accepted"},
		{"202 JSON null", "application/json", 202, "null", "null"},
		{"202 JSON array", "application/json", 202, "[]", "[]"},
		{"202 another API's JSON", "application/json", 202, `{"ok":true}`, `{"ok":true}`},
		{"202 {} plus an unknown key", "application/json", 202, `{"id":"x"}`, `{"id":"x"}`},
		{"202 errors not an array", "application/json", 202, `{"errors":"x"}`, `{"errors":"x"}`},
		{"202 errors null", "application/json", 202, `{"errors":null}`, `{"errors":null}`},
		{"202 string error entry", "application/json", 202, `{"errors":["a string"]}`, `{"errors":["a string"]}`},
		{"202 entry without error", "application/json", 202, `{"errors":[{"event_user_id":"u"}]}`, `{"errors":[{"event_user_id":"u"}]}`},
		{"202 entry without event_user_id", "application/json", 202, `{"errors":[{"error":{"code":"x","title":"y"}}]}`, `{"errors":[{"error":{"code":"x","title":"y"}}]}`},
		{"400 text", "text/plain", 400, "Bad Request\n", "Bad Request"},
		{"400 HTML is cut", "text/html", 400, cut, cut[:200] + "…"},
		{"400 JSON without errors", "application/json", 400, `{"error":"bad"}`, `{"error":"bad"}`},
		{"200 page echoing the key", "text/html", 200, "<pre>Authorization: Key " + secretKey + "</pre>", "<pre>Authorization: Key REDACTED</pre>"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{}
			if tt.contentType != "" {
				h["Content-Type"] = tt.contentType
			}
			ts, _ := answerServer(t, tt.status, h, tt.body)
			c := NewClient(ClientConfig{BaseURL: ts.URL, AppID: "app", APIKey: secretKey})
			res, err := c.Send(context.Background(), []byte(`{"events":[]}`))
			var ue *UnexpectedAnswerError
			if !errors.As(err, &ue) {
				t.Fatalf("Send = %+v, %v; want an *UnexpectedAnswerError", res, err)
			}
			wantCT := tt.contentType
			if wantCT == "" && tt.body != "" {
				wantCT = "text/plain; charset=utf-8" // net/http sniffs one
			}
			want := &UnexpectedAnswerError{URL: ts.URL + "/apps/app/custom_events", Status: tt.status, ContentType: wantCT, Body: tt.wantBody}
			if !reflect.DeepEqual(ue, want) {
				t.Errorf("error = %#v\nwant %#v", ue, want)
			}
			if Classify(err) != Retry || Outcome(err) != "unexpected" {
				t.Errorf("Classify = %v, Outcome = %q; want Retry, unexpected", Classify(err), Outcome(err))
			}
			msg := err.Error()
			if strings.Contains(msg, secretKey) || !strings.Contains(msg, ts.URL+"/apps/app/custom_events answered ") ||
				!strings.Contains(msg, "not OneSignal's JSON answer") {
				t.Errorf("error text %q", msg)
			}
		})
	}
}

// The URL in the error hides a password of a proxy written in onesignal.url.
func TestUnexpectedAnswerHidesURLPassword(t *testing.T) {
	ts, _ := answerServer(t, 200, map[string]string{"Content-Type": "text/html"}, htmlPage)
	base := strings.Replace(ts.URL, "http://", "http://proxyuser:proxy-pass-word@", 1)
	c := NewClient(ClientConfig{BaseURL: base, AppID: "app", APIKey: secretKey})
	_, err := c.Send(context.Background(), []byte(`{"events":[]}`))
	var ue *UnexpectedAnswerError
	if !errors.As(err, &ue) || strings.Contains(err.Error(), "proxy-pass-word") || !strings.Contains(ue.URL, "proxyuser:xxxxx@") {
		t.Fatalf("err = %v", err)
	}
}

// switchServer answers like a web page until fixed, then forwards to the
// fake OneSignal.
type switchServer struct {
	fixed    atomic.Bool
	answer   func(w http.ResponseWriter)
	fake     *onesignaltest.Server
	mu       sync.Mutex
	requests int
	seen     chan struct{}
}

func (s *switchServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.fixed.Load() {
		s.fake.ServeHTTP(w, r)
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	s.mu.Lock()
	s.requests++
	s.mu.Unlock()
	select {
	case s.seen <- struct{}{}:
	default:
	}
	s.answer(w)
}

// A sink behind a URL answering 200 text/html, or 202 with a truncated
// body, reports nothing handled and writes no dead letter; it retries,
// logs an error naming the URL and what came back (never the key), and
// delivers everything once the URL answers as OneSignal.
func TestSinkRetriesAnswersThatAreNotOneSignal(t *testing.T) {
	answers := map[string]func(w http.ResponseWriter){
		"200 text/html": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(200)
			_, _ = io.WriteString(w, htmlPage)
		},
		"202 truncated": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(202)
			_, _ = io.WriteString(w, truncatedBody)
		},
		"400 text/html": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(400)
			_, _ = io.WriteString(w, htmlPage)
		},
	}
	for name, answer := range answers {
		t.Run(name, func(t *testing.T) {
			fake := onesignaltest.New(onesignaltest.Options{APIKey: secretKey})
			sw := &switchServer{answer: answer, fake: fake, seen: make(chan struct{}, 1)}
			ts := httptest.NewServer(sw)
			t.Cleanup(func() {
				ts.Close()
				fake.Close()
			})
			core, logs := observer.New(zapcore.InfoLevel)
			m := newRecordingMetrics()
			dl := &memLetters{}
			client := NewClient(ClientConfig{BaseURL: ts.URL, AppID: fake.AppID(), APIKey: secretKey})
			s, h := startSink(t, Config{Linger: time.Millisecond, Concurrency: 2, MaxBackoff: 5 * time.Millisecond,
				Logger: zap.New(core), Metrics: m}, client, dl)
			const n = 20
			for i := uint64(1); i <= n; i++ {
				submit(t, s, newEvent(i, []string{"a", "b", "c"}[i%3], 0))
			}
			// Wait for several answers, then more: still nothing handled.
			for sw.count() < 10 {
				waitSignal(t, sw.seen, 10*time.Second, "a request")
			}
			if got := h.get(); len(got) != 0 {
				t.Fatalf("%d events reported handled after answers that are not OneSignal's: %v", len(got), got)
			}
			if letters := dl.get(); len(letters) != 0 {
				t.Fatalf("%d dead letters written, want none: %+v", len(letters), letters)
			}
			select {
			case err := <-s.Err():
				t.Fatalf("sink stopped: %v", err)
			default:
			}
			entries := logs.FilterMessageSnippet("onesignal.url did not answer as OneSignal").All()
			if len(entries) == 0 {
				t.Fatalf("no error logged; logs: %v", logs.All())
			}
			e := entries[0]
			f := e.ContextMap()
			if e.Level != zapcore.ErrorLevel || f["url"] != ts.URL+"/apps/"+fake.AppID()+"/custom_events" || f["status"] == nil ||
				f["content_type"] == "" || f["body"] == "" || !strings.Contains(f["fix"].(string), "onesignal.url") {
				t.Errorf("log entry %s %v", e.Level, f)
			}
			for _, le := range logs.All() {
				for _, v := range le.ContextMap() {
					if s, ok := v.(string); ok && strings.Contains(s, secretKey) {
						t.Fatalf("the API key is in the log: %v", le.ContextMap())
					}
				}
			}
			sw.fixed.Store(true)
			exactlyOnce(t, h.wait(t, n, 10*time.Second), seqRange(1, n))
			if fake.Count() != n {
				t.Errorf("fake accepted %d events, want %d", fake.Count(), n)
			}
			if _, _, retries, _ := m.snapshot(); retries["unexpected"] < 10 {
				t.Errorf("retries by reason %v, want at least 10 unexpected", retries)
			}
		})
	}
}

func (s *switchServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}
