package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// Issue 15: the delivery ledger. A crash resends only what was in flight at
// that instant; a graceful restart resends nothing.

// ledgerFaults is the flaky OneSignal: 10% 500s, 5% 429s with
// Retry-After 1, 2% one-second stalls and 2% connection resets.
func ledgerFaults(seed int64) onesignaltest.Faults {
	return onesignaltest.Faults{Rate500: 0.10, Rate429: 0.05, RetryAfter: time.Second,
		StallRate: 0.02, Stall: time.Second, ResetRate: 0.02, Seed: seed}
}

// faultEvents is the number of events of a ledger fault test: def, or
// PGSIGNAL_FAULT_EVENTS (e.g. 100000 for the figure).
func faultEvents(t *testing.T, def int) int {
	t.Helper()
	s := os.Getenv("PGSIGNAL_FAULT_EVENTS")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 2000 || n%500 != 0 {
		t.Fatalf("PGSIGNAL_FAULT_EVENTS=%q: want a multiple of 500, at least 2000", s)
	}
	return n
}

// checkUserOrder asserts that each user's events were first accepted in
// commit (row) order.
func (e *env) checkUserOrder() {
	e.t.Helper()
	last := map[string]int{}
	for _, ev := range e.fake.Events() {
		var n int
		fmt.Sscanf(string(ev.Properties), `{"n": %d}`, &n)
		if prev, ok := last[ev.ExternalID]; ok && n < prev {
			e.t.Fatalf("user %s: row %d accepted after row %d", ev.ExternalID, n, prev)
		}
		last[ev.ExternalID] = n
	}
}

// runKills streams total events (transactions of 500 rows) into the flaky
// fake with the default lanes and batches and kills pgsignal with kill -9
// three times at random points.
func runKills(t *testing.T, e *env, cfg string, total int) (resent, inFlight int) {
	t.Helper()
	p := e.startProc(cfg)
	e.waitStreaming(p)
	inserted := make(chan struct{})
	go func() {
		defer close(inserted)
		for i := 0; i < total; i += 500 {
			e.insertRows(i, 500)
		}
	}()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 15))
	for k, frac := range []float64{0.15, 0.40, 0.65} {
		at := int(float64(total)*frac) + rng.IntN(total/5)
		e.waitCount(at, 5*time.Minute, p)
		time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond) // not just as a request is accepted
		before := e.fake.Count()
		p.kill9(t)
		// Requests the fake was still processing (or stalling) when
		// pgsignal died are accepted now: they were in flight.
		after := e.settledCount()
		inFlight += after - before
		t.Logf("kill -9 #%d after %d events accepted, %d more accepted from requests in flight (%d sent again so far)", k+1, before, after-before, e.fake.Duplicates())
		logLedgerLines(t, p)
		p = e.startProc(cfg)
	}
	<-inserted
	e.waitCount(total, 10*time.Minute, p)
	// Every event may have been accepted before the last kill: the SIGTERM
	// must not reach the new process before it listens for it (until then
	// the signal's default action ends it, as for any program).
	e.waitStreaming(p)
	p.term(t)
	logLedgerLines(t, p)
	e.checkExactlyOnce(total)
	e.checkUserOrder()
	st := e.fake.Stats()
	t.Logf("fake: %d requests, %d 500s, %d 429s, %d resets, %d stalls (seed %d)", st.Requests, st.Status500, st.Status429, st.Resets, st.Stalls, seed)
	return e.fake.Duplicates(), inFlight
}

// settledCount waits until the fake has accepted nothing for longer than
// its longest stall and returns its count.
func (e *env) settledCount() int {
	n := e.fake.Count()
	for stable := time.Now(); time.Since(stable) < 1500*time.Millisecond; time.Sleep(50 * time.Millisecond) {
		if c := e.fake.Count(); c != n {
			n, stable = c, time.Now()
		}
	}
	return n
}

// TestLedgerKill9FlakySink: 3 × kill -9 at random points while events
// stream into a flaky OneSignal with the defaults (8 lanes × 500 events):
// every event is accepted exactly once by key, each user's events in commit
// order, and the events sent again are at most those that can be in flight
// at the kills (3 × 8 × 500). Without the ledger every event accepted above
// the watermark, which the slowest lane holds back, was sent again.
func TestLedgerKill9FlakySink(t *testing.T) {
	total := faultEvents(t, 20000)
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.fake.SetFaults(ledgerFaults(15))
	cfg := e.writeConfig("full", "")
	resent, inFlight := runKills(t, e, cfg, total)
	const bound = 3 * 8 * 500
	t.Logf("figures: %d events, 3 kills: %d sent again (bound %d); %d of them accepted from requests still in flight at the kills, %d accepted before a kill and not yet in the ledger",
		total, resent, bound, min(inFlight, resent), resent-min(inFlight, resent))
	if resent > bound {
		t.Fatalf("%d events sent again, want at most %d (the requests in flight at 3 kills)", resent, bound)
	}
	if n := e.queryInt(`SELECT count(*) FROM census.delivered`); n != 0 {
		t.Fatalf("ledger holds %d ranges after a graceful stop, want 0 (trimmed as the watermark passed)", n)
	}
	skipped := e.queryInt(`SELECT coalesce(ledger_skipped, 0) FROM census.runs ORDER BY id DESC LIMIT 1`)
	want := fmt.Sprintf("delivery ledger: 0 range(s), 0 event(s) accepted above the watermark; skipped on the last start: %d\n", skipped)
	if out := e.runCLI(cfg, "status"); !strings.Contains(out, want) {
		t.Fatalf("status lacks %q:\n%s", want, out)
	}
	t.Logf("the last start skipped %d events the ledger had", skipped)
}

// TestLedgerKill9ReadOnly is the same in read-only mode, where the ledger is
// kept in source.state_file: the slot is the only checkpoint there, so
// without the ledger a crash resent everything since the last confirmation.
func TestLedgerKill9ReadOnly(t *testing.T) {
	total := faultEvents(t, 10000)
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.fake.SetFaults(ledgerFaults(16))
	cfg := e.writeReadOnly("")
	state := filepath.Join(e.dir, "state.json")
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b = []byte(strings.Replace(string(b), "  mode: read-only\n", "  mode: read-only\n  state_file: "+strconv.Quote(state)+"\n", 1))
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	resent, inFlight := runKills(t, e, cfg, total)
	const bound = 3 * 8 * 500
	t.Logf("figures: %d events, 3 kills, read-only: %d sent again (bound %d); %d of them accepted from requests still in flight at the kills, %d accepted before a kill and not yet in the ledger",
		total, resent, bound, min(inFlight, resent), resent-min(inFlight, resent))
	if resent > bound {
		t.Fatalf("%d events sent again, want at most %d (the requests in flight at 3 kills)", resent, bound)
	}
	if s := readFile(t, state); !strings.Contains(s, `"ledger"`) {
		t.Fatalf("state file has no ledger section: %s", s)
	}
	if n := e.queryInt(`SELECT count(*) FROM pg_namespace WHERE nspname = 'census'`); n != 0 {
		t.Fatal("read-only mode created the bookkeeping schema")
	}
}

// TestLedgerGracefulRestartResendsNothing: a SIGTERM in the middle of the
// stream into the flaky OneSignal, and a restart: not one event is sent
// again.
func TestLedgerGracefulRestartResendsNothing(t *testing.T) {
	const total = 10000
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.fake.SetFaults(ledgerFaults(17))
	cfg := e.writeConfig("full", "")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	inserted := make(chan struct{})
	go func() {
		defer close(inserted)
		for i := 0; i < total; i += 500 {
			e.insertRows(i, 500)
		}
	}()
	e.waitCount(total/4, 5*time.Minute, p)
	t.Logf("SIGTERM after %d events accepted", e.fake.Count())
	p.term(t)
	p = e.startProc(cfg)
	e.waitStreaming(p)
	<-inserted
	e.waitCount(total, 5*time.Minute, p)
	p.term(t)
	e.checkExactlyOnce(total)
	e.checkUserOrder()
	if d := e.fake.Duplicates(); d != 0 {
		t.Fatalf("%d events sent again after a graceful restart, want 0", d)
	}
}

// logLedgerLines logs what a pgsignal process said about its delivery
// ledger.
func logLedgerLines(t *testing.T, p *proc) {
	t.Helper()
	for _, line := range strings.Split(readFile(t, p.log), "\n") {
		if strings.Contains(line, "ledger") {
			t.Log(line)
		}
	}
}
