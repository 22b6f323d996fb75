package replication

import (
	"slices"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

type backlogRecorder struct{ calls []bool }

func (*backlogRecorder) TrySubmit(*cdc.Event) bool { return true }
func (*backlogRecorder) Ready() <-chan struct{}    { return nil }
func (r *backlogRecorder) SetBacklog(b bool)       { r.calls = append(r.calls, b) }

// TestNoteBacklogTellsTheSinkOnChange: the sink hears when the stream
// reads transactions committed more than backlogAge ago and when it catches
// up, once per change.
func TestNoteBacklogTellsTheSinkOnChange(t *testing.T) {
	rec := &backlogRecorder{}
	s := &Stream{sink: rec}
	for _, lag := range []time.Duration{0, backlogAge, backlogAge + 1, time.Hour, time.Millisecond, -time.Second} {
		s.noteBacklog(lag)
	}
	if want := []bool{true, false}; !slices.Equal(rec.calls, want) {
		t.Errorf("SetBacklog calls %v, want %v", rec.calls, want)
	}
}
