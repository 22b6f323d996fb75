package onesignaltest

import (
	"net/http"
	"testing"
)

// An empty batch is a 202 {} by default and, with RejectEmptyBatch, a 400
// in OneSignal's JSON form; a batch with events is unaffected.
func TestRejectEmptyBatch(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		body     string
		status   int
		want     string
		accepted int
	}{
		{"default: empty batch accepted", Options{}, `{"events":[]}`, http.StatusAccepted, `{}`, 0},
		{"empty batch refused", Options{RejectEmptyBatch: true}, `{"events":[]}`, http.StatusBadRequest, EmptyBatchBody, 0},
		{"events still accepted", Options{RejectEmptyBatch: true}, batch(ev("a", "u")), http.StatusAccepted, `{}`, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(tt.opts)
			defer s.Close()
			w := post(t, s, tt.body)
			if w.Code != tt.status || w.Body.String() != tt.want || w.Header().Get("Content-Type") != "application/json; charset=utf-8" {
				t.Fatalf("got %d %s %q, want %d %s", w.Code, w.Body, w.Header().Get("Content-Type"), tt.status, tt.want)
			}
			wantBad := 0
			if tt.status == http.StatusBadRequest {
				wantBad = 1
			}
			if st := s.Stats(); st.BadRequests != wantBad || s.Count() != tt.accepted {
				t.Errorf("stats %+v, count %d; want %d bad requests, %d accepted", st, s.Count(), wantBad, tt.accepted)
			}
		})
	}
}
