package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// notOneSignal answers every request like a web page or a broken proxy
// until it is fixed; then it hands requests to the fake OneSignal.
type notOneSignal struct {
	fake     http.Handler
	mu       sync.Mutex
	status   int
	ctype    string
	body     string
	fixed    atomic.Bool
	answered atomic.Int64
}

func (n *notOneSignal) set(status int, ctype, body string) {
	n.mu.Lock()
	n.status, n.ctype, n.body = status, ctype, body
	n.mu.Unlock()
}

func (n *notOneSignal) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if n.fixed.Load() {
		n.fake.ServeHTTP(w, r)
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	n.mu.Lock()
	status, ctype, body := n.status, n.ctype, n.body
	n.mu.Unlock()
	w.Header().Set("Content-Type", ctype)
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
	n.answered.Add(1)
}

const (
	portalPage = "<!DOCTYPE html><html><head><title>Guest Wi-Fi</title></head><body>Accept the terms to continue</body></html>"
	cutJSON    = `{"errors":[{"event_user_id":`
)

// startNotOneSignal starts a local server answering status/ctype/body.
func startNotOneSignal(t *testing.T, fake http.Handler, status int, ctype, body string) (*notOneSignal, string) {
	t.Helper()
	n := &notOneSignal{fake: fake}
	n.set(status, ctype, body)
	ts := httptest.NewServer(n)
	t.Cleanup(ts.Close)
	return n, ts.URL
}

// withURL rewrites config file path to send to url and adds extra at the
// top level.
func (e *env) withURL(path, url, extra string) {
	e.t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		e.t.Fatal(err)
	}
	old := fmt.Sprintf("url: %q", e.fake.URL())
	if !strings.Contains(string(b), old) {
		e.t.Fatalf("no onesignal.url in %s", path)
	}
	s := strings.Replace(string(b), old, fmt.Sprintf("url: %q", url), 1)
	if err := os.WriteFile(path, []byte(s+extra), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// listenAddr returns the address p serves /readyz on, from its log.
func listenAddr(t *testing.T, p *proc) string {
	t.Helper()
	waitLog(t, p, `"listen":"`, 30*time.Second)
	for _, line := range strings.Split(readFile(t, p.log), "\n") {
		var l struct{ Listen string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Listen != "" {
			return l.Listen
		}
	}
	t.Fatalf("no listen address in the log:\n%s", p.tail())
	return ""
}

// readyz returns the status and body of GET /readyz.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatalf("GET /readyz: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// waitReadyz waits until /readyz answers status.
func waitReadyz(t *testing.T, p *proc, addr string, status int, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := readyz(t, addr)
		if code == status {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q after %v, want %d\n%s", code, body, timeout, status, p.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// slotConfirmed returns the slot's confirmed_flush_lsn as a number.
func (e *env) slotConfirmed() int64 {
	e.t.Helper()
	return e.queryInt(`SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = 'pgsignal'`)
}

// onesignal.url answering 200 text/html, then 202 with a truncated body:
// nothing is confirmed (the slot stays before the first row), /readyz
// reports the stall, the error log names the URL and what came back (never
// the key), and pgsignal keeps retrying: once the URL answers as OneSignal,
// every row arrives exactly once.
func TestRunNotOneSignalConfirmsNothing(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	srv, url := startNotOneSignal(t, e.fake, 200, "text/html; charset=utf-8", portalPage)
	cfg := e.writeConfig("full", "  batch_size: 50")
	e.withURL(cfg, url, "stall_timeout: 3s\n")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	addr := listenAddr(t, p)
	waitReadyz(t, p, addr, 200, 30*time.Second)

	const total = 300
	beforeCommit := e.insertRowsLSN(0, total)

	body := waitReadyz(t, p, addr, 503, time.Minute)
	waitLog(t, p, "onesignal.url did not answer as OneSignal", 30*time.Second)
	log := readFile(t, p.log)
	for _, want := range []string{`"url":"` + url + "/apps/" + e.fake.AppID() + `/custom_events"`, `"status":200`,
		`"content_type":"text/html; charset=utf-8"`, `"body":"<!DOCTYPE html><html><head><title>Guest Wi-Fi`,
		`"fix":"set onesignal.url to https://api.onesignal.com`, `stalled: pending events make no progress`} {
		if !strings.Contains(log, want) {
			t.Fatalf("log lacks %s:\n%s", want, p.tail())
		}
	}
	if !strings.Contains(body, "stalled") {
		t.Fatalf("/readyz body %q", body)
	}

	// A 202 with a truncated body is no better.
	srv.set(202, "application/json", cutJSON)
	seen := srv.answered.Load()
	waitLog(t, p, `"body":"{\"errors\":[{\"event_user_id\":"`, 30*time.Second)
	for srv.answered.Load() < seen+3 {
		time.Sleep(50 * time.Millisecond)
	}
	if code, _ := readyz(t, addr); code != 503 {
		t.Fatalf("/readyz %d while nothing is delivered", code)
	}
	confirmed := e.slotConfirmed()
	t.Logf("figures: %d answers that were not OneSignal's; slot confirmed %d bytes before the rows' commit; fake holds %d events",
		srv.answered.Load(), beforeCommit-confirmed, e.fake.Count())
	if confirmed > beforeCommit {
		t.Fatalf("slot confirmed to %d, past %d, a position before the rows' commit, with nothing delivered", confirmed, beforeCommit)
	}
	if e.fake.Count() != 0 {
		t.Fatalf("fake holds %d events", e.fake.Count())
	}
	if p.exited() {
		t.Fatalf("pgsignal exited: %v\n%s", p.err, p.tail())
	}

	// The URL is fixed (the proxy now forwards): pgsignal was retrying.
	srv.fixed.Store(true)
	e.waitCount(total, time.Minute, p)
	waitReadyz(t, p, addr, 200, time.Minute)
	p.term(t)
	e.checkExactlyOnce(total)
	if after := e.slotConfirmed(); after <= beforeCommit {
		t.Fatalf("slot confirmed to %d, before the rows' commit (past %d), after every row was delivered", after, beforeCommit)
	}
	log = readFile(t, p.log)
	if strings.Contains(log, e.fake.APIKey()) {
		t.Fatal("the API key is in the log")
	}
	if n := strings.Count(log, `"msg":"dead letter"`); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}

// insertRowsLSN inserts rows like insertRows, in one transaction, and
// returns the WAL insert position just before its commit: confirming the
// transaction moves the slot past it.
func (e *env) insertRowsLSN(from, count int) int64 {
	e.t.Helper()
	ctx := context.Background()
	tx, err := e.pool.Begin(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `INSERT INTO analytics.user_events (event_name, user_id, event_data)
SELECT 'ev', 'user_' || (i % 97), jsonb_build_object('n', i) FROM generate_series($1::int, $2::int) AS i`, from, from+count-1); err != nil {
		e.t.Fatal(err)
	}
	var lsn int64
	if err := tx.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn`).Scan(&lsn); err != nil {
		e.t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		e.t.Fatal(err)
	}
	return lsn
}

// exited reports whether p has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// `pgsignal check` fails when onesignal.url is not OneSignal (a web page, a
// truncated body) and passes when OneSignal answers the empty probe batch
// with its JSON 400.
func TestCheckNotOneSignal(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{RejectEmptyBatch: true})
	key := "TEST_ONESIGNAL_KEY=" + e.fake.APIKey()
	_, html := startNotOneSignal(t, e.fake, 200, "text/html; charset=utf-8", portalPage)
	_, cut := startNotOneSignal(t, e.fake, 202, "application/json", cutJSON)
	endpoint := "/apps/" + e.fake.AppID() + "/custom_events"
	cases := []struct {
		name, url string
		code      int
		want      []string
	}{
		{"200 text/html", html, 1, []string{
			"✗ onesignal credentials: not OneSignal's JSON answer: " + html + endpoint + ` answered 200 (text/html; charset=utf-8, body "<!DOCTYPE html><html><head><title>Guest Wi-Fi</title>`,
			"\n    fix: set onesignal.url to OneSignal's API, https://api.onesignal.com (or to a proxy that forwards to it unchanged)",
			"FAILED: 1 of "}},
		{"202 truncated", cut, 1, []string{
			"✗ onesignal credentials: not OneSignal's JSON answer: " + cut + endpoint + ` answered 202 (application/json, body "{\"errors\":[{\"event_user_id\":")`,
			"\n    fix: set onesignal.url to OneSignal's API",
			"FAILED: 1 of "}},
		{"JSON 400 to the empty batch", e.fake.URL(), 0, []string{
			"✓ onesignal credentials: OneSignal accepted the API key for app " + e.fake.AppID() +
				" (it refused the empty probe batch: events must contain at least one event; no event created)"}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := e.writeCheckConfig(fmt.Sprintf("endpoint%d", i), e.pg.DSN(""), "full", defaultTables)
			e.withURL(cfg, c.url, "")
			out, errOut, code := runCheckCLI(t, []string{key}, "check", "--config", cfg)
			t.Logf("check:\n%s", out)
			if code != c.code {
				t.Fatalf("exit %d, want %d\n%s%s", code, c.code, out, errOut)
			}
			assertLines(t, out, c.want...)
			assertEveryFailHasFix(t, out)
			if strings.Contains(out+errOut, e.fake.APIKey()) {
				t.Fatal("the API key is in the output")
			}
		})
	}
	if n := e.fake.Count(); n != 0 {
		t.Fatalf("check created %d events", n)
	}
}
