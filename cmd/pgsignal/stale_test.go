package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// Tests of issue 15, stale events: sink.max_event_age through the binary.

// staleMaxAge is the max_event_age of these tests: short, so that they wait
// little, and long enough that an event inserted while pgsignal runs is
// sent well within it on a loaded machine.
const staleMaxAge = 5 * time.Second

// insertStaleRows inserts rows [from, from+count) in three transactions
// (see insertRows) and waits until the last committed longer ago than
// staleMaxAge.
func (e *env) insertStaleRows(from, count int) {
	e.t.Helper()
	third := count / 3
	e.insertRows(from, third)
	e.insertRows(from+third, third)
	e.insertRows(from+2*third, count-2*third)
	var committed time.Time
	if err := e.pool.QueryRow(context.Background(), `SELECT now()`).Scan(&committed); err != nil {
		e.t.Fatal(err)
	}
	time.Sleep(time.Until(committed.Add(staleMaxAge + 300*time.Millisecond)))
}

// rowsAccepted returns the "n" property of every event the fake accepted,
// sorted, failing on a key accepted twice.
func (e *env) rowsAccepted() []int {
	e.t.Helper()
	var out []int
	keys := map[string]bool{}
	for _, ev := range e.fake.Events() {
		if keys[ev.IdempotencyKey] {
			e.t.Fatalf("key %s accepted twice", ev.IdempotencyKey)
		}
		keys[ev.IdempotencyKey] = true
		var p struct{ N int }
		if err := json.Unmarshal(ev.Properties, &p); err != nil {
			e.t.Fatalf("properties %s: %v", ev.Properties, err)
		}
		out = append(out, p.N)
	}
	slices.Sort(out)
	return out
}

func intRange(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// labelledMetric reads one sample of the process's /metrics by its full
// name with labels, e.g. `x_total{a="b"}`; 0 when absent.
func labelledMetric(t *testing.T, url, series string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// staleLines returns the fields of the log lines that summarize stale
// events.
func staleLines(t *testing.T, p *proc) []map[string]any {
	t.Helper()
	f, err := os.Open(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var l map[string]any
		if json.Unmarshal(sc.Bytes(), &l) == nil && l["msg"] == sink.StaleLogMessage {
			out = append(out, l)
		}
	}
	return out
}

// Stop pgsignal, insert rows, wait past max_event_age, start: none of them
// is sent; each is a dead letter "older than max_event_age (...)", the
// checkpoint passes them, one log line summarizes them and the metric
// counts them. Rows inserted after the start, for the same users, are sent
// exactly once. A replay of the stale letters says they were stale and
// sends them.
func TestProcStaleEventsAfterOutageDeadLettered(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "  max_event_age: 5s")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	p.term(t)

	const stale, fresh, freshFrom = 30, 10, 97
	e.insertStaleRows(0, stale)
	lsn := e.walLSN()
	p = e.startProc(cfg)
	e.waitStreaming(p)
	e.waitConfirmedPast(lsn, 30*time.Second, p)
	if n := e.queryInt(`SELECT count(*) FROM census.dead_letters`); n != stale {
		t.Fatalf("%d dead letters after the slot passed the stale rows, want %d\n%s", n, stale, p.tail())
	}
	// Rows 97.. are the same users' as rows 0.. (user_<n%97>).
	e.insertRows(freshFrom, fresh)
	e.waitCount(fresh, 30*time.Second, p)
	e.waitLog(p, sink.StaleLogMessage, 30*time.Second)
	url := p.metricsURL(t)
	if v := labelledMetric(t, url, `pgsignal_stale_events_total{action="dead_lettered",table="analytics.user_events"}`); v != stale {
		t.Errorf("pgsignal_stale_events_total{dead_lettered} = %v, want %d", v, stale)
	}
	if v := metric(t, url, "pgsignal_oldest_unsent_event_age_seconds"); v != 0 {
		t.Errorf("pgsignal_oldest_unsent_event_age_seconds = %v with nothing pending, want 0", v)
	}
	p.term(t)

	if got := e.rowsAccepted(); !slices.Equal(got, intRange(freshFrom, freshFrom+fresh)) {
		t.Fatalf("rows accepted %v, want only the fresh rows %d..%d", got, freshFrom, freshFrom+fresh-1)
	}
	var rows []int
	for _, l := range e.listJSON(cfg) {
		reason := jsonField(t, l, "reason")
		if !strings.HasPrefix(reason, "older than max_event_age (") || !strings.HasSuffix(reason, " > 5s)") {
			t.Errorf("letter reason %q, want \"older than max_event_age (<age> > 5s)\"", reason)
		}
		var ev struct {
			Properties struct{ N int }
		}
		if err := json.Unmarshal(l["event"], &ev); err != nil {
			t.Fatalf("letter event %s: %v", l["event"], err)
		}
		rows = append(rows, ev.Properties.N)
	}
	slices.Sort(rows)
	if !slices.Equal(rows, intRange(0, stale)) {
		t.Fatalf("dead letters hold rows %v, want 0..%d", rows, stale-1)
	}
	lines := staleLines(t, p)
	if len(lines) != 1 {
		t.Fatalf("%d summary lines, want 1", len(lines))
	}
	if l := lines[0]; l["events"] != float64(stale) || l["action"] != "dead_lettered" || l["max_event_age"] != "5s" || l["oldest_commit"] == "" || l["newest_commit"] == "" || l["level"] != "warn" {
		t.Errorf("summary line %v", l)
	}
	if n := strings.Count(readFile(t, p.log), `"msg":"dead letter"`); n != 0 {
		t.Errorf("%d per-letter log lines, want none (one summary)", n)
	}

	// The replay says they are stale and sends them, however old.
	out := e.runCLI(cfg, "dead-letters", "replay", "--reason", "older than max_event_age")
	want := fmt.Sprintf("%d of these letters were stale: older than max_event_age when they were dead-lettered; replaying sends them now", stale)
	if !strings.Contains(out, want) || !strings.Contains(out, fmt.Sprintf("replayed: %d delivered, 0 failed", stale)) {
		t.Fatalf("replay output:\n%s\nwant %q", out, want)
	}
	if got := e.rowsAccepted(); !slices.Equal(got, append(intRange(0, stale), intRange(freshFrom, freshFrom+fresh)...)) {
		t.Fatalf("rows accepted after the replay %v, want each of 0..%d and %d..%d once", got, stale-1, freshFrom, freshFrom+fresh-1)
	}
	if n := e.queryInt(`SELECT count(*) FROM census.dead_letters`); n != 0 {
		t.Fatalf("%d dead letters left after the replay, want 0", n)
	}
}

// The same with sink.stale: drop (read-only mode): none of the stale rows
// is sent or dead-lettered; the metric counts them exactly.
func TestProcStaleEventsAfterOutageDropped(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeReadOnly("  max_event_age: 5s\n  stale: drop")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	p.term(t)

	const stale, fresh = 30, 10
	e.insertStaleRows(0, stale)
	lsn := e.walLSN()
	p = e.startProc(cfg)
	e.waitStreaming(p)
	e.waitConfirmedPast(lsn, 30*time.Second, p)
	e.insertRows(stale, fresh)
	e.waitCount(fresh, 30*time.Second, p)
	url := p.metricsURL(t)
	if v := labelledMetric(t, url, `pgsignal_stale_events_total{action="dropped",table="analytics.user_events"}`); v != stale {
		t.Errorf("pgsignal_stale_events_total{dropped} = %v, want %d", v, stale)
	}
	if v := labelledMetric(t, url, `pgsignal_stale_events_total{action="dead_lettered",table="analytics.user_events"}`); v != 0 {
		t.Errorf("pgsignal_stale_events_total{dead_lettered} = %v, want 0", v)
	}
	if v := labelledMetric(t, url, `pgsignal_events_dropped_total{table="analytics.user_events"}`); v != stale {
		t.Errorf("pgsignal_events_dropped_total = %v, want %d", v, stale)
	}
	e.waitLog(p, sink.StaleLogMessage, 30*time.Second)
	p.term(t)
	if got := e.rowsAccepted(); !slices.Equal(got, intRange(stale, stale+fresh)) {
		t.Fatalf("rows accepted %v, want only the fresh rows", got)
	}
	if ls := e.listJSON(cfg); len(ls) != 0 {
		t.Fatalf("%d dead letters, want none", len(ls))
	}
	lines := staleLines(t, p)
	if len(lines) != 1 || lines[0]["events"] != float64(stale) || lines[0]["action"] != "dropped" {
		t.Fatalf("summary lines %v, want one with %d dropped", lines, stale)
	}
}

// A backfill is history asked for: max_event_age does not apply to its
// events, even when OneSignal fails for longer than max_event_age while
// they wait.
func TestProcBackfillIgnoresMaxEventAge(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "  max_event_age: 1s\n  batch_size: 50")
	const rows = 200
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data)
SELECT 'ev', 'user_' || (i % 97), now() - interval '3 days' + i * interval '1 minute', jsonb_build_object('n', i)
FROM generate_series(0, $1::int - 1) i`, rows)
	e.fake.SetFaults(onesignaltest.Faults{Rate500: 1})
	p := e.startCommand("backfill", cfg, "--since", "7d")
	// OneSignal fails for more than max_event_age after the first attempt.
	deadline := time.Now().Add(30 * time.Second)
	for e.fake.Stats().Status500 == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no request in 30s\n%s", p.tail())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(2500 * time.Millisecond)
	e.fake.SetFaults(onesignaltest.Faults{})
	e.waitCount(rows, time.Minute, p)
	e.waitStreaming(p)
	p.term(t)
	e.checkExactlyOnce(rows)
	if n := e.queryInt(`SELECT count(*) FROM census.dead_letters`); n != 0 {
		t.Fatalf("%d dead letters, want none: backfilled events are exempt from max_event_age", n)
	}
	if lines := staleLines(t, p); len(lines) != 0 {
		t.Fatalf("stale summary lines %v, want none", lines)
	}
}

// statusJSON runs `pgsignal status --json`.
func (e *env) statusJSON(cfg string) map[string]json.RawMessage {
	e.t.Helper()
	var rep map[string]json.RawMessage
	out := e.runCLI(cfg, "status", "--json")
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		e.t.Fatalf("status --json: %v\n%s", err, out)
	}
	return rep
}

// `pgsignal status` and /metrics show the age of the oldest unsent event
// while OneSignal fails, and nothing once it is sent.
func TestProcStatusShowsOldestUnsent(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	url := p.metricsURL(t)
	e.fake.SetFaults(onesignaltest.Faults{Rate500: 1})
	e.insertRows(0, 3)
	inserted := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	var age float64
	for {
		rep := e.statusJSON(cfg)
		if raw, ok := rep["oldest_unsent_age_seconds"]; ok {
			if err := json.Unmarshal(raw, &age); err != nil {
				t.Fatal(err)
			}
			if age > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("status shows no oldest unsent event after 30s: %s", rep["runs"])
		}
		time.Sleep(200 * time.Millisecond)
	}
	if limit := time.Since(inserted).Seconds() + 1; age <= 0 || age > limit {
		t.Errorf("status: oldest unsent event %vs old, want in (0, %v]", age, limit)
	}
	if out := e.runCLI(cfg, "status"); !regexp.MustCompile(`oldest unsent event: committed \S+ ago`).MatchString(out) {
		t.Errorf("status text shows no oldest unsent event:\n%s", out)
	}
	if v := metric(t, url, "pgsignal_oldest_unsent_event_age_seconds"); v <= 0 || v > time.Since(inserted).Seconds()+1 {
		t.Errorf("pgsignal_oldest_unsent_event_age_seconds = %v, want the age of the first row", v)
	}
	e.fake.SetFaults(onesignaltest.Faults{})
	e.waitCount(3, 30*time.Second, p)
	deadline = time.Now().Add(30 * time.Second)
	for {
		if raw, ok := e.statusJSON(cfg)["oldest_unsent_age_seconds"]; ok && string(raw) == "0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("status still shows an unsent event 30s after it was sent")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if out := e.runCLI(cfg, "status"); !strings.Contains(out, "oldest unsent event: none") {
		t.Errorf("status text, nothing unsent:\n%s", out)
	}
	if v := metric(t, url, "pgsignal_oldest_unsent_event_age_seconds"); v != 0 {
		t.Errorf("pgsignal_oldest_unsent_event_age_seconds = %v, want 0", v)
	}
	p.term(t)
}
