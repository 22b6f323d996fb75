package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// buildOld builds pgsignal at commit 37942e1 (before this session's work).
func buildOld(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	root, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatal(err)
	}
	arch := exec.Command("sh", "-c", "git -C "+string(bytes.TrimSpace(root))+" archive 37942e1 | tar -x -C "+dir)
	if out, err := arch.CombinedOutput(); err != nil {
		t.Fatalf("git archive: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "pgsignal-old")
	b := exec.Command("go", "build", "-o", bin, "./cmd/pgsignal")
	b.Dir = dir
	if out, err := b.CombinedOutput(); err != nil {
		t.Fatalf("build 37942e1: %v\n%s", err, out)
	}
	return bin
}

// Review: upgrading from 37942e1 changes the idempotency key of every
// event of a transformed table (its one output no longer takes the row's
// key). Events OneSignal accepted but the old process never confirmed (a
// crash, a shutdown_timeout, a lost answer) are sent again after the
// upgrade under new keys, so OneSignal cannot drop them: the users get
// them twice. (Servers on a timeline above 1 have the same problem for
// every table: the timeline was added to the keys.)
func TestReviewUpgradeChangesKeysOfUnconfirmedEvents(t *testing.T) {
	old := buildOld(t)
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	// A proxy that forwards to the fake and, while drop is set, loses the
	// answer (the fake accepted the events; pgsignal never hears it).
	var drop atomic.Bool
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req, _ := http.NewRequest(r.Method, e.fake.URL()+r.URL.Path, bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if drop.Load() {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(data)
	}))
	defer proxy.Close()
	cfgText := `source:
  dsn: "` + e.pg.DSN("") + `"
onesignal:
  app_id: "` + e.fake.AppID() + `"
  api_key: "${TEST_ONESIGNAL_KEY}"
  url: "` + proxy.URL + `"
  timeout: 10s
sink:
  linger: 5ms
  max_backoff: 1s
shutdown_timeout: 5s
server:
  listen: "127.0.0.1:0"
log:
  level: info
  format: json
tables:
  - table: analytics.user_events
    transform: |
      SELECT c.event_name AS name, c.user_id AS external_id, jsonb_build_object('id', c.id) AS properties FROM changes c
`
	cfg := filepath.Join(e.dir, "upgrade.yaml")
	if err := os.WriteFile(cfg, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	// The old version streams.
	saved := binary
	binary = old
	p := e.startProc(cfg)
	binary = saved
	e.waitStreaming(p)
	e.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (1, 'ev', 'u1')`)
	e.waitCount(1, time.Minute, p)
	drop.Store(true)
	e.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) SELECT i, 'ev', 'u' || i FROM generate_series(2, 11) i`)
	// Accepted by OneSignal, answers lost: wait until some arrived.
	for end := time.Now().Add(time.Minute); e.fake.Count() < 5 && time.Now().Before(end); {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	t.Logf("accepted before the kill: %d", e.fake.Count())
	p.kill9(t)
	drop.Store(false)
	// The upgrade: the new version starts on the same slot.
	p = e.startProc(cfg)
	e.waitStreaming(p)
	e.exec(`INSERT INTO analytics.user_events (id, event_name, user_id) VALUES (12, 'after', 'u12')`)
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && !hasUser(e, "u12") {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	p.term(t)
	byRow := map[string]int{}
	for _, ev := range e.fake.Events() {
		var props map[string]any
		_ = json.Unmarshal(ev.Properties, &props)
		b, _ := json.Marshal(props)
		byRow[ev.ExternalID+string(b)]++
	}
	twice := 0
	for _, n := range byRow {
		if n > 1 {
			twice++
		}
	}
	t.Logf("%d events accepted, %d dropped by key, %d rows delivered twice", e.fake.Count(), e.fake.Duplicates(), twice)
	if twice > 0 {
		t.Fatalf("%d rows were delivered twice under different keys after the upgrade", twice)
	}
}

func hasUser(e *env, user string) bool {
	for _, ev := range e.fake.Events() {
		if ev.ExternalID == user {
			return true
		}
	}
	return false
}
