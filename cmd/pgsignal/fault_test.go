package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
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

// Fault 7: poison events. Unknown users come back "not found" in a 202 and
// one event makes OneSignal reject its whole batch (400): both become dead
// letters, everything else is delivered; after the users become known,
// `dead-letters replay` delivers their events exactly once and leaves the
// poison event.
func TestFaultPoisonEventsAndReplay(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{Reject: func(a onesignaltest.Accepted) string {
		if a.Name == "poison" {
			return "events[0]: poison is not allowed"
		}
		return ""
	}})
	e.fake.SetUnknownUsers("ghost_1", "ghost_2")
	cfg := e.writeConfig("full", "  batch_size: 50")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.insertRows(0, 1000)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES
  ('ev', 'ghost_1', '{"n": 1000}'), ('ev', 'ghost_2', '{"n": 1001}'), ('ev', 'ghost_1', '{"n": 1002}'),
  ('poison', 'user_5', '{"n": 1003}')`)
	e.insertRows(1004, 996)
	e.waitCount(1996, time.Minute, p)
	deadline := time.Now().Add(30 * time.Second)
	for e.queryInt(`SELECT count(*) FROM census.dead_letters`) < 4 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	p.term(t)
	if got := e.fake.Count(); got != 1996 {
		t.Fatalf("accepted %d, want 1996", got)
	}
	list := e.runCLI(cfg, "dead-letters", "list")
	t.Logf("dead letters:\n%s", list)
	for _, want := range []string{"OneSignal: not found: failed to find a onesignal_id for user_id ghost_1",
		"OneSignal: not found: failed to find a onesignal_id for user_id ghost_2",
		"OneSignal rejected the event: OneSignal answered 400: events[0]: poison is not allowed", "4 dead letter(s)"} {
		if !strings.Contains(list, want) {
			t.Fatalf("list lacks %q", want)
		}
	}
	// The users now exist in OneSignal: replay what failed for them.
	e.fake.SetUnknownUsers()
	out := e.runCLI(cfg, "dead-letters", "replay", "--reason", "not found")
	if !strings.Contains(out, "replayed: 3 delivered, 0 failed again (kept), 0 skipped") {
		t.Fatalf("replay: %s", out)
	}
	out = e.runCLI(cfg, "dead-letters", "replay", "--reason", "not found")
	if !strings.Contains(out, "replayed: 0 delivered") {
		t.Fatalf("second replay: %s", out)
	}
	if got := e.fake.Count(); got != 1999 || e.fake.Duplicates() != 0 {
		t.Fatalf("after replay: %d accepted, %d duplicates; want 1999, 0", got, e.fake.Duplicates())
	}
	ghost := 0
	for _, ev := range e.fake.Events() {
		if strings.HasPrefix(ev.ExternalID, "ghost_") {
			ghost++
		}
	}
	if ghost != 3 {
		t.Fatalf("%d ghost events delivered, want 3", ghost)
	}
	left := e.runCLI(cfg, "dead-letters", "list", "--json")
	if !strings.Contains(left, "poison is not allowed") || strings.Contains(left, "ghost_") {
		t.Fatalf("letters left: %s", left)
	}
	out = e.runCLI(cfg, "dead-letters", "discard", "--all")
	if !strings.Contains(out, "discarded 1 dead letter(s)") || e.queryInt(`SELECT count(*) FROM census.dead_letters`) != 0 {
		t.Fatalf("discard: %s", out)
	}
}

// runCLI runs a pgsignal command to completion and returns its output.
func (e *env) runCLI(config string, args ...string) string {
	e.t.Helper()
	all := append(args, "--config", config)
	if len(args) > 1 {
		all = append([]string{args[0], args[1], "--config", config}, args[2:]...)
	}
	cmd := exec.Command(binary, all...)
	cmd.Env = append(os.Environ(), "TEST_ONESIGNAL_KEY="+e.fake.APIKey())
	out, err := cmd.CombinedOutput()
	if err != nil {
		e.t.Fatalf("pgsignal %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// High availability: two pgsignal processes with the same config; one
// streams, the other waits for the slot and takes over within 10 s of a
// kill -9 of the first. No event is lost.
func TestHATakeover(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "")
	a := e.startProc(cfg)
	e.waitStreaming(a)
	b := e.startProc(cfg)
	e.insertRows(0, 5000)
	e.waitCount(5000, time.Minute, a)
	// b waits: the slot is a's.
	if pid := e.walsenderPID(); pid == 0 {
		t.Fatal("no active walsender")
	}
	waitLog(t, b, "waiting to take over", 30*time.Second)
	a.kill9(t)
	killed := time.Now()
	e.insertRows(5000, 5000)
	e.waitCount(10000, time.Minute, b)
	took := time.Since(killed)
	t.Logf("standby took over and delivered the next 5000 events %s after the kill", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Fatalf("takeover took %s, want under 10s", took)
	}
	b.term(t)
	e.checkExactlyOnce(10000)
}

// waitLog waits until p's log contains s.
func waitLog(t *testing.T, p *proc, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(p.log); strings.Contains(string(b), s) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("log never said %q:\n%s", s, p.tail())
}
