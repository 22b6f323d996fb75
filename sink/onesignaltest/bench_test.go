package onesignaltest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// benchBody is a body of n realistic events, each with a fresh key from
// next.
func benchBody(n int, next func() int) string {
	var b strings.Builder
	b.WriteString(`{"events":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"purchase","external_id":"user_%d","timestamp":"2025-10-21T19:09:32.263Z",`+
			`"idempotency_key":"00000000-0000-4000-8000-%012d","properties":{"item":"T-shirt","price":24.99,"row":%d}}`,
			i, next(), i)
	}
	b.WriteString(`]}`)
	return b.String()
}

func benchmarkServe(b *testing.B, opts Options) {
	const perRequest = 500
	s := New(opts)
	seq := 0
	next := func() int { seq++; return seq }
	bodies := make([]string, 64)
	for i := range bodies {
		bodies[i] = benchBody(perRequest, next)
	}
	b.SetBytes(int64(len(bodies[0])))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r := httptest.NewRequest(http.MethodPost, testPath, strings.NewReader(bodies[i%len(bodies)]))
		r.Header.Set("Authorization", testAuth)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != http.StatusAccepted {
			b.Fatalf("got %d %s", w.Code, w.Body)
		}
	}
	b.ReportMetric(float64(b.N*perRequest)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkServeCountOnly measures the fake's own cost per 500-event request
// in CountOnly mode (keys repeat after 64 requests, so most are duplicates in
// long runs; the cost is the same).
func BenchmarkServeCountOnly(b *testing.B) { benchmarkServe(b, Options{CountOnly: true}) }

// BenchmarkServeRecording is the same with every event recorded.
func BenchmarkServeRecording(b *testing.B) { benchmarkServe(b, Options{}) }
