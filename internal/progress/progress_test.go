package progress

import (
	"bytes"
	"os"
	"testing"
	"time"
)

func TestRender(t *testing.T) {
	cases := []struct {
		done, total int64
		elapsed     time.Duration
		want        string
	}{
		{0, 10000, 0, "backfill: 0/10,000 rows (0%)"},
		{2500, 10000, 10 * time.Second, "backfill: 2,500/10,000 rows (25%), 250 rows/s, 30s left"},
		{1234567, 2000000, 1000 * time.Second, "backfill: 1,234,567/2,000,000 rows (61%), 1,235 rows/s, 10m20s left"},
		{10, 100000, 4 * time.Second, "backfill: 10/100,000 rows (0%), 2.5 rows/s, 11h06m36s left"},
		{10000, 10000, 20 * time.Second, "backfill: 10,000/10,000 rows (100%), 500 rows/s"},
		{42, 0, 2 * time.Second, "backfill: 42 rows, 21.0 rows/s"},
	}
	for _, c := range cases {
		if got := Render("backfill", "rows", c.done, c.total, c.elapsed); got != c.want {
			t.Errorf("Render(%d, %d, %s) = %q, want %q", c.done, c.total, c.elapsed, got, c.want)
		}
	}
}

// The line redraws in place, at most every 100 ms (and at the end); a log
// line written through Writer clears it and draws it again below.
func TestLineRedraws(t *testing.T) {
	var buf bytes.Buffer
	now := time.Unix(1000, 0)
	l := newLine(&buf, "replay", "letters", func() time.Time { return now })
	now = now.Add(time.Second)
	l.Update(1, 4)
	now = now.Add(50 * time.Millisecond)
	l.Update(2, 4) // too soon: not drawn
	now = now.Add(950 * time.Millisecond)
	l.Update(3, 4)
	_, _ = l.Writer(&buf).Write([]byte("a log line\n"))
	l.Update(4, 4) // the end: drawn at once
	l.Finish()
	want := "\r\x1b[Kreplay: 1/4 letters (25%), 1.0 letters/s, 3s left" +
		"\r\x1b[Kreplay: 3/4 letters (75%), 1.5 letters/s, 1s left" +
		"\r\x1b[Ka log line\nreplay: 3/4 letters (75%), 1.5 letters/s, 1s left" +
		"\r\x1b[Kreplay: 4/4 letters (100%), 2.0 letters/s" +
		"\r\x1b[Kreplay: 4/4 letters (100%), 2.0 letters/s\n"
	if got := buf.String(); got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

// Off a terminal there is no line: nothing is drawn and writers pass
// through.
func TestNotATerminal(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, "backfill", "rows")
	if l != nil {
		t.Fatal("a line on a buffer")
	}
	l.Update(1, 2)
	l.Finish()
	if w := l.Writer(&buf); w != &buf {
		t.Fatal("Writer wraps without a line")
	}
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if New(f, "backfill", "rows") != nil || buf.Len() != 0 {
		t.Fatal("a line on a regular file")
	}
}
