package sink

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// Tests of issue 15, stale events: sink.max_event_age.

// Stale implements StaleMetrics for the recording metrics.
func (m *recordingMetrics) Stale(table, action string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handled["stale "+table+" "+action] += n
}

// aged is newEvent committed age ago.
func aged(seq uint64, user string, age time.Duration) *cdc.Event {
	ev := newEvent(seq, user, 0)
	ev.CommitTime = time.Now().Add(-age)
	return ev
}

// An event committed longer ago than MaxEventAge when its batch is formed
// is not sent: it becomes a dead letter whose reason starts with "older
// than max_event_age" and is handled. A fresh event of the same user queued
// after stale ones still goes, in order; a backfilled event is sent however
// old; a row that never became an event keeps its own reason.
func TestStaleEventsBecomeDeadLetters(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	letters := &memLetters{}
	m := newRecordingMetrics()
	s, h := startSink(t, Config{BatchSize: 100, Linger: 50 * time.Millisecond, Concurrency: 1, MaxEventAge: time.Hour, Metrics: m}, client, letters)

	backfilled := aged(6, "user_b", 3*time.Hour)
	backfilled.Backfill = true
	reject := rejectEvent(7, "external_id is NULL")
	reject.CommitTime = time.Now().Add(-5 * time.Hour)
	submit(t, s,
		aged(1, "user_a", 2*time.Hour), aged(2, "user_a", 90*time.Minute), aged(3, "user_a", time.Minute),
		aged(4, "user_b", 61*time.Minute), aged(5, "user_b", 0), backfilled, reject)
	exactlyOnce(t, h.wait(t, 7, 5*time.Second), seqRange(1, 7))

	byUser, _ := acceptedSeqs(t, srv)
	if want := map[string][]uint64{"user_a": {3}, "user_b": {5, 6}}; !mapsEqual(byUser, want) {
		t.Errorf("accepted %v, want %v", byUser, want)
	}
	got := map[uint64]string{}
	for _, l := range letters.get() {
		for seq := uint64(1); seq <= 7; seq++ {
			if l.Pos == newEvent(seq, "", 0).Pos {
				got[seq] = l.Reason
			}
		}
	}
	if len(got) != 4 || got[7] != "external_id is NULL" {
		t.Fatalf("letters %v: want seqs 1, 2, 4 stale and 7 rejected", got)
	}
	for _, seq := range []uint64{1, 2, 4} {
		if !strings.HasPrefix(got[seq], "older than max_event_age (") || !strings.HasSuffix(got[seq], " > 1h0m0s)") || !IsStaleReason(got[seq]) {
			t.Errorf("letter of seq %d: reason %q, want \"older than max_event_age (<age> > 1h0m0s)\"", seq, got[seq])
		}
	}
	for _, l := range letters.get() {
		if IsStaleReason(l.Reason) && (len(l.Event) == 0 || l.IdempotencyKey == "") {
			t.Errorf("stale letter %s has no event or key: a replay could not send it", l.Pos)
		}
	}
	st := s.Stats()
	if st.Stale != 3 || st.DeadLettered != 4 || st.Delivered != 3 || st.Dropped != 0 {
		t.Errorf("Stats = %+v: want 3 stale, 4 dead-lettered, 3 delivered", st)
	}
	hc := m.handledCounts()
	if hc["stale public.events dead_lettered"] != 3 || hc["public.events dead_lettered"] != 4 || hc["public.events delivered"] != 3 {
		t.Errorf("metrics %v", hc)
	}
}

func mapsEqual(a, b map[string][]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// With sink.stale: drop, stale events are neither sent nor dead-lettered:
// dropped, counted and handled.
func TestStaleEventsDropped(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	letters := &memLetters{}
	m := newRecordingMetrics()
	s, h := startSink(t, Config{BatchSize: 100, Linger: 20 * time.Millisecond, Concurrency: 2, MaxEventAge: time.Hour, StaleDrop: true, Metrics: m}, client, letters)
	submit(t, s, aged(1, "user_a", 2*time.Hour), aged(2, "user_b", 2*time.Hour), aged(3, "user_a", 0), aged(4, "user_c", 3*time.Hour))
	exactlyOnce(t, h.wait(t, 4, 5*time.Second), seqRange(1, 4))
	if got := arrivalSeqs(t, srv); !slices.Equal(got, []uint64{3}) {
		t.Errorf("accepted seqs %v, want [3]", got)
	}
	if n := len(letters.get()); n != 0 {
		t.Errorf("%d dead letters, want none", n)
	}
	st := s.Stats()
	if st.Stale != 3 || st.Dropped != 3 || st.DeadLettered != 0 || st.Delivered != 1 {
		t.Errorf("Stats = %+v", st)
	}
	if hc := m.handledCounts(); hc["stale public.events dropped"] != 3 || hc["public.events dropped"] != 3 {
		t.Errorf("metrics %v", hc)
	}
}

// fakeClock is a settable clock for Config.Now.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// An event that becomes stale while OneSignal answers 500s is
// dead-lettered before the retry, not sent later; a backfilled event of
// the same batch is sent by the retry.
func TestStaleEventIsNotRetried(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	clock := &fakeClock{t: time.Now()}
	var mu sync.Mutex
	var sent []int // events per request
	sender := funcSender{send: func(ctx context.Context, body []byte) (Result, error) {
		mu.Lock()
		sent = append(sent, strings.Count(string(body), `"idempotency_key"`))
		first := len(sent) == 1
		mu.Unlock()
		if first {
			// The outage lasts longer than max_event_age.
			clock.add(2 * time.Minute)
			return Result{}, &StatusError{Status: 500}
		}
		return client.Send(ctx, body)
	}}
	letters := &memLetters{}
	s, h := startSink(t, Config{BatchSize: 10, Linger: 20 * time.Millisecond, Concurrency: 1, MaxEventAge: time.Minute, Now: clock.now}, sender, letters)
	fresh := newEvent(1, "user_a", 0)
	fresh.CommitTime = clock.now()
	bf := newEvent(2, "user_a", 0)
	bf.CommitTime, bf.Backfill = clock.now(), true
	submit(t, s, fresh, bf)
	exactlyOnce(t, h.wait(t, 2, 5*time.Second), seqRange(1, 2))
	if got := arrivalSeqs(t, srv); !slices.Equal(got, []uint64{2}) {
		t.Errorf("accepted seqs %v, want only the backfilled [2]", got)
	}
	mu.Lock()
	reqs := slices.Clone(sent)
	mu.Unlock()
	if !slices.Equal(reqs, []int{2, 1}) {
		t.Errorf("requests carried %v events, want [2 1]", reqs)
	}
	ls := letters.get()
	if len(ls) != 1 || ls[0].Pos != fresh.Pos || ls[0].Reason != "older than max_event_age (2m0s > 1m0s)" || ls[0].Attempts != 1 {
		t.Fatalf("letters %+v: want seq 1, \"older than max_event_age (2m0s > 1m0s)\", 1 attempt", ls)
	}
}

// Stale events are summarized in one log line (how many, the oldest and
// newest commit times), written when a fresh event is sent again, not one
// line per event; the stale letters are not logged one by one.
func TestStaleEventsLoggedOnce(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	core, logs := observer.New(zap.InfoLevel)
	s, h := startSink(t, Config{BatchSize: 7, Linger: 5 * time.Millisecond, Concurrency: 3, MaxEventAge: time.Hour, Logger: zap.New(core)}, client, nil)
	base := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	var evs []*cdc.Event
	for seq := uint64(1); seq <= 50; seq++ {
		ev := newEvent(seq, "user_"+string(rune('a'+seq%5)), 0)
		ev.CommitTime = base.Add(time.Duration(seq) * time.Minute)
		evs = append(evs, ev)
	}
	submit(t, s, evs...)
	h.wait(t, 50, 5*time.Second)
	if n := len(logs.FilterMessage(StaleLogMessage).All()); n != 0 {
		t.Fatalf("%d summary lines before a fresh event was sent, want 0", n)
	}
	submit(t, s, newEvent(51, "user_a", 0))
	h.wait(t, 51, 5*time.Second)
	if srv.Count() != 1 {
		t.Fatalf("fake accepted %d events, want 1", srv.Count())
	}
	lines := logs.FilterMessage(StaleLogMessage).All()
	if len(lines) != 1 {
		t.Fatalf("%d summary lines, want 1: %v", len(lines), logs.All())
	}
	f := lines[0].ContextMap()
	want := map[string]any{"events": int64(50), "action": "dead_lettered", "max_event_age": "1h0m0s",
		"oldest_commit": base.Add(time.Minute).UTC().Format(time.RFC3339Nano),
		"newest_commit": base.Add(50 * time.Minute).UTC().Format(time.RFC3339Nano)}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("summary field %s = %v, want %v (all: %v)", k, f[k], v, f)
		}
	}
	if n := len(logs.FilterMessage("dead letter").All()); n != 0 {
		t.Errorf("%d per-letter lines for stale letters, want 0", n)
	}
}

// The summary repeats at most every staleRepeat while stale events keep
// coming, and flush writes what is left (at a fresh event or the stop).
func TestStaleLogRepeatsAtMostEveryMinute(t *testing.T) {
	core, logs := observer.New(zap.InfoLevel)
	l := &staleLog{log: zap.New(core), maxAge: time.Hour}
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	commit := t0.Add(-50 * time.Hour)
	for i := 0; i < 150; i++ {
		now := t0.Add(time.Duration(i) * time.Second)
		l.add(now, "public.events", OutcomeDeadLettered, []time.Time{commit.Add(time.Duration(i) * time.Minute)})
	}
	l.flush(t0.Add(150 * time.Second))
	l.flush(t0.Add(151 * time.Second)) // nothing left
	lines := logs.FilterMessage(StaleLogMessage).All()
	counts := []int64{}
	for _, ln := range lines {
		counts = append(counts, ln.ContextMap()["events"].(int64))
	}
	// Lines at 60 s (events 0..60), 120 s (61..120), and the flush (121..149).
	if !slices.Equal(counts, []int64{61, 60, 29}) {
		t.Fatalf("summary lines with %v events, want [61 60 29]", counts)
	}
	if got := lines[2].ContextMap()["oldest_commit"]; got != commit.Add(121*time.Minute).Format(time.RFC3339Nano) {
		t.Errorf("last line's oldest_commit %v", got)
	}
}

// Stats.OldestUnsent is the commit time of the oldest event queued or in
// flight, zero when none.
func TestOldestUnsent(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	release := make(chan struct{})
	inFlight := make(chan struct{}, 1)
	sender := funcSender{send: func(ctx context.Context, body []byte) (Result, error) {
		select {
		case inFlight <- struct{}{}:
		default:
		}
		select {
		case <-release:
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
		return client.Send(ctx, body)
	}}
	s, h := startSink(t, Config{BatchSize: 1, Linger: time.Millisecond, Concurrency: 1}, sender, nil)
	if o := s.Stats().OldestUnsent; !o.IsZero() {
		t.Fatalf("OldestUnsent %v with nothing queued, want zero", o)
	}
	a, b := aged(1, "user_a", 10*time.Second), aged(2, "user_a", 20*time.Second)
	submit(t, s, a)
	waitSignal(t, inFlight, 5*time.Second, "first request")
	if o := s.Stats().OldestUnsent; !o.Equal(a.CommitTime) {
		t.Errorf("OldestUnsent %v with a in flight, want %v", o, a.CommitTime)
	}
	submit(t, s, b) // queued behind a, committed earlier (a clock step)
	if o := s.Stats().OldestUnsent; !o.Equal(b.CommitTime) {
		t.Errorf("OldestUnsent %v with b queued, want %v", o, b.CommitTime)
	}
	close(release)
	h.wait(t, 2, 5*time.Second)
	eventually(t, time.Second, "nothing unsent", func() bool { return s.Stats().OldestUnsent.IsZero() })
	if srv.Count() != 2 {
		t.Errorf("fake accepted %d, want 2", srv.Count())
	}
}
