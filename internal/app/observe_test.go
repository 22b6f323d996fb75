package app

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// /healthz, /readyz and /metrics report the stream; a sink that makes no
// progress for the stall timeout fails /readyz and logs one error.
func TestObservability(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	cfg := h.config()
	h.stallTimeout = 2 * time.Second
	r := h.start(cfg)
	srv := httptest.NewServer(r.app.Handler())
	defer srv.Close()
	if code, _ := get(t, srv, "/healthz"); code != 200 {
		t.Fatalf("/healthz %d", code)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get(t, srv, "/readyz")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.insertBatch(0, 25)
	h.waitCount(25)
	// The fake counts an event before pgsignal has read the answer.
	var metrics string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, metrics = get(t, srv, "/metrics"); strings.Contains(metrics, "pgsignal_queue_events 0") {
			break
		}
	}
	for _, want := range []string{
		`pgsignal_events_delivered_total{table="analytics.user_events"} 25`, `pgsignal_events_dead_lettered_total{table="analytics.user_events"} 0`, "pgsignal_events_received_total 25",
		"pgsignal_replication_connected 1", `pgsignal_onesignal_request_duration_seconds_count{outcome="2xx"}`,
		"pgsignal_commit_to_accepted_seconds_count 25", "pgsignal_queue_events 0", "pgsignal_stalled 0",
	} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("metrics lack %q:\n%s", want, metrics)
		}
	}
	// OneSignal stops answering: the stall is detected.
	h.fake.SetFaults(onesignaltest.Faults{StallRate: 1, Stall: 8 * time.Second})
	h.insertBatch(25, 5)
	deadline = time.Now().Add(6 * time.Second)
	for {
		code, body := get(t, srv, "/readyz")
		if code == 503 && strings.Contains(body, "stalled") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz did not report the stall: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := h.logs.FilterMessage("stalled: pending events make no progress").Len(); n != 1 {
		t.Fatalf("stall logged %d times, want 1", n)
	}
	h.fake.SetFaults(onesignaltest.Faults{})
	h.waitCount(30)
	deadline = time.Now().Add(5 * time.Second)
	for {
		if code, _ := get(t, srv, "/readyz"); code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not recover after the stall")
		}
		time.Sleep(100 * time.Millisecond)
	}
	r.stop(t)
}
