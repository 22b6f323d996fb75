package cdc

import "testing"

// Keys of rows committed on timeline 1 stay those of pgsignal versions that
// did not know timelines; other timelines give other keys at the same
// position, and each timeline's keys are deterministic.
func TestTimelineIdempotencyKey(t *testing.T) {
	pos := Position{CommitLSN: 0x16B374D848, Ordinal: 3}
	old := IdempotencyKey("7301234567890123456", "pgsignal", pos)
	if got := TimelineIdempotencyKey("7301234567890123456", "pgsignal", 1, pos); got != old {
		t.Fatalf("timeline 1 key %s, want the key without timeline %s", got, old)
	}
	if got := TimelineIdempotencyKey("7301234567890123456", "pgsignal", 0, pos); got != old {
		t.Fatalf("timeline 0 key %s, want the key without timeline %s", got, old)
	}
	seen := map[string]uint32{old: 1}
	for tl := uint32(2); tl < 100; tl++ {
		k := TimelineIdempotencyKey("7301234567890123456", "pgsignal", tl, pos)
		if prev, dup := seen[k]; dup {
			t.Fatalf("timelines %d and %d share key %s", prev, tl, k)
		}
		seen[k] = tl
		if again := TimelineIdempotencyKey("7301234567890123456", "pgsignal", tl, pos); again != k {
			t.Fatalf("timeline %d: key %s then %s", tl, k, again)
		}
	}
}
