package replication

import (
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/checkpoint"
)

type flushCounter struct{ n int }

func (*flushCounter) TrySubmit(*cdc.Event) bool { return true }
func (*flushCounter) Ready() <-chan struct{}    { return nil }
func (f *flushCounter) Flush()                  { f.n++ }

// TestFlushHookWaitsForTheCommit: the hook the reader calls before each
// read of the network flushes the sink between transactions, never between
// two reads of one transaction (whose rows the sink keeps together).
func TestFlushHookWaitsForTheCommit(t *testing.T) {
	f := &flushCounter{}
	s := NewStream(Config{}, nil, "", nil, f, checkpoint.NewTracker(cdc.Position{}, 0), cdc.Position{})
	hook := s.flushHook(f)
	hook()
	if f.n != 1 {
		t.Fatalf("before any transaction: %d flushes, want 1", f.n)
	}
	if err := s.handleWAL(t.Context(), nil, beginMsg(0x100, pgNow(), 7)); err != nil {
		t.Fatal(err)
	}
	hook()
	hook()
	if f.n != 1 {
		t.Fatalf("inside a transaction: %d flushes, want still 1", f.n)
	}
	if err := s.handleWAL(t.Context(), nil, commitMsg(0x100, 0x180, pgNow())); err != nil {
		t.Fatal(err)
	}
	hook()
	if f.n != 2 {
		t.Fatalf("after the commit: %d flushes, want 2", f.n)
	}
}

// pgNow is the time now in pgoutput's unit: µs since 2000-01-01 UTC.
func pgNow() uint64 { return uint64(time.Now().UnixMicro() - 946_684_800_000_000) }
