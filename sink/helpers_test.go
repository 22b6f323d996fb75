package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// TestMain fails the run when a lane (or a fake server) outlives the tests:
// every test must stop what it started. (goleak is not a dependency.)
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaked := leakedGoroutines(2 * time.Second); leaked != "" {
			fmt.Fprintf(os.Stderr, "leaked goroutines:\n%s\n", leaked)
			code = 1
		}
	}
	os.Exit(code)
}

func leakedGoroutines(d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "pgsignal/sink.(*lane)") || strings.Contains(g, "pgsignal/sink.(*Sink).Start") ||
				strings.Contains(g, "onesignaltest.(*Server)") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 || time.Now().After(deadline) {
			return strings.Join(leaked, "\n\n")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

const testSystemID, testSlot = "7311234567890123456", "pgsignal"

// newEvent is event seq for user, with properties {"seq":seq,"pad":"xx..."}
// padded so that the event JSON is at least size bytes (0: no padding).
func newEvent(seq uint64, user string, size int) *cdc.Event {
	pos := cdc.Position{CommitLSN: cdc.LSN(0x1000 + seq<<8), Ordinal: uint32(seq % 7)}
	key := cdc.IdempotencyKey(testSystemID, testSlot, pos)
	head := fmt.Sprintf(`{"name":"purchase","external_id":%q,"timestamp":"2025-10-21T19:09:32.263Z","idempotency_key":%q,"properties":{"seq":%d,"pad":"`,
		user, key, seq)
	tail := `"}}`
	pad := max(0, size-len(head)-len(tail))
	return &cdc.Event{
		Seq: seq, Pos: pos, Table: "public.events", Name: "purchase", ExternalID: user, IdempotencyKey: key,
		CommitTime: time.Now(),
		JSON:       []byte(head + strings.Repeat("x", pad) + tail),
	}
}

// rejectEvent is a row the mapper could not map.
func rejectEvent(seq uint64, reason string) *cdc.Event {
	ev := newEvent(seq, "", 0)
	ev.JSON, ev.Name, ev.ExternalID = nil, "", ""
	ev.Row = []byte(fmt.Sprintf(`{"id":%d,"kind":null}`, seq))
	ev.Reject = reason
	return ev
}

// handledLog records the sequence numbers reported handled.
type handledLog struct {
	mu      sync.Mutex
	seqs    []uint64
	changed chan struct{}
}

func newHandledLog() *handledLog { return &handledLog{changed: make(chan struct{}, 1)} }

func (h *handledLog) add(seqs ...uint64) {
	h.mu.Lock()
	h.seqs = append(h.seqs, seqs...)
	h.mu.Unlock()
	select {
	case h.changed <- struct{}{}:
	default:
	}
}

func (h *handledLog) get() []uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.seqs)
}

// wait waits until at least n seqs were reported.
func (h *handledLog) wait(t *testing.T, n int, timeout time.Duration) []uint64 {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		if got := h.get(); len(got) >= n {
			return got
		}
		select {
		case <-h.changed:
		case <-deadline.C:
			t.Fatalf("%d seqs handled after %v, want %d", len(h.get()), timeout, n)
		}
	}
}

// exactlyOnce asserts that got holds each of 1..n exactly once.
func exactlyOnce(t *testing.T, got []uint64, want []uint64) {
	t.Helper()
	count := map[uint64]int{}
	for _, s := range got {
		count[s]++
	}
	for _, s := range want {
		if count[s] != 1 {
			t.Errorf("seq %d reported handled %d times, want once", s, count[s])
		}
		delete(count, s)
	}
	for s, n := range count {
		t.Errorf("seq %d reported handled %d times, never submitted", s, n)
	}
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// memLetters is a DeadLetterStore in memory; fail, when set, decides whether
// a Write fails.
type memLetters struct {
	mu      sync.Mutex
	letters []cdc.DeadLetter
	writes  int
	fail    func(call int) error
}

func (m *memLetters) Write(_ context.Context, letters []cdc.DeadLetter) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.writes++
	if m.fail != nil {
		if err := m.fail(m.writes); err != nil {
			return err
		}
	}
	m.letters = append(m.letters, letters...)
	return nil
}

func (m *memLetters) get() []cdc.DeadLetter {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.letters)
}

// funcLetters is a DeadLetterStore made of a function.
type funcLetters struct {
	write func(ctx context.Context, letters []cdc.DeadLetter) error
}

func (f funcLetters) Write(ctx context.Context, letters []cdc.DeadLetter) error {
	return f.write(ctx, letters)
}

// funcSender is a Sender made of a function.
type funcSender struct {
	send func(ctx context.Context, body []byte) (Result, error)
}

func (f funcSender) Send(ctx context.Context, body []byte) (Result, error) { return f.send(ctx, body) }

// request is one request a recordingSender saw.
type request struct {
	at     time.Time
	size   int
	events int
}

// recordingSender records the requests it forwards.
type recordingSender struct {
	next Sender
	mu   sync.Mutex
	reqs []request
}

func (r *recordingSender) Send(ctx context.Context, body []byte) (Result, error) {
	at := time.Now() // before decoding: a 1 MB body takes long under -race
	var b struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(body, &b); err != nil {
		panic(fmt.Sprintf("sink sent an invalid body: %v", err))
	}
	r.mu.Lock()
	r.reqs = append(r.reqs, request{at: at, size: len(body), events: len(b.Events)})
	r.mu.Unlock()
	return r.next.Send(ctx, body)
}

func (r *recordingSender) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.reqs)
}

// startFake starts the fake OneSignal and returns it with a client for it.
func startFake(t *testing.T, opts onesignaltest.Options) (*onesignaltest.Server, *Client) {
	t.Helper()
	srv, err := onesignaltest.Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close fake: %v", err)
		}
	})
	return srv, NewClient(ClientConfig{BaseURL: srv.URL(), AppID: srv.AppID(), APIKey: srv.APIKey(), Timeout: 5 * time.Second})
}

// startSink starts a sink and stops it (checking that its lanes return)
// when the test ends.
func startSink(t *testing.T, cfg Config, client Sender, dl DeadLetterStore) (*Sink, *handledLog) {
	t.Helper()
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 20 * time.Millisecond
	}
	if dl == nil {
		dl = &memLetters{}
	}
	h := newHandledLog()
	s := New(cfg, client, dl, h.add)
	ctx, cancel := context.WithCancel(context.Background())
	s.Start(ctx)
	t.Cleanup(func() {
		cancel()
		waitReturns(t, s, 2*time.Second)
	})
	return s, h
}

// waitReturns asserts that s.Wait returns within d.
func waitReturns(t *testing.T, s *Sink, d time.Duration) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		s.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Errorf("Wait did not return within %v of the context's end", d)
	}
}

// submit submits every event, failing the test if the sink is full.
func submit(t *testing.T, s *Sink, evs ...*cdc.Event) {
	t.Helper()
	for _, ev := range evs {
		if !s.TrySubmit(ev) {
			t.Fatalf("TrySubmit(seq %d) refused", ev.Seq)
		}
	}
}

// acceptedSeqs returns, per external_id, the seq property of the events the
// fake accepted, in arrival order, and each idempotency key's count.
func acceptedSeqs(t *testing.T, srv *onesignaltest.Server) (map[string][]uint64, map[string]int) {
	t.Helper()
	byUser := map[string][]uint64{}
	keys := map[string]int{}
	for _, a := range srv.Events() {
		var p struct {
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(a.Properties, &p); err != nil {
			t.Fatalf("properties %s: %v", a.Properties, err)
		}
		byUser[a.ExternalID] = append(byUser[a.ExternalID], p.Seq)
		keys[a.IdempotencyKey]++
	}
	return byUser, keys
}

// noSignal asserts that ch stays silent for d.
func noSignal[T any](t *testing.T, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s: got %v", what, v)
	case <-time.After(d):
	}
}

// waitSignal asserts that ch delivers within d.
func waitSignal[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: nothing after %v", what, d)
		panic("unreachable")
	}
}

// arrivalSeqs returns the seq property of every event the fake accepted, in
// arrival order.
func arrivalSeqs(t *testing.T, srv *onesignaltest.Server) []uint64 {
	t.Helper()
	var out []uint64
	for _, a := range srv.Events() {
		var p struct {
			Seq uint64 `json:"seq"`
		}
		if err := json.Unmarshal(a.Properties, &p); err != nil {
			t.Fatalf("properties %s: %v", a.Properties, err)
		}
		out = append(out, p.Seq)
	}
	return out
}

// recordingMetrics is a Metrics that counts what it is told.
type recordingMetrics struct {
	mu       sync.Mutex
	requests map[string]int // by outcome
	events   map[string]int // events carried, by outcome
	retries  map[string]int // by reason
	handled  map[string]int // by "table outcome"
	accepted int
}

func newRecordingMetrics() *recordingMetrics {
	return &recordingMetrics{requests: map[string]int{}, events: map[string]int{}, retries: map[string]int{}, handled: map[string]int{}}
}

func (m *recordingMetrics) Handled(table, outcome string, n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.handled[table+" "+outcome] += n
}

func (m *recordingMetrics) handledCounts() map[string]int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.handled)
}

func (m *recordingMetrics) Request(_ time.Duration, outcome string, events int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[outcome]++
	m.events[outcome] += events
}

func (m *recordingMetrics) Retry(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.retries[reason]++
}

func (m *recordingMetrics) Accepted(time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.accepted++
}

func (m *recordingMetrics) snapshot() (requests, events, retries map[string]int, accepted int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.requests), maps.Clone(m.events), maps.Clone(m.retries), m.accepted
}
