package cdc

import "testing"

func TestLegacyKeysKeyTimeline(t *testing.T) {
	l := LegacyKeys{Before: 0x5000, Timeline: 3}
	for _, c := range []struct {
		lsn  LSN
		tl   uint32
		want uint32
	}{
		{0x4fff, 3, 1}, // before the first run, on its timeline: as before
		{0x4fff, 2, 1}, // an ancestor
		{0x4fff, 4, 4}, // a later restore reusing the LSN
		{0x5000, 3, 3}, // from the first run on
		{0x6000, 5, 5},
	} {
		if got := l.KeyTimeline(c.lsn, c.tl); got != c.want {
			t.Errorf("KeyTimeline(%s, %d) = %d, want %d", c.lsn, c.tl, got, c.want)
		}
	}
	if got := (LegacyKeys{}).KeyTimeline(0x10, 2); got != 2 {
		t.Errorf("zero LegacyKeys: timeline %d, want 2", got)
	}
	if TimelineIdempotencyKey("s", "slot", l.KeyTimeline(0x4fff, 3), Position{CommitLSN: 0x4fff}) != IdempotencyKey("s", "slot", Position{CommitLSN: 0x4fff}) {
		t.Error("a legacy commit's key is not the timeline-free key")
	}
}
