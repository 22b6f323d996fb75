package replication

import (
	"testing"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

func TestParseTimelineHistory(t *testing.T) {
	// The history file of timeline 4: timeline 2 was abandoned (a restore
	// from timeline 1 chose timeline 3).
	content := "1\t0/3000060\tno recovery target specified\n\n" +
		"3\t0/5000000\tat restore point \"before\"  # comment\n"
	tl, err := ParseTimelineHistory(4, []byte(content))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		lsn  cdc.LSN
		want uint32
	}{
		{0, 1}, {0x300005F, 1}, {0x3000060, 3}, {0x4FFFFFF, 3}, {0x5000000, 4}, {0x700000000, 4},
	} {
		if got := tl.At(c.lsn); got != c.want {
			t.Errorf("At(%s) = %d, want %d", c.lsn, got, c.want)
		}
	}
	if got, want := tl.String(), "1<0/3000060 3<0/5000000 4"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	var zero Timelines
	if zero.At(0x5000000) != 1 || zero.Current() != 1 {
		t.Errorf("zero Timelines: At = %d, Current = %d, want 1, 1", zero.At(0x5000000), zero.Current())
	}
	for _, bad := range []string{"1\n", "x\t0/1\n", "1\tzz\n", "2\t0/10\n1\t0/20\n", "1\t0/20\n2\t0/10\n", "4\t0/10\n"} {
		if _, err := ParseTimelineHistory(4, []byte(bad)); err == nil {
			t.Errorf("ParseTimelineHistory(4, %q): no error", bad)
		}
	}
}
