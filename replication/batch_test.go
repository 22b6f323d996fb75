package replication

import (
	"testing"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

// Batches shrink with the transform's fan-out, so that a batch's events
// stay near BatchRows.
func TestFanOutAndBatchRows(t *testing.T) {
	ev := &cdc.Event{}
	tests := []struct {
		results [][]*cdc.Event
		fanout  int
		rows    int
	}{
		{[][]*cdc.Event{{ev}, {ev}, {ev}, {ev}}, 1, 500},
		{[][]*cdc.Event{{}, {}, {ev}, {}}, 1, 500},
		{[][]*cdc.Event{{ev, ev, ev}, {ev, ev, ev}, {ev, ev, ev}, {ev}}, 3, 166},
		{[][]*cdc.Event{make([]*cdc.Event, 4000), {}, {}, {}}, 1000, 1},
	}
	for i, tt := range tests {
		s := &Stream{cfg: Config{BatchRows: 500}}
		s.fanout = FanOut(tt.results)
		if s.fanout != tt.fanout || s.batchRows() != tt.rows {
			t.Errorf("case %d: fan-out %d, batch rows %d; want %d, %d", i, s.fanout, s.batchRows(), tt.fanout, tt.rows)
		}
	}
	if (&Stream{cfg: Config{BatchRows: 500}}).batchRows() != 500 {
		t.Error("a new stream does not start at BatchRows")
	}
}

// CloneValues keeps NULL and empty apart and shares nothing with its input.
func TestCloneValues(t *testing.T) {
	in := [][]byte{[]byte("ab"), nil, {}, []byte("c")}
	out := CloneValues(in)
	in[0][0], in[3][0] = 'x', 'y'
	if len(out) != 4 || string(out[0]) != "ab" || out[1] != nil || out[2] == nil || len(out[2]) != 0 || string(out[3]) != "c" {
		t.Errorf("CloneValues = %q", out)
	}
	out[0] = append(out[0], 'z') // capped: does not run into the next value
	if string(out[3]) != "c" {
		t.Errorf("appending to one value changed the next: %q", out[3])
	}
}
