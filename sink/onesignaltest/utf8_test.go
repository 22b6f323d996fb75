package onesignaltest

import (
	"net/http"
	"reflect"
	"testing"
)

// A body whose strings hold bytes that are not UTF-8 passes json.Valid but
// is not JSON: the fake answers 400 and records nothing, so a test sees
// such a body instead of an event whose external_id the server changed.
func TestBodyNotUTF8(t *testing.T) {
	for _, body := range []string{
		batch(`{"name":"a","external_id":"caf` + "\xe9" + `"}`),
		batch(`{"name":"a","external_id":"u","properties":{"k":"` + "\xff" + `"}}`),
	} {
		s := New(Options{})
		w := post(t, s, body)
		if w.Code != http.StatusBadRequest {
			t.Fatalf("got %d %s, want 400", w.Code, w.Body)
		}
		if got := errorsOf(t, w.Body.String()); !reflect.DeepEqual(got, []string{"request body is not valid UTF-8"}) {
			t.Fatalf("errors = %q", got)
		}
		if st := s.Stats(); st.BadRequests != 1 || st.Accepted != 0 || len(s.Events()) != 0 {
			t.Fatalf("stats %+v, %d events; want 1 bad request, nothing recorded", st, len(s.Events()))
		}
	}
	// The same text as valid UTF-8 is accepted as it is.
	s := New(Options{})
	if w := post(t, s, batch(ev("a", "caf\u00e9"))); w.Code != http.StatusOK && w.Code != http.StatusAccepted {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	if evs := s.Events(); len(evs) != 1 || evs[0].ExternalID != "café" {
		t.Fatalf("events %+v", evs)
	}
}
