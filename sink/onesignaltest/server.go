package onesignaltest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// Defaults and limits of the fake, as published by OneSignal (see
// onesignal-api.md).
const (
	// DefaultAppID is the app id a Server serves when Options.AppID is empty.
	DefaultAppID = "5eb5a37e-b458-11e3-ac11-000c2940e62c"
	// DefaultAPIKey is the App API key a Server accepts when Options.APIKey is
	// empty.
	DefaultAPIKey = "os_v2_app_testkey"
	// DefaultDedupWindow is how long an accepted idempotency_key suppresses
	// duplicates when Options.DedupWindow is zero.
	DefaultDedupWindow = 4 * time.Hour
	// DefaultAddr is the address Start listens on when Options.Addr is empty.
	DefaultAddr = "127.0.0.1:0"
	// DefaultRetryAfter is the Retry-After of injected 429s when
	// Faults.RetryAfter is zero.
	DefaultRetryAfter = time.Second

	// MaxBodyBytes is the largest request body accepted (1 MB); a larger one
	// is answered 413.
	MaxBodyBytes = 1 << 20
	// MaxEventBytes is the largest serialized event accepted, measured on the
	// event's JSON bytes as sent.
	MaxEventBytes = 2024
	// MaxNameChars is the longest event name accepted, in characters (runes).
	MaxNameChars = 128

	// AccessDeniedBody is the exact body of a 403 answer.
	AccessDeniedBody = `{"errors":["Access denied.  Please include an 'Authorization: ...' header with a valid API key (https://documentation.onesignal.com/docs/en/keys-and-ids#api-keys)."]}`
	// RateLimitBody is the exact body of a 429 answer.
	RateLimitBody = `{"errors":["API rate limit exceeded."]}`
	// EmptyBatchBody is the exact body of the 400 answering an empty batch
	// when Options.RejectEmptyBatch is set.
	EmptyBatchBody = `{"errors":["events must contain at least one event"]}`
)

// closeGrace bounds how long Close lets connections finish before it closes
// them by force.
const closeGrace = 2 * time.Second

// Options configure a Server. Zero values give the defaults shown.
type Options struct {
	// AppID is the only app id served; default DefaultAppID.
	AppID string
	// APIKey is the only App API key accepted; default DefaultAPIKey.
	APIKey string
	// DedupWindow is how long an accepted idempotency_key makes later events
	// with the same key duplicates, which are dropped and counted. Zero means
	// DefaultDedupWindow (4h); a negative value disables deduplication.
	DedupWindow time.Duration
	// CountOnly is the cheap mode for benchmarks: events are validated and
	// counted, idempotency keys are kept for deduplication, but no Accepted
	// record is kept (Events returns an empty slice).
	CountOnly bool
	// Addr is the listen address for Start; default DefaultAddr. It must be a
	// loopback address (127.0.0.0/8, ::1 or localhost).
	Addr string
	// OnAccept, when set, is called synchronously, one call at a time and in
	// arrival order, for each newly accepted event (not for duplicates,
	// unknown users or events of a rejected request). Count includes an event
	// only after its OnAccept call returned. It must not call back into the
	// handler's request, but may call the Server's methods.
	OnAccept func(Accepted)
	// Reject, when set, is an extra per-event validation run after the
	// built-in one: a non-empty return makes the WHOLE request a 400 whose
	// errors list that text verbatim (one entry per rejecting event). It is
	// called for every event of a valid request, before unknown users and
	// duplicates are sorted out, and may be called concurrently.
	Reject func(Accepted) string
	// Now is the clock used for ReceivedAt and the dedup window; default
	// time.Now.
	Now func() time.Time
	// RejectEmptyBatch makes a request with no events a 400 with
	// EmptyBatchBody, as a strict server may answer: OneSignal documents no
	// answer for an empty batch. By default it is a 202 with {}.
	RejectEmptyBatch bool
}

// Accepted is one event the fake accepted.
type Accepted struct {
	// Name, ExternalID and OnesignalID are the event's fields as sent ("" when
	// absent).
	Name, ExternalID, OnesignalID string
	// Timestamp is the timestamp as sent, "" when absent.
	Timestamp string
	// IdempotencyKey is the key as sent, "" when absent.
	IdempotencyKey string
	// Properties is the object sent as `properties` or `payload`; nil when
	// absent or null. It is shared: do not modify it.
	Properties json.RawMessage
	// ReceivedAt is when the request carrying the event was processed.
	ReceivedAt time.Time
	// Request is the 1-based number of the request that carried it, as
	// counted by Requests.
	Request int
}

// Faults are the failures a Server injects. The zero value injects none.
//
// Per request, after routing and authentication and before the body is read,
// two numbers u and v are drawn from the RNG (always two, so the sequence is
// deterministic for a given Seed and request order). The outcome is, in this
// order of precedence: 403 when ForbidAfter applies; a reset when
// u < ResetRate; a 500 when u < ResetRate+Rate500; a 429 when
// u < ResetRate+Rate500+Rate429; otherwise normal processing. Independently,
// the request first sleeps Stall when v < StallRate. Latency is slept before
// every request is handled, whatever its outcome.
type Faults struct {
	// Rate500 is the fraction of requests answered 500.
	Rate500 float64
	// Rate429 is the fraction answered 429 with RateLimitBody.
	Rate429 float64
	// RetryAfter is the Retry-After header value of 429s, rounded up to whole
	// seconds; default DefaultRetryAfter (1s).
	RetryAfter time.Duration
	// StallRate is the fraction of requests that sleep Stall before being
	// processed.
	StallRate float64
	// Stall is how long a stalled request sleeps.
	Stall time.Duration
	// ResetRate is the fraction of requests whose TCP connection is reset
	// (hijack, SetLinger(0), close) without an answer. When the
	// ResponseWriter cannot be hijacked (e.g. httptest.ResponseRecorder), the
	// handler panics with http.ErrAbortHandler instead.
	ResetRate float64
	// Latency is added to every response.
	Latency time.Duration
	// ForbidAfter, when > 0, makes every request after the first ForbidAfter
	// get a 403 with AccessDeniedBody. Requests are counted from the
	// SetFaults call, among those that pass routing and authentication.
	ForbidAfter int
	// Seed seeds the RNG that picks faults; SetFaults reseeds it.
	Seed int64
}

// Stats counts what a Server did since it was created or Reset.
type Stats struct {
	// Requests is every request received, whatever its outcome.
	Requests int
	// Accepted is the events accepted (unique keys plus events without key).
	Accepted int
	// Duplicates is the events dropped for a repeated idempotency_key.
	Duplicates int
	// NotFound is the events answered "not found" (unknown users).
	NotFound int
	// BadRequests is the requests answered 400.
	BadRequests int
	// TooLarge is the requests answered 413.
	TooLarge int
	// Status500 is the requests answered 500 by fault injection.
	Status500 int
	// Status429 is the requests answered 429 by fault injection.
	Status429 int
	// Resets is the connections reset by fault injection.
	Resets int
	// Stalls is the requests stalled by fault injection.
	Stalls int
	// Forbidden is the requests answered 403, for a bad key or ForbidAfter.
	Forbidden int
}

// Server is the fake OneSignal Custom Events API. Create it with New (a
// handler only) or Start (listening); every method is safe for concurrent use.
type Server struct {
	opts Options // defaults applied

	mu         sync.Mutex
	stats      Stats
	events     []Accepted
	keys       map[[16]byte]int64 // idempotency key -> accepted at (UnixNano)
	pruneAt    int                // len(keys) at which expired keys are pruned
	changed    chan struct{}      // closed and replaced when Accepted grows
	faults     Faults
	rng        *rand.Rand
	forbidSeen int // requests counted toward Faults.ForbidAfter
	unknown    map[string]struct{}

	acceptMu sync.Mutex // serializes the record phase when OnAccept is set

	lifeMu    sync.Mutex
	closed    bool
	handlers  sync.WaitGroup
	done      chan struct{} // closed by Close; wakes sleeping handlers
	closeOnce sync.Once
	closeErr  error

	srv       *http.Server
	serveDone chan struct{}
	url       string
}

var _ http.Handler = (*Server)(nil)

// New returns a Server that is an http.Handler and does not listen; URL
// returns "". Close still waits for its running handlers.
func New(opts Options) *Server {
	if opts.AppID == "" {
		opts.AppID = DefaultAppID
	}
	if opts.APIKey == "" {
		opts.APIKey = DefaultAPIKey
	}
	if opts.DedupWindow == 0 {
		opts.DedupWindow = DefaultDedupWindow
	}
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Server{
		opts:    opts,
		keys:    make(map[[16]byte]int64),
		pruneAt: minPrune,
		changed: make(chan struct{}),
		rng:     newRNG(0),
		unknown: make(map[string]struct{}),
		done:    make(chan struct{}),
	}
}

// Start is New plus listening on opts.Addr, which must be a loopback address.
// It serves in a goroutine that Close stops; URL gives the base URL, e.g.
// "http://127.0.0.1:41234".
func Start(opts Options) (*Server, error) {
	s := New(opts)
	if err := checkLoopback(s.opts.Addr); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", s.opts.Addr, err)
	}
	s.url = "http://" + ln.Addr().String()
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
	}
	s.serveDone = make(chan struct{})
	go func() {
		defer close(s.serveDone)
		_ = s.srv.Serve(ln) // always ErrServerClosed or a listener error after Close
	}()
	return s, nil
}

// checkLoopback returns an error unless addr is host:port with a loopback
// host.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("parse listen address %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("listen address %q: host must be loopback", addr)
}

// URL returns the base URL of a started Server ("http://127.0.0.1:port"), or
// "" for one made by New.
func (s *Server) URL() string { return s.url }

// AppID returns the app id the Server serves.
func (s *Server) AppID() string { return s.opts.AppID }

// APIKey returns the App API key the Server accepts.
func (s *Server) APIKey() string { return s.opts.APIKey }

// Close stops listening, wakes stalled or sleeping handlers (which then answer
// 503), closes connections that do not finish within a short grace period and
// waits for every handler to return. Requests that arrive afterwards through
// ServeHTTP are answered 503. Close is idempotent.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.lifeMu.Lock()
		s.closed = true
		s.lifeMu.Unlock()
		close(s.done)
		if s.srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), closeGrace)
			err := s.srv.Shutdown(ctx)
			cancel()
			if errors.Is(err, context.DeadlineExceeded) {
				err = s.srv.Close()
			}
			if err != nil {
				s.closeErr = fmt.Errorf("close fake OneSignal server: %w", err)
			}
			<-s.serveDone
		}
		s.handlers.Wait()
	})
	return s.closeErr
}

// enter registers a running handler; it reports false once Close began.
func (s *Server) enter() bool {
	s.lifeMu.Lock()
	defer s.lifeMu.Unlock()
	if s.closed {
		return false
	}
	s.handlers.Add(1)
	return true
}

// SetFaults replaces the injected faults, reseeds the RNG with f.Seed and
// restarts the ForbidAfter count.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	s.rng = newRNG(f.Seed)
	s.forbidSeen = 0
}

func newRNG(seed int64) *rand.Rand {
	return rand.New(rand.NewPCG(uint64(seed), 0x6f6e657369676e61)) // "onesigna"
}

// SetUnknownUsers replaces the set of external_ids OneSignal does not know:
// their events get a per-event "not found" in a 202 and are not recorded.
// With no arguments it clears the set.
func (s *Server) SetUnknownUsers(externalIDs ...string) {
	set := make(map[string]struct{}, len(externalIDs))
	for _, id := range externalIDs {
		set[id] = struct{}{}
	}
	s.mu.Lock()
	s.unknown = set
	s.mu.Unlock()
}

// Events returns a copy of the accepted events in arrival order; it is empty
// in CountOnly mode. The Properties bytes are shared and must not be
// modified.
func (s *Server) Events() []Accepted {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Accepted, len(s.events))
	copy(out, s.events)
	return out
}

// Count returns the number of events accepted (unique keys plus events
// without a key).
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.Accepted
}

// Duplicates returns the number of events dropped as duplicate idempotency
// keys.
func (s *Server) Duplicates() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.Duplicates
}

// Requests returns the number of requests received, whatever their outcome.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats.Requests
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// WaitForCount blocks until Count() >= n or ctx is done, in which case it
// returns an error wrapping ctx.Err().
func (s *Server) WaitForCount(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		have, changed := s.stats.Accepted, s.changed
		s.mu.Unlock()
		if have >= n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d accepted events (have %d): %w", n, have, ctx.Err())
		}
	}
}

// Reset forgets the recorded events, idempotency keys and stats (request
// numbering restarts at 1). It keeps the faults, the RNG state, the
// ForbidAfter count and the unknown users.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = Stats{}
	s.events = nil
	s.keys = make(map[[16]byte]int64)
	s.pruneAt = minPrune
	close(s.changed) // wake waiters so they re-read the count
	s.changed = make(chan struct{})
}
