// Package progress draws a progress line a person can watch on a terminal:
// done/total, rate and time left, redrawn in place (\r). When the output
// is not a terminal it draws nothing, and logs stay as they are.
package progress

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

// minRedraw is the least time between two redraws.
const minRedraw = 100 * time.Millisecond

// Line is a progress line on a terminal. A nil *Line draws nothing; its
// methods are safe for concurrent use.
type Line struct {
	mu    sync.Mutex
	w     io.Writer
	label string
	unit  string
	now   func() time.Time
	start time.Time
	last  time.Time
	shown string // the line on screen, "" when none
	done  int64
	total int64
}

// New returns a Line drawing on w when w is a terminal, else nil (no
// line). label names the work ("backfill"), unit its items ("rows").
func New(w io.Writer, label, unit string) *Line {
	if !IsTerminal(w) {
		return nil
	}
	return newLine(w, label, unit, time.Now)
}

func newLine(w io.Writer, label, unit string, now func() time.Time) *Line {
	return &Line{w: w, label: label, unit: unit, now: now, start: now()}
}

// IsTerminal reports whether w is a character device (a terminal).
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// Update records progress (total 0: unknown) and redraws the line, at most
// every 100 ms and always when done reaches total.
func (l *Line) Update(done, total int64) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.done, l.total = done, total
	t := l.now()
	if l.shown != "" && t.Sub(l.last) < minRedraw && done != total {
		return
	}
	l.last = t
	l.draw(Render(l.label, l.unit, done, total, t.Sub(l.start)))
}

// Finish draws the final state and ends the line (nothing when no line is
// shown).
func (l *Line) Finish() {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shown == "" {
		return
	}
	l.draw(Render(l.label, l.unit, l.done, l.total, l.now().Sub(l.start)))
	fmt.Fprint(l.w, "\n")
	l.shown = ""
}

// draw replaces the line on screen with s.
func (l *Line) draw(s string) {
	fmt.Fprint(l.w, "\r\x1b[K"+s)
	l.shown = s
}

// Writer returns a writer to w (the same terminal) that clears the line
// before each write and draws it again after, so that log lines do not
// mix with it. For a nil Line it returns w.
func (l *Line) Writer(w io.Writer) io.Writer {
	if l == nil {
		return w
	}
	return &clearing{l: l, w: w}
}

type clearing struct {
	l *Line
	w io.Writer
}

func (c *clearing) Write(p []byte) (int, error) {
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if c.l.shown != "" {
		fmt.Fprint(c.l.w, "\r\x1b[K")
	}
	n, err := c.w.Write(p)
	if c.l.shown != "" {
		fmt.Fprint(c.l.w, c.l.shown)
	}
	return n, err
}

// Render is the text of a progress line: "LABEL: DONE/TOTAL UNIT (P%),
// RATE UNIT/s, ETA left" (without a total: "LABEL: DONE UNIT, RATE
// UNIT/s").
func Render(label, unit string, done, total int64, elapsed time.Duration) string {
	s := label + ": " + group(done)
	if total > 0 {
		s += "/" + group(total) + " " + unit + " (" + strconv.FormatInt(min(done*100/total, 100), 10) + "%)"
	} else {
		s += " " + unit
	}
	if elapsed <= 0 || done <= 0 {
		return s
	}
	rate := float64(done) / elapsed.Seconds()
	s += ", " + rateText(rate) + " " + unit + "/s"
	if total > done {
		left := time.Duration(float64(total-done) / rate * float64(time.Second))
		s += ", " + durText(left) + " left"
	}
	return s
}

// group writes n with thousands separators: 1,234,567.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return s
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func rateText(r float64) string {
	if r >= 100 {
		return group(int64(r + 0.5))
	}
	return strconv.FormatFloat(r, 'f', 1, 64)
}

// durText writes d rounded to the second as 1h02m03s, 2m03s or 3s.
func durText(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, s := int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60
	switch {
	case h > 0:
		return fmt.Sprintf("%dh%02dm%02ds", h, m, s)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}
