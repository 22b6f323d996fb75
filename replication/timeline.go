package replication

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

// Timelines says which timeline wrote each WAL position a server can
// decode: its current timeline and, from the timeline history, where each
// ancestor timeline ended. A promotion or a point-in-time restore starts a
// new timeline at a switch point; WAL before it was written on the parent
// timeline (and keeps that timeline when it is decoded again), WAL after
// it on the new one (a restore may reuse LSNs the parent used for other
// transactions). The zero value is timeline 1 without history.
type Timelines struct {
	current uint32
	ends    []timelineEnd
}

// timelineEnd is one line of a timeline history file: timeline ID wrote
// the WAL before End (and after the previous line's End).
type timelineEnd struct {
	ID  uint32
	End cdc.LSN
}

// Current returns the server's timeline (1 for the zero Timelines).
func (t Timelines) Current() uint32 { return max(t.current, 1) }

// At returns the timeline that wrote the WAL record at lsn (for a
// transaction, its commit LSN).
func (t Timelines) At(lsn cdc.LSN) uint32 {
	for _, e := range t.ends {
		if lsn < e.End {
			return e.ID
		}
	}
	return t.Current()
}

// String formats the history as "1<0/3000060 2<0/5000000 3".
func (t Timelines) String() string {
	var b strings.Builder
	for _, e := range t.ends {
		fmt.Fprintf(&b, "%d<%s ", e.ID, e.End)
	}
	b.WriteString(strconv.FormatUint(uint64(t.Current()), 10))
	return b.String()
}

// ParseTimelineHistory parses the content of the history file of timeline
// current (lines "parentTLI<TAB>switchpoint<TAB>reason", comments after
// '#'), as TIMELINE_HISTORY returns it.
func ParseTimelineHistory(current uint32, content []byte) (Timelines, error) {
	t := Timelines{current: current}
	sc := bufio.NewScanner(bytes.NewReader(content))
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) < 2 {
			return Timelines{}, fmt.Errorf("timeline %d history: line %q: want a timeline and its switch point", current, sc.Text())
		}
		id, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return Timelines{}, fmt.Errorf("timeline %d history: line %q: %w", current, sc.Text(), err)
		}
		end, err := cdc.ParseLSN(f[1])
		if err != nil {
			return Timelines{}, fmt.Errorf("timeline %d history: line %q: %w", current, sc.Text(), err)
		}
		if n := len(t.ends); n > 0 && (uint32(id) <= t.ends[n-1].ID || end < t.ends[n-1].End) {
			return Timelines{}, fmt.Errorf("timeline %d history: line %q does not follow the line before it", current, sc.Text())
		}
		if uint32(id) >= current {
			return Timelines{}, fmt.Errorf("timeline %d history: line %q names a timeline that is not an ancestor", current, sc.Text())
		}
		t.ends = append(t.ends, timelineEnd{ID: uint32(id), End: end})
	}
	if err := sc.Err(); err != nil {
		return Timelines{}, fmt.Errorf("timeline %d history: %w", current, err)
	}
	return t, nil
}

// ReadTimelines returns the timelines of the server behind conn (a
// replication connection that is not streaming) whose current timeline
// IDENTIFY_SYSTEM reported: TIMELINE_HISTORY, unless it is timeline 1.
func ReadTimelines(ctx context.Context, conn *pgconn.PgConn, current int32) (Timelines, error) {
	if current <= 1 {
		return Timelines{current: 1}, nil
	}
	h, err := pglogrepl.TimelineHistory(ctx, conn, current)
	if err != nil {
		return Timelines{}, fmt.Errorf("read the history of timeline %d (TIMELINE_HISTORY): %w", current, err)
	}
	return ParseTimelineHistory(uint32(current), h.Content)
}
