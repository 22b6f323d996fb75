package check

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// The probe passes on OneSignal's JSON answers only: a 202 {} or a JSON 400
// refusing the empty batch (key and app were accepted). A web page, a
// truncated body or a 400 that is not OneSignal's fails, naming the URL and
// what came back; a wrong app still fails behind a strict server.
func TestOneSignalProbeAnswers(t *testing.T) {
	strict, err := onesignaltest.Start(onesignaltest.Options{RejectEmptyBatch: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { strict.Close() })
	answer := func(status int, contentType, body string) string {
		ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", contentType)
			w.WriteHeader(status)
			_, _ = io.WriteString(w, body)
		}))
		t.Cleanup(ts.Close)
		return ts.URL
	}
	html := answer(200, "text/html; charset=utf-8", "<!DOCTYPE html><html><body>Welcome to the guest network</body></html>")
	truncated := answer(202, "application/json", `{"errors":[{"event_user_id":`)
	html400 := answer(400, "text/html", "<html><body>400 Bad Request</body></html>")
	cases := []struct {
		name   string
		url    string
		mutate func(*config.Config)
		status Status
		want   []string
		fix    string
	}{
		{"strict server refuses the empty batch with a JSON 400", strict.URL(), func(*config.Config) {}, Pass,
			[]string{"OneSignal accepted the API key for app " + onesignaltest.DefaultAppID, "refused the empty probe batch: events must contain at least one event"}, ""},
		{"strict server, wrong app", strict.URL(), func(c *config.Config) { c.OneSignal.AppID = "00000000-0000-4000-8000-000000000000" }, Fail,
			[]string{"OneSignal answered 400: app_id not found"}, "onesignal.app_id"},
		{"strict server, wrong key", strict.URL(), func(c *config.Config) { c.OneSignal.APIKey = "os_v2_app_wrong-key" }, Fail,
			[]string{"API key refused: OneSignal answered 403"}, "onesignal.api_key"},
		{"200 text/html", html, func(*config.Config) {}, Fail,
			[]string{"not OneSignal's JSON answer: " + html + "/apps/" + onesignaltest.DefaultAppID + "/custom_events answered 200 (text/html; charset=utf-8, body \"<!DOCTYPE html><html><body>Welcome"}, "set onesignal.url to OneSignal's API"},
		{"202 truncated JSON", truncated, func(*config.Config) {}, Fail,
			[]string{"not OneSignal's JSON answer: " + truncated + "/apps/", "answered 202 (application/json, body \"{\\\"errors\\\":[{\\\"event_user_id\\\":\")"}, "set onesignal.url"},
		{"400 text/html", html400, func(*config.Config) {}, Fail,
			[]string{"not OneSignal's JSON answer: ", "answered 400 (text/html"}, "set onesignal.url"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig("", nil)
			cfg.OneSignal.URL = c.url
			c.mutate(cfg)
			r := &runner{opts: Options{Config: cfg}, cfg: cfg, done: map[string]bool{}}
			r.oneSignal(context.Background())
			it := r.items[0]
			if it.Status != c.status || !strings.Contains(it.Fix, c.fix) {
				t.Fatalf("%+v", it)
			}
			for _, w := range c.want {
				if !strings.Contains(it.Detail, w) {
					t.Fatalf("detail lacks %q: %+v", w, it)
				}
			}
			if strings.Contains(it.Detail+it.Fix, "wrong-key") || strings.Contains(it.Detail+it.Fix, onesignaltest.DefaultAPIKey) {
				t.Fatalf("the key in the item: %+v", it)
			}
		})
	}
	if strict.Count() != 0 {
		t.Fatalf("the check created %d events", strict.Count())
	}
}
