package onesignaltest

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// drainLimit bounds how much of an oversized body is read and discarded
// before the 413 is written, so that the client reads the answer rather than
// a reset.
const drainLimit = 16 << 20

// minPrune is the smallest key-set size at which expired idempotency keys are
// pruned.
const minPrune = 4096

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// ServeHTTP handles one request as OneSignal's Custom Events API would; see
// the package documentation for the answers.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		writeErrors(w, http.StatusServiceUnavailable, "server is shutting down")
		return
	}
	defer s.handlers.Done()

	s.mu.Lock()
	s.stats.Requests++
	reqNo := s.stats.Requests
	latency := s.faults.Latency
	s.mu.Unlock()

	if !s.sleep(w, r, latency) {
		return
	}

	appID, ok := splitPath(r.URL.Path)
	if !ok {
		writeErrors(w, http.StatusNotFound, "not found: "+r.URL.Path)
		return
	}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET, POST")
		writeErrors(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed; use POST (GET lists what the fake accepted)")
		return
	}
	if !s.authorized(r.Header.Get("Authorization")) {
		s.count(func(st *Stats) { st.Forbidden++ })
		writeJSON(w, http.StatusForbidden, []byte(AccessDeniedBody))
		return
	}
	if appID != s.opts.AppID {
		s.count(func(st *Stats) { st.BadRequests++ })
		writeErrors(w, http.StatusBadRequest, "app_id not found: "+appID)
		return
	}

	if r.Method == http.MethodGet {
		s.serveAccepted(w, r)
		return
	}

	d := s.decide()
	if d.stall > 0 {
		s.count(func(st *Stats) { st.Stalls++ })
		if !s.sleep(w, r, d.stall) {
			return
		}
	}
	switch d.outcome {
	case outcomeForbid:
		s.count(func(st *Stats) { st.Forbidden++ })
		writeJSON(w, http.StatusForbidden, []byte(AccessDeniedBody))
		return
	case outcomeReset:
		s.count(func(st *Stats) { st.Resets++ })
		resetConn(w)
		return
	case outcome500:
		s.count(func(st *Stats) { st.Status500++ })
		writeErrors(w, http.StatusInternalServerError, "Internal server error (injected)")
		return
	case outcome429:
		s.count(func(st *Stats) { st.Status429++ })
		w.Header().Set("Retry-After", strconv.FormatInt(retryAfterSeconds(d.retryAfter), 10))
		writeJSON(w, http.StatusTooManyRequests, []byte(RateLimitBody))
		return
	}

	s.handleEvents(w, r, reqNo)
}

// handleEvents reads, validates and records the body of an authorized
// request that no fault diverted.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request, reqNo int) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 2*MaxBodyBytes {
			bufPool.Put(buf)
		}
	}()
	if r.ContentLength > 0 && r.ContentLength <= MaxBodyBytes {
		buf.Grow(int(r.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, MaxBodyBytes+1))
	if err != nil {
		s.count(func(st *Stats) { st.BadRequests++ })
		writeErrors(w, http.StatusBadRequest, fmt.Sprintf("read request body: %v", err))
		return
	}
	if n > MaxBodyBytes {
		_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, drainLimit))
		s.count(func(st *Stats) { st.TooLarge++ })
		writeErrors(w, http.StatusRequestEntityTooLarge,
			fmt.Sprintf("request body is over the %d-byte limit", MaxBodyBytes))
		return
	}

	evs, errs := parseBody(buf.Bytes())
	if len(errs) > 0 {
		s.count(func(st *Stats) { st.BadRequests++ })
		writeErrors(w, http.StatusBadRequest, errs...)
		return
	}

	if len(evs) == 0 && s.opts.RejectEmptyBatch {
		s.count(func(st *Stats) { st.BadRequests++ })
		writeJSON(w, http.StatusBadRequest, []byte(EmptyBatchBody))
		return
	}
	now := s.opts.Now()
	if s.opts.Reject != nil {
		var rejected []string
		for i := range evs {
			if msg := s.opts.Reject(evs[i].accepted(now, reqNo)); msg != "" {
				rejected = append(rejected, msg)
			}
		}
		if len(rejected) > 0 {
			s.count(func(st *Stats) { st.BadRequests++ })
			writeErrors(w, http.StatusBadRequest, rejected...)
			return
		}
	}

	notFound := s.record(evs, now, reqNo)
	if len(notFound) == 0 {
		writeJSON(w, http.StatusAccepted, []byte("{}"))
		return
	}
	body, err := json.Marshal(struct {
		Errors []notFoundError `json:"errors"`
	}{notFound})
	if err != nil { // cannot happen: only strings
		writeErrors(w, http.StatusInternalServerError, fmt.Sprintf("encode response: %v", err))
		return
	}
	writeJSON(w, http.StatusAccepted, body)
}

// notFoundError is one per-event failure of a 202 answer.
type notFoundError struct {
	EventUserID string `json:"event_user_id"`
	EventID     string `json:"event_id,omitempty"`
	Error       struct {
		Code  string `json:"code"`
		Title string `json:"title"`
	} `json:"error"`
}

func newNotFound(ev *event) notFoundError {
	var e notFoundError
	e.EventUserID = ev.externalID
	e.EventID = eventID(ev.props)
	e.Error.Code = "not found"
	e.Error.Title = "failed to find a onesignal_id for user_id " + ev.externalID
	return e
}

// record drops unknown users and duplicates, records the other events in
// order, calls OnAccept for each and returns the per-event failures.
func (s *Server) record(evs []event, now time.Time, reqNo int) []notFoundError {
	hook := s.opts.OnAccept
	if hook != nil {
		s.acceptMu.Lock()
		defer s.acceptMu.Unlock()
	}
	keep := !s.opts.CountOnly
	nowNanos := now.UnixNano()

	var unknownIdx, freshIdx []int
	fresh := 0
	s.mu.Lock()
	for i := range evs {
		ev := &evs[i]
		if ev.externalID != "" && len(s.unknown) > 0 {
			if _, ok := s.unknown[ev.externalID]; ok {
				s.stats.NotFound++
				unknownIdx = append(unknownIdx, i)
				continue
			}
		}
		if ev.hasKey && s.duplicate(ev.key, nowNanos) {
			s.stats.Duplicates++
			continue
		}
		fresh++
		if hook != nil {
			freshIdx = append(freshIdx, i)
		} else if keep {
			s.events = append(s.events, ev.accepted(now, reqNo))
		}
	}
	if hook == nil {
		s.grow(fresh)
	}
	s.mu.Unlock()

	if hook != nil && fresh > 0 {
		batch := make([]Accepted, 0, len(freshIdx))
		for _, i := range freshIdx {
			a := evs[i].accepted(now, reqNo)
			hook(a)
			batch = append(batch, a)
		}
		s.mu.Lock()
		if keep {
			s.events = append(s.events, batch...)
		}
		s.grow(fresh)
		s.mu.Unlock()
	}

	if len(unknownIdx) == 0 {
		return nil
	}
	out := make([]notFoundError, 0, len(unknownIdx))
	for _, i := range unknownIdx {
		out = append(out, newNotFound(&evs[i]))
	}
	return out
}

// grow adds n to the accepted count and wakes WaitForCount. s.mu is held.
func (s *Server) grow(n int) {
	if n == 0 {
		return
	}
	s.stats.Accepted += n
	close(s.changed)
	s.changed = make(chan struct{})
}

// duplicate reports whether key was accepted within the dedup window, and
// otherwise records it as accepted at now. s.mu is held.
func (s *Server) duplicate(key [16]byte, now int64) bool {
	window := s.opts.DedupWindow
	if window < 0 {
		return false
	}
	if at, ok := s.keys[key]; ok && now-at < int64(window) {
		return true
	}
	s.keys[key] = now
	if len(s.keys) >= s.pruneAt {
		for k, at := range s.keys {
			if now-at >= int64(window) {
				delete(s.keys, k)
			}
		}
		s.pruneAt = max(2*len(s.keys), minPrune)
	}
	return false
}

// count applies f to the stats under the lock.
func (s *Server) count(f func(*Stats)) {
	s.mu.Lock()
	f(&s.stats)
	s.mu.Unlock()
}

type outcome int

const (
	outcomeNormal outcome = iota
	outcomeForbid
	outcomeReset
	outcome500
	outcome429
)

// decision is the fault chosen for one request.
type decision struct {
	outcome    outcome
	stall      time.Duration
	retryAfter time.Duration
}

// decide draws the fault of one request (see Faults).
func (s *Server) decide() decision {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := &s.faults
	u, v := s.rng.Float64(), s.rng.Float64()
	s.forbidSeen++
	d := decision{retryAfter: f.RetryAfter}
	switch {
	case f.ForbidAfter > 0 && s.forbidSeen > f.ForbidAfter:
		d.outcome = outcomeForbid
	case u < f.ResetRate:
		d.outcome = outcomeReset
	case u < f.ResetRate+f.Rate500:
		d.outcome = outcome500
	case u < f.ResetRate+f.Rate500+f.Rate429:
		d.outcome = outcome429
	}
	if f.Stall > 0 && v < f.StallRate {
		d.stall = f.Stall
	}
	return d
}

// retryAfterSeconds is d rounded up to whole seconds, DefaultRetryAfter when
// d is not positive.
func retryAfterSeconds(d time.Duration) int64 {
	if d <= 0 {
		d = DefaultRetryAfter
	}
	return int64((d + time.Second - 1) / time.Second)
}

// sleep waits d. It reports false, having answered 503 if the Server is
// closing, when the request or the Server ends first.
func (s *Server) sleep(w http.ResponseWriter, r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.done:
		writeErrors(w, http.StatusServiceUnavailable, "server is shutting down")
		return false
	}
}

// resetConn resets the request's TCP connection without answering.
func resetConn(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // no connection to reset: abort the response
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close sends RST instead of FIN
	}
	_ = conn.Close()
}

// authorized reports whether header is "Key <APIKey>", the scheme in any
// case.
func (s *Server) authorized(header string) bool {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Key") {
		return false
	}
	token = strings.TrimSpace(token)
	return subtle.ConstantTimeCompare([]byte(token), []byte(s.opts.APIKey)) == 1
}

// splitPath returns the app id of a custom events path.
func splitPath(p string) (appID string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/apps/")
	if !ok {
		return "", false
	}
	appID, tail, ok := strings.Cut(rest, "/")
	if !ok || appID == "" {
		return "", false
	}
	switch tail {
	case "custom_events", "integrations/custom_events":
		return appID, true
	}
	return "", false
}

// writeJSON writes a JSON answer.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body) // the client may be gone; nothing to do
}

// writeErrors writes {"errors":[msgs...]}.
func writeErrors(w http.ResponseWriter, status int, msgs ...string) {
	body, err := json.Marshal(struct {
		Errors []string `json:"errors"`
	}{msgs})
	if err != nil { // cannot happen: only strings
		body = []byte(`{"errors":["internal error"]}`)
	}
	writeJSON(w, status, body)
}

// listedEvent is an accepted event as GET lists it.
type listedEvent struct {
	Name           string          `json:"name"`
	ExternalID     string          `json:"external_id,omitempty"`
	OnesignalID    string          `json:"onesignal_id,omitempty"`
	Timestamp      string          `json:"timestamp,omitempty"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Properties     json.RawMessage `json:"properties,omitempty"`
	ReceivedAt     time.Time       `json:"received_at"`
}

// maxListed bounds what one GET returns.
const maxListed = 10000

// serveAccepted answers GET on the events path, which OneSignal does not
// serve: the fake's own view of what it accepted, for a person checking what
// pgsignal sent. ?limit=N (default and at most 10,000) returns the last N
// events in arrival order, with the total count and the duplicates dropped.
func (s *Server) serveAccepted(w http.ResponseWriter, r *http.Request) {
	limit := maxListed
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeErrors(w, http.StatusBadRequest, "limit must be a whole number")
			return
		}
		limit = min(n, maxListed)
	}
	events := s.Events()
	if len(events) > limit {
		events = events[len(events)-limit:]
	}
	out := struct {
		Count      int           `json:"count"`
		Duplicates int           `json:"duplicates"`
		Events     []listedEvent `json:"events"`
	}{Count: s.Count(), Duplicates: s.Duplicates(), Events: make([]listedEvent, len(events))}
	for i, e := range events {
		out.Events[i] = listedEvent{Name: e.Name, ExternalID: e.ExternalID, OnesignalID: e.OnesignalID, Timestamp: e.Timestamp,
			IdempotencyKey: e.IdempotencyKey, Properties: e.Properties, ReceivedAt: e.ReceivedAt}
	}
	body, err := json.Marshal(out)
	if err != nil {
		writeErrors(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, body)
}
