package sink

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// eventually polls cond until it holds or d passes.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %v", what, d)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestSinkDeliversEverythingOnceInOrderPerUser(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	var delivered atomic.Int64
	s, h := startSink(t, Config{
		BatchSize: 16, Linger: 5 * time.Millisecond, Concurrency: 4,
		OnDelivered: func(*cdc.Event, time.Time) { delivered.Add(1) },
	}, client, nil)

	const n, users = 400, 37
	for seq := uint64(1); seq <= n; seq++ {
		submit(t, s, newEvent(seq, fmt.Sprintf("user_%d", seq%users), 0))
	}
	exactlyOnce(t, h.wait(t, n, 5*time.Second), seqRange(1, n))

	byUser, keys := acceptedSeqs(t, srv)
	if len(byUser) != users {
		t.Errorf("events of %d users accepted, want %d", len(byUser), users)
	}
	for user, seqs := range byUser {
		var want []uint64
		for seq := uint64(1); seq <= n; seq++ {
			if fmt.Sprintf("user_%d", seq%users) == user {
				want = append(want, seq)
			}
		}
		if !slices.Equal(seqs, want) {
			t.Errorf("%s: accepted in order %v, want %v", user, seqs, want)
		}
	}
	if len(keys) != n {
		t.Errorf("%d distinct idempotency keys accepted, want %d", len(keys), n)
	}
	if d := srv.Duplicates(); d != 0 {
		t.Errorf("fake dropped %d duplicates, want 0", d)
	}
	eventually(t, time.Second, "pending drops to zero", func() bool {
		st := s.Stats()
		return st.PendingEvents == 0 && st.PendingBytes == 0
	})
	st := s.Stats()
	if st.Submitted != n || st.Delivered != n || st.DeadLettered != 0 || st.Dropped != 0 || st.Retries != 0 {
		t.Errorf("Stats = %+v", st)
	}
	if st.Requests != st.Batches || int(st.Requests) != srv.Requests() {
		t.Errorf("Requests %d, Batches %d, fake requests %d: want all equal without retries", st.Requests, st.Batches, srv.Requests())
	}
	if delivered.Load() != n || s.Latency.Count() != n {
		t.Errorf("OnDelivered called %d times, Latency has %d samples; want %d", delivered.Load(), s.Latency.Count(), n)
	}
}

func TestSinkBatchClosesAtBatchSize(t *testing.T) {
	_, client := startFake(t, onesignaltest.Options{})
	rec := &recordingSender{next: client}
	s, h := startSink(t, Config{BatchSize: 10, Linger: time.Hour, Concurrency: 1}, rec, nil)
	for seq := uint64(1); seq <= 25; seq++ {
		submit(t, s, newEvent(seq, "u", 0))
	}
	got := h.wait(t, 20, time.Second)
	exactlyOnce(t, got, seqRange(1, 20))
	// The last 5 wait for a full batch or the (hour-long) linger.
	time.Sleep(100 * time.Millisecond)
	exactlyOnce(t, h.get(), seqRange(1, 20))
	var sizes []int
	for _, r := range rec.requests() {
		sizes = append(sizes, r.events)
	}
	if !slices.Equal(sizes, []int{10, 10}) {
		t.Errorf("requests carried %v events, want [10 10]", sizes)
	}
	if st := s.Stats(); st.PendingEvents != 5 {
		t.Errorf("PendingEvents = %d, want 5", st.PendingEvents)
	}
}

func TestSinkBatchClosesAfterLinger(t *testing.T) {
	_, client := startFake(t, onesignaltest.Options{})
	rec := &recordingSender{next: client}
	const linger = 100 * time.Millisecond
	// The lane sends a partial batch Linger after its previous one, or
	// after its start.
	start := time.Now()
	s, h := startSink(t, Config{BatchSize: 100, Linger: linger, Concurrency: 1}, rec, nil)
	submit(t, s, newEvent(1, "u", 0), newEvent(2, "u", 0), newEvent(3, "u", 0))
	exactlyOnce(t, h.wait(t, 3, time.Second), seqRange(1, 3))
	reqs := rec.requests()
	if len(reqs) != 1 || reqs[0].events != 3 {
		t.Fatalf("requests %+v, want one with 3 events", reqs)
	}
	if waited := reqs[0].at.Sub(start); waited < linger || waited > linger+500*time.Millisecond {
		t.Errorf("the batch was sent %v after the first event, want the linger (%v)", waited, linger)
	}
}

func TestSinkBatchBodyStaysUnderOneMegabyte(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	rec := &recordingSender{next: client}
	// The linger is long enough that submitting all 600 (slow under -race)
	// never closes a batch by time: the first closes at 1 MiB, the rest at
	// the linger.
	s, h := startSink(t, Config{BatchSize: 1000, Linger: 2 * time.Second, Concurrency: 1}, rec, nil)
	const n, size = 600, 2000
	for seq := uint64(1); seq <= n; seq++ {
		ev := newEvent(seq, "u", size)
		if len(ev.JSON) != size {
			t.Fatalf("test event is %d bytes, want %d", len(ev.JSON), size)
		}
		submit(t, s, ev)
	}
	exactlyOnce(t, h.wait(t, n, 10*time.Second), seqRange(1, n))
	// {"events":[ + events joined by commas + ]}: 13 + 2000k + (k-1) bytes.
	// The largest k under 1 MiB is 524.
	var counts []int
	for _, r := range rec.requests() {
		counts = append(counts, r.events)
		if r.size > MaxBodyBytes {
			t.Errorf("request of %d bytes, over %d", r.size, MaxBodyBytes)
		}
		if r.size != 13+size*r.events+r.events-1 {
			t.Errorf("request of %d events has %d bytes", r.events, r.size)
		}
	}
	if !slices.Equal(counts, []int{524, 76}) {
		t.Errorf("requests carried %v events, want [524 76]", counts)
	}
	if st := srv.Stats(); st.TooLarge != 0 || st.BadRequests != 0 || st.Accepted != n {
		t.Errorf("fake stats %+v", st)
	}
}

func TestSinkBatchClosesAtOneMegabyteWithoutWaitingForLinger(t *testing.T) {
	_, client := startFake(t, onesignaltest.Options{})
	rec := &recordingSender{next: client}
	s, h := startSink(t, Config{BatchSize: 1000, Linger: 1500 * time.Millisecond, Concurrency: 1}, rec, nil)
	// Timed from the 524th event (the 525th closes the batch): submitting
	// them all takes long under -race on a busy machine.
	var full time.Time
	for seq := uint64(1); seq <= 600; seq++ {
		submit(t, s, newEvent(seq, "u", 2000))
		if seq == 524 {
			full = time.Now()
		}
	}
	h.wait(t, 524, 3*time.Second)
	if reqs := rec.requests(); reqs[0].at.Sub(full) > 500*time.Millisecond {
		t.Errorf("a full 1 MB batch waited %v for the linger", reqs[0].at.Sub(full))
	}
}

// gateSender blocks every Send until open is closed (or ctx ends), then
// answers 202 {}.
func gateSender(open <-chan struct{}) Sender {
	return funcSender{send: func(ctx context.Context, _ []byte) (Result, error) {
		select {
		case <-open:
			return Result{}, nil
		case <-ctx.Done():
			return Result{}, ctx.Err()
		}
	}}
}

func TestSinkRefusesPastMaxPendingEvents(t *testing.T) {
	open := make(chan struct{})
	s, h := startSink(t, Config{BatchSize: 100, Linger: 20 * time.Millisecond, Concurrency: 2, MaxPendingEvents: 5}, gateSender(open), nil)
	for seq := uint64(1); seq <= 5; seq++ {
		submit(t, s, newEvent(seq, fmt.Sprintf("u%d", seq), 0))
	}
	sixth := newEvent(6, "u6", 0)
	if s.TrySubmit(sixth) {
		t.Fatal("TrySubmit accepted a sixth event with MaxPendingEvents 5")
	}
	if st := s.Stats(); st.PendingEvents != 5 || st.Submitted != 5 {
		t.Errorf("Stats = %+v, want 5 pending and 5 submitted", st)
	}
	noSignal(t, s.Ready(), 50*time.Millisecond, "Ready before anything was handled")
	if s.TrySubmit(sixth) {
		t.Fatal("TrySubmit accepted the sixth event while still full")
	}
	close(open)
	waitSignal(t, s.Ready(), time.Second, "Ready after the pending events were handled")
	h.wait(t, 5, time.Second)
	eventually(t, time.Second, "room for the sixth event", func() bool { return s.TrySubmit(sixth) })
	exactlyOnce(t, h.wait(t, 6, time.Second), seqRange(1, 6))
}

func TestSinkRefusesPastMaxPendingBytes(t *testing.T) {
	open := make(chan struct{})
	size := newEvent(1, "u", 500).Size()
	s, h := startSink(t, Config{BatchSize: 100, Linger: 20 * time.Millisecond, Concurrency: 1, MaxPendingBytes: int64(3 * size)}, gateSender(open), nil)
	submit(t, s, newEvent(1, "u", 500), newEvent(2, "u", 500), newEvent(3, "u", 500)) // exactly the limit
	if st := s.Stats(); st.PendingBytes != int64(3*size) {
		t.Errorf("PendingBytes = %d, want %d", st.PendingBytes, 3*size)
	}
	if s.TrySubmit(newEvent(4, "u", 0)) {
		t.Fatal("TrySubmit accepted an event past MaxPendingBytes")
	}
	close(open)
	waitSignal(t, s.Ready(), time.Second, "Ready")
	eventually(t, time.Second, "room again", func() bool { return s.TrySubmit(newEvent(4, "u", 0)) })
	exactlyOnce(t, h.wait(t, 4, time.Second), seqRange(1, 4))
}

func TestSinkAcceptsOneOversizedEventWhenEmpty(t *testing.T) {
	// An event larger than MaxPendingBytes must still get through, alone,
	// or the stream would wait forever.
	open := make(chan struct{})
	s, h := startSink(t, Config{Linger: time.Millisecond, Concurrency: 1, MaxPendingBytes: 10}, gateSender(open), nil)
	submit(t, s, newEvent(1, "u", 0))
	if s.TrySubmit(newEvent(2, "u", 0)) {
		t.Fatal("a second event was accepted past MaxPendingBytes")
	}
	close(open)
	exactlyOnce(t, h.wait(t, 1, time.Second), []uint64{1})
}

func TestSinkRetries500s(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	srv.SetFaults(onesignaltest.Faults{Rate500: 0.5, Seed: 7})
	s, h := startSink(t, Config{BatchSize: 5, Linger: 5 * time.Millisecond, Concurrency: 2}, client, nil)
	const n = 20
	for seq := uint64(1); seq <= n; seq++ {
		submit(t, s, newEvent(seq, fmt.Sprintf("u%d", seq%5), 0))
	}
	exactlyOnce(t, h.wait(t, n, 5*time.Second), seqRange(1, n))
	byUser, keys := acceptedSeqs(t, srv)
	checkOncePerKey(t, keys, n)
	for user, seqs := range byUser {
		if !slices.IsSorted(seqs) {
			t.Errorf("%s: accepted out of order: %v", user, seqs)
		}
	}
	fs, st := srv.Stats(), s.Stats()
	if fs.Status500 == 0 {
		t.Fatal("no 500 was injected; the test proves nothing")
	}
	if int(st.Retries) != fs.Status500 || int(st.Requests) != fs.Requests {
		t.Errorf("sink retried %d times in %d requests; fake answered %d 500s to %d requests", st.Retries, st.Requests, fs.Status500, fs.Requests)
	}
	if st.Delivered != n || st.DeadLettered != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestSinkMetrics(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	srv.SetFaults(onesignaltest.Faults{Rate500: 0.3, ResetRate: 0.3, Seed: 5})
	srv.SetUnknownUsers("ghost")
	m := newRecordingMetrics()
	s, h := startSink(t, Config{BatchSize: 4, Linger: 5 * time.Millisecond, Concurrency: 2, Metrics: m}, client, nil)
	const n = 16
	for seq := uint64(1); seq <= n; seq++ {
		user := fmt.Sprintf("u%d", seq%3)
		if seq == 5 {
			user = "ghost"
		}
		submit(t, s, newEvent(seq, user, 0))
	}
	exactlyOnce(t, h.wait(t, n, 5*time.Second), seqRange(1, n))
	requests, events, retries, accepted := m.snapshot()
	fs, st := srv.Stats(), s.Stats()
	if fs.Status500 == 0 || fs.Resets == 0 {
		t.Fatalf("faults injected: %+v; the test proves nothing", fs)
	}
	wantRequests := map[string]int{"2xx": int(st.Batches), "5xx": fs.Status500, "error": fs.Resets}
	if !maps.Equal(requests, wantRequests) {
		t.Errorf("Request outcomes %v, want %v", requests, wantRequests)
	}
	if events["2xx"] != n {
		t.Errorf("2xx requests carried %d events, want %d", events["2xx"], n)
	}
	if wantRetries := map[string]int{"5xx": fs.Status500, "network": fs.Resets}; !maps.Equal(retries, wantRetries) {
		t.Errorf("Retry reasons %v, want %v", retries, wantRetries)
	}
	if accepted != n-1 {
		t.Errorf("Accepted called %d times, want %d (the unknown user's event is not accepted)", accepted, n-1)
	}
}

func checkOncePerKey(t *testing.T, keys map[string]int, n int) {
	t.Helper()
	if len(keys) != n {
		t.Errorf("%d distinct keys accepted, want %d", len(keys), n)
	}
	for k, c := range keys {
		if c != 1 {
			t.Errorf("key %s recorded %d times", k, c)
		}
	}
}

func TestSinkRetriesConnectionResets(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	srv.SetFaults(onesignaltest.Faults{ResetRate: 0.5, Seed: 3})
	s, h := startSink(t, Config{BatchSize: 4, Linger: 5 * time.Millisecond, Concurrency: 3}, client, nil)
	const n = 16
	for seq := uint64(1); seq <= n; seq++ {
		submit(t, s, newEvent(seq, fmt.Sprintf("u%d", seq%4), 0))
	}
	exactlyOnce(t, h.wait(t, n, 5*time.Second), seqRange(1, n))
	_, keys := acceptedSeqs(t, srv)
	checkOncePerKey(t, keys, n)
	if fs := srv.Stats(); fs.Resets == 0 || int(s.Stats().Retries) != fs.Resets {
		t.Errorf("fake reset %d connections, sink retried %d times", fs.Resets, s.Stats().Retries)
	}
}

func TestSinkRetriesTimeouts(t *testing.T) {
	srv, err := onesignaltest.Start(onesignaltest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	srv.SetFaults(onesignaltest.Faults{StallRate: 0.5, Stall: 5 * time.Second, Seed: 11})
	client := NewClient(ClientConfig{BaseURL: srv.URL(), AppID: srv.AppID(), APIKey: srv.APIKey(), Timeout: 100 * time.Millisecond})
	s, h := startSink(t, Config{BatchSize: 4, Linger: 5 * time.Millisecond, Concurrency: 2}, client, nil)
	const n = 8
	for seq := uint64(1); seq <= n; seq++ {
		submit(t, s, newEvent(seq, fmt.Sprintf("u%d", seq%2), 0))
	}
	exactlyOnce(t, h.wait(t, n, 5*time.Second), seqRange(1, n))
	_, keys := acceptedSeqs(t, srv)
	checkOncePerKey(t, keys, n)
	if srv.Stats().Stalls == 0 || s.Stats().Retries == 0 {
		t.Errorf("stalls %d, retries %d: the test proves nothing", srv.Stats().Stalls, s.Stats().Retries)
	}
}

func TestSinkHonoursRetryAfter(t *testing.T) {
	fake := onesignaltest.New(onesignaltest.Options{})
	var (
		mu       sync.Mutex
		arrivals []time.Time
	)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrivals = append(arrivals, time.Now())
		first := len(arrivals) == 1
		mu.Unlock()
		if first {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(onesignaltest.RateLimitBody))
			return
		}
		fake.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		ts.Close()
		fake.Close()
	})
	client := NewClient(ClientConfig{BaseURL: ts.URL, AppID: fake.AppID(), APIKey: fake.APIKey()})
	// MaxBackoff is far below Retry-After: the server's wait wins.
	m := newRecordingMetrics()
	s, h := startSink(t, Config{Linger: time.Millisecond, Concurrency: 1, MaxBackoff: 10 * time.Millisecond, Metrics: m}, client, nil)
	submit(t, s, newEvent(1, "u", 0))
	exactlyOnce(t, h.wait(t, 1, 3*time.Second), []uint64{1})
	if requests, _, retries, _ := m.snapshot(); !maps.Equal(requests, map[string]int{"429": 1, "2xx": 1}) || !maps.Equal(retries, map[string]int{"429": 1}) {
		t.Errorf("metrics: requests %v, retries %v", requests, retries)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(arrivals) != 2 {
		t.Fatalf("%d requests, want 2", len(arrivals))
	}
	if waited := arrivals[1].Sub(arrivals[0]); waited < time.Second {
		t.Errorf("retried %v after a 429 with Retry-After: 1, want at least 1s", waited)
	}
	if fake.Count() != 1 || s.Stats().Retries != 1 {
		t.Errorf("fake accepted %d events, sink retried %d times; want 1 and 1", fake.Count(), s.Stats().Retries)
	}
}

func TestSinkSplitsBadRequestUntilTheBadEventIsIsolated(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{Reject: func(a onesignaltest.Accepted) string {
		if a.ExternalID == "bad" {
			return "poisoned event"
		}
		return ""
	}})
	dl := &memLetters{}
	var onDL []cdc.DeadLetter
	var mu sync.Mutex
	m := newRecordingMetrics()
	s, h := startSink(t, Config{BatchSize: 16, Linger: time.Second, Concurrency: 1, Metrics: m, OnDeadLetter: func(l cdc.DeadLetter) {
		mu.Lock()
		onDL = append(onDL, l)
		mu.Unlock()
	}}, client, dl)
	var bad *cdc.Event
	for seq := uint64(1); seq <= 16; seq++ {
		user := fmt.Sprintf("u%d", seq)
		if seq == 11 {
			user = "bad"
		}
		ev := newEvent(seq, user, 0)
		if seq == 11 {
			bad = ev
		}
		submit(t, s, ev)
	}
	before := time.Now()
	exactlyOnce(t, h.wait(t, 16, 2*time.Second), seqRange(1, 16))

	letters := dl.get()
	if len(letters) != 1 {
		t.Fatalf("%d dead letters, want 1: %+v", len(letters), letters)
	}
	l := letters[0]
	if l.Pos != bad.Pos || l.Table != "public.events" || l.IdempotencyKey != bad.IdempotencyKey || string(l.Event) != string(bad.JSON) || l.Row != nil {
		t.Errorf("dead letter %+v does not describe event 11", l)
	}
	if want := "OneSignal rejected the event: OneSignal answered 400: poisoned event"; l.Reason != want {
		t.Errorf("Reason = %q, want %q", l.Reason, want)
	}
	if l.Attempts != 1 || l.FirstFailure.IsZero() || l.LastFailure.Before(l.FirstFailure) || l.FirstFailure.After(time.Now()) {
		t.Errorf("Attempts %d, FirstFailure %v, LastFailure %v (test started at %v)", l.Attempts, l.FirstFailure, l.LastFailure, before)
	}
	// 16 -> 8+8 -> 4+4 -> 2+2 -> 1+1: one request, then two per level.
	if got := srv.Requests(); got != 9 {
		t.Errorf("%d requests, want 9", got)
	}
	// The halves go in order: the 15 good events arrive in submission order.
	if got, want := arrivalSeqs(t, srv), []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16}; !slices.Equal(got, want) {
		t.Errorf("accepted %v, want %v", got, want)
	}
	st := s.Stats()
	if st.Delivered != 15 || st.DeadLettered != 1 || st.Batches != 1 || st.Requests != 9 {
		t.Errorf("Stats = %+v", st)
	}
	// The requests holding the bad event (16, 8, 4, 2, 1 events) fail; a
	// 400 is not a retry.
	requests, events, retries, _ := m.snapshot()
	if !maps.Equal(requests, map[string]int{"400": 5, "2xx": 4}) || !maps.Equal(events, map[string]int{"400": 31, "2xx": 15}) || len(retries) != 0 {
		t.Errorf("metrics: requests %v, events %v, retries %v", requests, events, retries)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(onDL) != 1 || onDL[0].Reason != l.Reason {
		t.Errorf("OnDeadLetter saw %+v", onDL)
	}
}

func TestSinkSplitIsolatesSeveralBadEvents(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{Reject: func(a onesignaltest.Accepted) string {
		if strings.HasPrefix(a.ExternalID, "bad") {
			return "no " + a.ExternalID
		}
		return ""
	}})
	dl := &memLetters{}
	s, h := startSink(t, Config{BatchSize: 10, Linger: time.Second, Concurrency: 1}, client, dl)
	users := []string{"a", "bad1", "b", "c", "d", "e", "f", "g", "h", "bad2"}
	for i, u := range users {
		submit(t, s, newEvent(uint64(i+1), u, 0))
	}
	exactlyOnce(t, h.wait(t, 10, 2*time.Second), seqRange(1, 10))
	var reasons []string
	for _, l := range dl.get() {
		reasons = append(reasons, l.Reason)
	}
	want := []string{"OneSignal rejected the event: OneSignal answered 400: no bad1", "OneSignal rejected the event: OneSignal answered 400: no bad2"}
	if !slices.Equal(reasons, want) {
		t.Errorf("dead letter reasons %q, want %q", reasons, want)
	}
	if srv.Count() != 8 {
		t.Errorf("fake accepted %d events, want 8", srv.Count())
	}
}

func TestSinkNotFoundBecomesDeadLetter(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	srv.SetUnknownUsers("ghost")
	dl := &memLetters{}
	s, h := startSink(t, Config{BatchSize: 10, Linger: time.Second, Concurrency: 1}, client, dl)
	for seq := uint64(1); seq <= 10; seq++ {
		user := "alive"
		if seq == 4 || seq == 7 {
			user = "ghost"
		}
		submit(t, s, newEvent(seq, user, 0))
	}
	exactlyOnce(t, h.wait(t, 10, 2*time.Second), seqRange(1, 10))
	letters := dl.get()
	if len(letters) != 2 {
		t.Fatalf("%d dead letters, want 2", len(letters))
	}
	for i, seq := range []uint64{4, 7} {
		ev := newEvent(seq, "ghost", 0)
		l := letters[i]
		if l.Pos != ev.Pos || l.IdempotencyKey != ev.IdempotencyKey || string(l.Event) != string(ev.JSON) {
			t.Errorf("letter %d is not event %d: %+v", i, seq, l)
		}
		if want := "OneSignal: not found: failed to find a onesignal_id for user_id ghost"; l.Reason != want {
			t.Errorf("Reason = %q, want %q", l.Reason, want)
		}
		if l.Attempts != 1 || l.FirstFailure.IsZero() || l.LastFailure.Before(l.FirstFailure) {
			t.Errorf("Attempts %d, FirstFailure %v, LastFailure %v", l.Attempts, l.FirstFailure, l.LastFailure)
		}
	}
	if st := s.Stats(); st.Delivered != 8 || st.DeadLettered != 2 || st.Dropped != 0 || s.Latency.Count() != 8 {
		t.Errorf("Stats = %+v, latency samples %d", st, s.Latency.Count())
	}
	if srv.Count() != 8 || srv.Stats().NotFound != 2 {
		t.Errorf("fake: %+v", srv.Stats())
	}
}

func TestSinkNotFoundDropped(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	srv.SetUnknownUsers("ghost")
	dl := &memLetters{}
	s, h := startSink(t, Config{BatchSize: 5, Linger: time.Second, Concurrency: 1, UnknownUser: "drop"}, client, dl)
	submit(t, s, newEvent(1, "ghost", 0), newEvent(2, "alive", 0), newEvent(3, "ghost", 0), newEvent(4, "alive", 0), newEvent(5, "alive", 0))
	exactlyOnce(t, h.wait(t, 5, 2*time.Second), seqRange(1, 5))
	if n := len(dl.get()); n != 0 {
		t.Errorf("%d dead letters, want 0", n)
	}
	if st := s.Stats(); st.Dropped != 2 || st.Delivered != 3 || st.DeadLettered != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestSinkNothingHandledAfterAFatalError(t *testing.T) {
	// The first request is refused; every later one (on any lane) would
	// succeed: none of them may be reported handled.
	var calls atomic.Int32
	sender := funcSender{send: func(context.Context, []byte) (Result, error) {
		if calls.Add(1) == 1 {
			return Result{}, &StatusError{Status: http.StatusForbidden, Errors: []string{"Access denied."}}
		}
		return Result{}, nil
	}}
	s, h := startSink(t, Config{BatchSize: 1, Linger: time.Millisecond, Concurrency: 4}, sender, nil)
	submit(t, s, newEvent(1, "first", 0))
	select {
	case err := <-s.Err():
		if !errors.Is(err, ErrUnauthorized) {
			t.Errorf("Err() = %v", err)
		}
	case <-time.After(time.Second):
		t.Fatal("no error after a 403")
	}
	for seq := uint64(2); seq <= 21; seq++ {
		submit(t, s, newEvent(seq, fmt.Sprintf("user%d", seq), 0))
	}
	time.Sleep(100 * time.Millisecond)
	if seqs := h.get(); len(seqs) != 0 {
		t.Errorf("seqs %v reported handled after the fatal error", seqs)
	}
}

func TestSinkUnauthorizedStops(t *testing.T) {
	const secret = "os_v2_app_wrong-secret-4711"
	srv, err := onesignaltest.Start(onesignaltest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	client := NewClient(ClientConfig{BaseURL: srv.URL(), AppID: srv.AppID(), APIKey: secret})
	s, h := startSink(t, Config{BatchSize: 3, Linger: time.Second, Concurrency: 4}, client, nil)
	submit(t, s, newEvent(1, "u", 0), newEvent(2, "u", 0), newEvent(3, "u", 0))
	var got error
	select {
	case got = <-s.Err():
	case <-time.After(2 * time.Second):
		t.Fatal("no error on Err after a 403")
	}
	if !errors.Is(got, ErrUnauthorized) {
		t.Errorf("Err() = %v, want one wrapping ErrUnauthorized", got)
	}
	if strings.Contains(got.Error(), secret) || strings.Contains(got.Error(), "wrong-secret") {
		t.Errorf("the error shows the API key: %v", got)
	}
	// The failed lane has stopped: it sends nothing more.
	submit(t, s, newEvent(4, "u", 0), newEvent(5, "u", 0), newEvent(6, "u", 0))
	time.Sleep(100 * time.Millisecond)
	if seqs := h.get(); len(seqs) != 0 {
		t.Errorf("seqs %v reported handled after a 403", seqs)
	}
	if st := srv.Stats(); st.Forbidden != 1 || st.Requests != 1 {
		t.Errorf("fake stats %+v: a 403 must not be retried", st)
	}
}

func TestSinkForbidAfterStopsWithoutHandlingTheFailingBatch(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	srv.SetFaults(onesignaltest.Faults{ForbidAfter: 2})
	s, h := startSink(t, Config{BatchSize: 5, Linger: time.Hour, Concurrency: 1}, client, nil)
	for seq := uint64(1); seq <= 5; seq++ {
		submit(t, s, newEvent(seq, "u", 0))
	}
	h.wait(t, 5, time.Second)
	for seq := uint64(6); seq <= 10; seq++ {
		submit(t, s, newEvent(seq, "u", 0))
	}
	h.wait(t, 10, time.Second)
	for seq := uint64(11); seq <= 20; seq++ {
		submit(t, s, newEvent(seq, "u", 0))
	}
	select {
	case err := <-s.Err():
		if !errors.Is(err, ErrUnauthorized) {
			t.Errorf("Err() = %v, want ErrUnauthorized", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no error after ForbidAfter")
	}
	time.Sleep(100 * time.Millisecond)
	exactlyOnce(t, h.get(), seqRange(1, 10))
	if srv.Count() != 10 || srv.Requests() != 3 {
		t.Errorf("fake accepted %d events in %d requests; want 10 in 3", srv.Count(), srv.Requests())
	}
}

func TestSinkOtherStatusIsFatal(t *testing.T) {
	var calls atomic.Int32
	sender := funcSender{send: func(context.Context, []byte) (Result, error) {
		calls.Add(1)
		return Result{}, &StatusError{Status: http.StatusNotFound, Errors: []string{"app not found"}}
	}}
	s, h := startSink(t, Config{Linger: time.Millisecond, Concurrency: 1}, sender, nil)
	submit(t, s, newEvent(1, "u", 0))
	select {
	case err := <-s.Err():
		var se *StatusError
		if !errors.As(err, &se) || se.Status != 404 || errors.Is(err, ErrUnauthorized) {
			t.Errorf("Err() = %v, want the 404 StatusError", err)
		}
		if want := "OneSignal request failed permanently: OneSignal answered 404: app not found; check onesignal.app_id and onesignal.url"; err.Error() != want {
			t.Errorf("Err() = %q, want %q", err, want)
		}
	case <-time.After(time.Second):
		t.Fatal("no error after a 404")
	}
	time.Sleep(50 * time.Millisecond)
	if len(h.get()) != 0 || calls.Load() != 1 {
		t.Errorf("handled %v after %d calls; want nothing after 1", h.get(), calls.Load())
	}
}

func TestSinkWrongAppIDDeadLettersEverything(t *testing.T) {
	srv, err := onesignaltest.Start(onesignaltest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	client := NewClient(ClientConfig{BaseURL: srv.URL(), AppID: "00000000-0000-4000-8000-000000000000", APIKey: srv.APIKey()})
	dl := &memLetters{}
	s, h := startSink(t, Config{BatchSize: 4, Linger: time.Millisecond, Concurrency: 1}, client, dl)
	submit(t, s, newEvent(1, "u", 0), newEvent(2, "u", 0), newEvent(3, "u", 0), newEvent(4, "u", 0))
	select {
	case <-s.Err():
	case <-time.After(time.Second):
		t.Errorf("no fatal error; handled %v, dead letters %d", h.get(), len(dl.get()))
	}
}

func TestSinkRejectedRowsGoStraightToDeadLetters(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	dl := &memLetters{}
	s, h := startSink(t, Config{BatchSize: 10, Linger: 20 * time.Millisecond, Concurrency: 1}, client, dl)
	r1 := rejectEvent(1, `event name column "kind" is NULL`)
	r3 := rejectEvent(3, `external_id column "user_id" is empty`)
	submit(t, s, r1, newEvent(2, "u", 0), r3)
	exactlyOnce(t, h.wait(t, 3, time.Second), seqRange(1, 3))
	letters := dl.get()
	if len(letters) != 2 {
		t.Fatalf("%d dead letters, want 2", len(letters))
	}
	for i, ev := range []*cdc.Event{r1, r3} {
		l := letters[i]
		if l.Reason != ev.Reject || string(l.Row) != string(ev.Row) || l.Event != nil || l.Pos != ev.Pos ||
			l.IdempotencyKey != ev.IdempotencyKey || l.Table != ev.Table || l.Attempts != 0 {
			t.Errorf("letter %d = %+v, want one for the rejected row %d", i, l, ev.Seq)
		}
		if !l.FirstFailure.Equal(ev.CommitTime) || l.LastFailure.Before(l.FirstFailure) {
			t.Errorf("letter %d: FirstFailure %v (commit %v), LastFailure %v", i, l.FirstFailure, ev.CommitTime, l.LastFailure)
		}
	}
	if srv.Count() != 1 || srv.Requests() != 1 {
		t.Errorf("fake accepted %d events in %d requests, want 1 in 1", srv.Count(), srv.Requests())
	}

	// A batch of rejected rows only sends nothing.
	submit(t, s, rejectEvent(4, "x"), rejectEvent(5, "y"))
	exactlyOnce(t, h.wait(t, 5, time.Second), seqRange(1, 5))
	if srv.Requests() != 1 {
		t.Errorf("%d requests, want still 1", srv.Requests())
	}
	if st := s.Stats(); st.DeadLettered != 4 || st.Delivered != 1 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestSinkRetriesFailingDeadLetterStore(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	srv.SetUnknownUsers("ghost")
	var failing atomic.Bool
	failing.Store(true)
	dl := &memLetters{fail: func(int) error {
		if failing.Load() {
			return errors.New("disk full")
		}
		return nil
	}}
	s, h := startSink(t, Config{BatchSize: 3, Linger: time.Second, Concurrency: 1}, client, dl)
	submit(t, s, newEvent(1, "alive", 0), rejectEvent(2, "bad row"), newEvent(3, "ghost", 0))
	// The first retry comes 100-300 ms after the first failure.
	eventually(t, 2*time.Second, "two failed writes", func() bool {
		dl.mu.Lock()
		defer dl.mu.Unlock()
		return dl.writes >= 2
	})
	if seqs := h.get(); len(seqs) != 0 {
		t.Fatalf("seqs %v reported handled while the dead letters are not durable", seqs)
	}
	if srv.Count() != 1 {
		t.Errorf("fake accepted %d events, want 1 (delivery does not wait for the dead letters)", srv.Count())
	}
	failing.Store(false)
	exactlyOnce(t, h.wait(t, 3, 2*time.Second), seqRange(1, 3))
	letters := dl.get()
	if len(letters) != 2 || letters[0].Reason != "bad row" || !strings.HasPrefix(letters[1].Reason, "OneSignal: not found: ") {
		t.Errorf("dead letters %+v", letters)
	}
	if st := s.Stats(); st.DeadLettered != 2 || st.Delivered != 1 || st.Requests != 1 {
		t.Errorf("Stats = %+v: the batch must not be sent again", st)
	}
}

func TestSinkStopsWhenContextEnds(t *testing.T) {
	tests := []struct {
		name   string
		sender Sender
		dl     DeadLetterStore
		ev     *cdc.Event
	}{
		{"blocked in Send", gateSender(make(chan struct{})), &memLetters{}, newEvent(1, "u", 0)},
		{"backing off after 500s", funcSender{send: func(context.Context, []byte) (Result, error) {
			return Result{}, &StatusError{Status: 503}
		}}, &memLetters{}, newEvent(1, "u", 0)},
		{"retrying the dead-letter store", gateSender(nil), funcLetters{write: func(context.Context, []cdc.DeadLetter) error {
			return errors.New("read-only file system")
		}}, rejectEvent(1, "bad")},
		{"dead-letter store blocked", gateSender(nil), funcLetters{write: func(ctx context.Context, _ []cdc.DeadLetter) error {
			<-ctx.Done()
			return ctx.Err()
		}}, rejectEvent(1, "bad")},
		{"idle", gateSender(nil), &memLetters{}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHandledLog()
			s := New(Config{Linger: time.Millisecond, Concurrency: 3, MaxBackoff: time.Hour}, tt.sender, tt.dl, h.add)
			ctx, cancel := context.WithCancel(context.Background())
			s.Start(ctx)
			if tt.ev != nil {
				submit(t, s, tt.ev)
			}
			time.Sleep(30 * time.Millisecond)
			cancel()
			waitReturns(t, s, time.Second)
			if seqs := h.get(); len(seqs) != 0 {
				t.Errorf("handled %v", seqs)
			}
			select {
			case err := <-s.Err():
				t.Errorf("Err() = %v after a plain stop", err)
			default:
			}
		})
	}
}
