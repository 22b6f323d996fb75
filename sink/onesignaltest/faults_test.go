package onesignaltest

import (
	"errors"
	"net/http"
	"reflect"
	"syscall"
	"testing"
	"time"
)

func TestFaultStatus(t *testing.T) {
	tests := []struct {
		name           string
		faults         Faults
		wantCode       int
		wantBody       string
		wantRetryAfter string
		wantStats      Stats
	}{
		{"500", Faults{Rate500: 1}, http.StatusInternalServerError,
			`{"errors":["Internal server error (injected)"]}`, "",
			Stats{Requests: 1, Status500: 1}},
		{"429 default Retry-After", Faults{Rate429: 1}, http.StatusTooManyRequests,
			RateLimitBody, "1", Stats{Requests: 1, Status429: 1}},
		{"429 Retry-After rounded up", Faults{Rate429: 1, RetryAfter: 2500 * time.Millisecond}, http.StatusTooManyRequests,
			`{"errors":["API rate limit exceeded."]}`, "3", Stats{Requests: 1, Status429: 1}},
		{"429 Retry-After whole", Faults{Rate429: 1, RetryAfter: 7 * time.Second}, http.StatusTooManyRequests,
			RateLimitBody, "7", Stats{Requests: 1, Status429: 1}},
		{"500 takes precedence over 429", Faults{Rate500: 1, Rate429: 1}, http.StatusInternalServerError,
			`{"errors":["Internal server error (injected)"]}`, "", Stats{Requests: 1, Status500: 1}},
		{"zero rates", Faults{Rate500: 0, Rate429: 0}, http.StatusAccepted, "{}", "",
			Stats{Requests: 1, Accepted: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Options{})
			s.SetFaults(tt.faults)
			resp, body, err := postHTTP(t, newClient(t), s, batch(ev("a", "u")))
			if err != nil {
				t.Fatalf("post: %v", err)
			}
			if resp.StatusCode != tt.wantCode || body != tt.wantBody {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, body, tt.wantCode, tt.wantBody)
			}
			if got := resp.Header.Get("Retry-After"); got != tt.wantRetryAfter {
				t.Fatalf("Retry-After = %q, want %q", got, tt.wantRetryAfter)
			}
			if got := s.Stats(); got != tt.wantStats {
				t.Fatalf("Stats() = %+v, want %+v", got, tt.wantStats)
			}
		})
	}
}

func TestFaultsComeAfterAuth(t *testing.T) {
	s := New(Options{})
	s.SetFaults(Faults{Rate500: 1})
	w := serve(t, s, http.MethodPost, testPath, "Key wrong", batch(ev("a", "u")))
	if w.Code != http.StatusForbidden {
		t.Fatalf("bad key with Rate500 1: got %d, want 403", w.Code)
	}
}

func TestResetFault(t *testing.T) {
	s := start(t, Options{})
	s.SetFaults(Faults{ResetRate: 1})
	c := newClient(t)
	for range 2 {
		resp, body, err := postHTTP(t, c, s, batch(ev("a", "u")))
		if err == nil {
			t.Fatalf("post succeeded with %d %s, want a connection error", resp.StatusCode, body)
		}
		if !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("post error %v, want a connection reset", err)
		}
	}
	if st := s.Stats(); st.Resets != 2 || st.Accepted != 0 {
		t.Fatalf("stats %+v: want 2 resets, nothing accepted", st)
	}

	s.SetFaults(Faults{})
	if resp, _, err := postHTTP(t, c, s, batch(ev("a", "u"))); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("after clearing faults: %v %v", resp, err)
	}
}

func TestResetFaultWithoutHijacker(t *testing.T) {
	s := New(Options{})
	s.SetFaults(Faults{ResetRate: 1})
	defer func() {
		if r := recover(); r != http.ErrAbortHandler {
			t.Fatalf("recovered %v, want http.ErrAbortHandler", r)
		}
	}()
	post(t, s, batch(ev("a", "u")))
	t.Fatal("ServeHTTP returned normally")
}

func TestForbidAfter(t *testing.T) {
	s := start(t, Options{})
	c := newClient(t)
	post := func() (int, string) {
		t.Helper()
		resp, body, err := postHTTP(t, c, s, batch(ev("a", "u")))
		if err != nil {
			t.Fatalf("post: %v", err)
		}
		return resp.StatusCode, body
	}
	post() // before SetFaults: not counted toward ForbidAfter
	s.SetFaults(Faults{ForbidAfter: 2})
	var codes []int
	for range 4 {
		code, body := post()
		codes = append(codes, code)
		if code == http.StatusForbidden && body != AccessDeniedBody {
			t.Fatalf("403 body %s, want %s", body, AccessDeniedBody)
		}
	}
	if want := []int{202, 202, 403, 403}; !reflect.DeepEqual(codes, want) {
		t.Fatalf("codes %v, want %v", codes, want)
	}
	if st := s.Stats(); st.Forbidden != 2 || st.Accepted != 3 {
		t.Fatalf("stats %+v: want Forbidden 2, Accepted 3", st)
	}
}

func TestDelays(t *testing.T) {
	const d = 60 * time.Millisecond
	tests := []struct {
		name       string
		faults     Faults
		wantStalls int
	}{
		{"latency", Faults{Latency: d}, 0},
		{"stall", Faults{StallRate: 1, Stall: d}, 1},
		{"stall then 500", Faults{StallRate: 1, Stall: d, Rate500: 1}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, Options{})
			s.SetFaults(tt.faults)
			c := newClient(t)
			begin := time.Now()
			resp, _, err := postHTTP(t, c, s, batch(ev("a", "u")))
			elapsed := time.Since(begin)
			if err != nil {
				t.Fatalf("post: %v", err)
			}
			if elapsed < d {
				t.Fatalf("answered %d after %v, want >= %v", resp.StatusCode, elapsed, d)
			}
			if got := s.Stats().Stalls; got != tt.wantStalls {
				t.Fatalf("Stalls = %d, want %d", got, tt.wantStalls)
			}
		})
	}
}

func TestLatencyAppliesToErrors(t *testing.T) {
	const d = 40 * time.Millisecond
	s := New(Options{})
	s.SetFaults(Faults{Latency: d})
	begin := time.Now()
	w := serve(t, s, http.MethodPost, testPath, "", "{}")
	if elapsed := time.Since(begin); w.Code != http.StatusForbidden || elapsed < d {
		t.Fatalf("got %d after %v, want 403 after >= %v", w.Code, elapsed, d)
	}
}

func TestFaultsDeterministic(t *testing.T) {
	run := func(seed int64) []int {
		s := New(Options{})
		s.SetFaults(Faults{Rate500: 0.3, Rate429: 0.3, Seed: seed})
		var codes []int
		for range 40 {
			codes = append(codes, post(t, s, batch(ev("a", "u"))).Code)
		}
		return codes
	}
	a, b, other := run(42), run(42), run(43)
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("same seed gave different faults:\n%v\n%v", a, b)
	}
	if reflect.DeepEqual(a, other) {
		t.Fatalf("different seeds gave the same 40 outcomes: %v", a)
	}
	kinds := map[int]int{}
	for _, c := range a {
		kinds[c]++
	}
	if kinds[500] == 0 || kinds[429] == 0 || kinds[202] == 0 || len(kinds) != 3 {
		t.Fatalf("outcomes %v: want a mix of 500, 429 and 202", kinds)
	}
}

func TestCloseWakesStalledHandlers(t *testing.T) {
	s, err := Start(Options{})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	s.SetFaults(Faults{StallRate: 1, Stall: time.Minute})
	c := newClient(t)
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, _, err := postHTTP(t, c, s, batch(ev("a", "u")))
		if err != nil {
			done <- result{err: err}
			return
		}
		done <- result{code: resp.StatusCode}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Stalls == 0 {
		if time.Now().After(deadline) {
			t.Fatal("request never stalled")
		}
		time.Sleep(time.Millisecond)
	}
	begin := time.Now()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if elapsed := time.Since(begin); elapsed > closeGrace {
		t.Fatalf("Close took %v", elapsed)
	}
	r := <-done
	if r.err == nil && r.code != http.StatusServiceUnavailable {
		t.Fatalf("stalled request answered %d, want 503 or an error", r.code)
	}
	if s.Count() != 0 {
		t.Fatalf("a request woken by Close was recorded")
	}
}
