package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// Fault 1: kill -9 pgsignal three times at random points while 100,000
// events stream; the fake ends with exactly 100,000 unique keys.
func TestFaultKill9ThreeTimes(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "")
	const total, per = 100000, 1000
	p := e.startProc(cfg)
	e.waitStreaming(p)
	inserted := make(chan struct{})
	go func() {
		defer close(inserted)
		for i := 0; i < total; i += per {
			e.insertRows(i, per)
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for k, at := range []int{10000, 40000, 70000} {
		at += rng.IntN(15000)
		e.waitCount(at, 3*time.Minute, p)
		p.kill9(t)
		t.Logf("kill -9 #%d after %d events accepted", k+1, e.fake.Count())
		p = e.startProc(cfg)
	}
	<-inserted
	e.waitCount(total, 3*time.Minute, p)
	p.term(t)
	e.checkExactlyOnce(total)
}

// Fault 2: PostgreSQL restarted (fast) in the middle of the stream; pgsignal
// reconnects with backoff and finishes.
func TestFaultPostgresRestart(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "")
	const total, per = 30000, 1000
	// A slow OneSignal keeps events in flight while PostgreSQL restarts.
	e.fake.SetFaults(onesignaltest.Faults{Latency: 100 * time.Millisecond})
	p := e.startProc(cfg)
	e.waitStreaming(p)
	for i := 0; i < total/2; i += per {
		e.insertRows(i, per)
	}
	e.waitCount(5000, time.Minute, p)
	if err := e.pg.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL restarted after %d events accepted", e.fake.Count())
	e.pool.Reset()
	for i := total / 2; i < total; i += per {
		e.insertRows(i, per)
	}
	e.waitCount(total, 3*time.Minute, p)
	p.term(t)
	e.checkExactlyOnce(total)
}

// Fault 3: 20% 500s, 5% 429s with Retry-After: 1, stalls and connection
// resets: every event is accepted once by key, and each user's events are
// accepted in commit order.
func TestFaultFlakyOneSignal(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.fake.SetFaults(onesignaltest.Faults{Rate500: 0.20, Rate429: 0.05, RetryAfter: time.Second,
		StallRate: 0.05, Stall: 2 * time.Second, ResetRate: 0.05, Seed: 3})
	cfg := e.writeConfig("full", "  batch_size: 100")
	const total, per = 20000, 500
	p := e.startProc(cfg)
	e.waitStreaming(p)
	for i := 0; i < total; i += per {
		e.insertRows(i, per)
	}
	e.waitCount(total, 5*time.Minute, p)
	p.term(t)
	e.checkExactlyOnce(total)
	st := e.fake.Stats()
	t.Logf("fake: %d requests, %d 500s, %d 429s, %d resets, %d stalls", st.Requests, st.Status500, st.Status429, st.Resets, st.Stalls)
	if st.Status500 == 0 || st.Status429 == 0 || st.Resets == 0 || st.Stalls == 0 {
		t.Fatalf("faults were not all injected: %+v", st)
	}
	last := map[string]int{}
	for _, ev := range e.fake.Events() {
		var n int
		fmt.Sscanf(string(ev.Properties), `{"n": %d}`, &n)
		if prev, ok := last[ev.ExternalID]; ok && n < prev {
			t.Fatalf("user %s: row %d accepted after row %d", ev.ExternalID, n, prev)
		}
		last[ev.ExternalID] = n
	}
}

// Fault 4: OneSignal stalls 30 s while wal_sender_timeout is 5 s: the
// replication connection survives (same walsender pid) and everything
// arrives.
func TestFaultSinkStallKeepsConnection(t *testing.T) {
	e := newEnv(t, pgtest.Options{Conf: map[string]string{"wal_sender_timeout": "5s"}}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "  max_pending_events: 2000\n  batch_size: 100")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	pidBefore := e.walsenderPID()
	e.fake.SetFaults(onesignaltest.Faults{StallRate: 1, Stall: 30 * time.Second})
	const total = 20000
	e.insertRows(0, total)
	time.Sleep(2 * time.Second) // every lane is now stuck in a 30 s request
	e.fake.SetFaults(onesignaltest.Faults{})
	stalledAt := e.fake.Count()
	e.waitCount(total, 3*time.Minute, p)
	pidAfter := e.walsenderPID()
	p.term(t)
	e.checkExactlyOnce(total)
	t.Logf("walsender pid %d before, %d after; %d events accepted when the stall began", pidBefore, pidAfter, stalledAt)
	if pidBefore == 0 || pidBefore != pidAfter {
		t.Fatalf("replication connection was replaced: pid %d -> %d\n%s", pidBefore, pidAfter, p.tail())
	}
	if strings.Contains(readFile(t, p.log), "reconnecting") {
		t.Fatalf("pgsignal reconnected:\n%s", p.tail())
	}
}

func (e *env) walsenderPID() int64 {
	e.t.Helper()
	var pid int64
	err := e.pool.QueryRow(context.Background(), `SELECT coalesce(max(active_pid), 0) FROM pg_replication_slots WHERE slot_name = 'pgsignal'`).Scan(&pid)
	if err != nil {
		e.t.Fatal(err)
	}
	return pid
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// peakRSS returns the peak resident set size (VmHWM) of a process in bytes.
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	for _, line := range strings.Split(readFile(t, fmt.Sprintf("/proc/%d/status", pid)), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(line, "VmHWM:")), "%d kB", &kb)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// Fault 5: one transaction of 2,000,000 rows into a sink accepting about 20
// batches/s: pgsignal's memory stays flat (peak RSS under 150 MiB).
func TestFaultHugeTransactionBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("2,000,000 rows: skipped with -short")
	}
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{CountOnly: true})
	// 8 lanes x 1000 events, 400 ms per request: ~20 batches/s, 20,000 events/s.
	e.fake.SetFaults(onesignaltest.Faults{Latency: 400 * time.Millisecond})
	cfg := e.writeConfig("full", "  batch_size: 1000")
	const total = 2000000
	p := e.startProc(cfg)
	e.waitStreaming(p)
	start := time.Now()
	e.insertRows(0, total)
	t.Logf("inserted %d rows in one transaction in %s", total, time.Since(start).Round(time.Millisecond))
	e.waitCount(total, 10*time.Minute, p)
	rss := peakRSS(t, p.cmd.Process.Pid)
	p.term(t)
	st := e.fake.Stats()
	t.Logf("figures: %d events accepted in %s, %d requests (%.1f batches/s), peak RSS %.1f MiB",
		st.Accepted, time.Since(start).Round(time.Second), st.Requests, float64(st.Requests)/time.Since(start).Seconds(), float64(rss)/(1<<20))
	if st.Accepted != total || st.Duplicates != 0 {
		t.Fatalf("accepted %d (%d duplicates), want %d", st.Accepted, st.Duplicates, total)
	}
	if rss > 150<<20 {
		t.Fatalf("peak RSS %.1f MiB exceeds 150 MiB", float64(rss)/(1<<20))
	}
}

// Fault 6: kill -9 in the middle of a 300,000-row transaction after more
// than 100,000 of its events were accepted: the restart skips what the
// stored watermark says was handled, so fewer than max_pending_events events
// are sent again.
func TestFaultKillInsideLargeTransaction(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.fake.SetFaults(onesignaltest.Faults{Latency: 20 * time.Millisecond})
	const maxPending = 20000
	cfg := e.writeConfig("full", fmt.Sprintf("  max_pending_events: %d", maxPending))
	const total = 300000
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.insertRows(0, total)
	e.waitCount(100001, 5*time.Minute, p)
	p.kill9(t)
	killedAt := e.fake.Count()
	p = e.startProc(cfg)
	e.waitCount(total, 5*time.Minute, p)
	p.term(t)
	e.checkExactlyOnce(total)
	resent := e.fake.Duplicates()
	t.Logf("figures: killed after %d of %d accepted; sent again after restart: %d (max_pending_events %d)", killedAt, total, resent, maxPending)
	if resent >= maxPending {
		t.Fatalf("%d events sent again, want fewer than %d", resent, maxPending)
	}
}
