package replication

import (
	"testing"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

// Batches shrink with the transform's fan-out, so that a batch's events
// stay near BatchRows.
func TestFanOutAndBatchRows(t *testing.T) {
	chs := make([]*Change, 4)
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
		s.fanout = FanOut(chs, tt.results)
		if s.fanout != tt.fanout || s.batchRows() != tt.rows {
			t.Errorf("case %d: fan-out %d, batch rows %d; want %d, %d", i, s.fanout, s.batchRows(), tt.fanout, tt.rows)
		}
	}
	if (&Stream{cfg: Config{BatchRows: 500}}).batchRows() != 500 {
		t.Error("a new stream does not start at BatchRows")
	}
}
