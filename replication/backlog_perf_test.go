package replication

import (
	"slices"
	"testing"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

type backlogRecorder struct{ calls []bool }

func (*backlogRecorder) TrySubmit(*cdc.Event) bool { return true }
func (*backlogRecorder) Ready() <-chan struct{}    { return nil }
func (r *backlogRecorder) SetBacklog(b bool)       { r.calls = append(r.calls, b) }

// TestNoteBacklogTellsTheSinkOnChange: the sink hears when the stream falls
// more than backlogBytes behind the server's WAL end and when it catches up,
// once per change.
func TestNoteBacklogTellsTheSinkOnChange(t *testing.T) {
	rec := &backlogRecorder{}
	s := &Stream{sink: rec}
	const end = 100 << 20
	for _, at := range []uint64{end - 10, end - backlogBytes, end - backlogBytes - 1, end - 50<<20, end - 10, end, end + 5} {
		s.noteBacklog(at, end)
	}
	if want := []bool{true, false}; !slices.Equal(rec.calls, want) {
		t.Errorf("SetBacklog calls %v, want %v", rec.calls, want)
	}
}
