package sink

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

// StaleReason starts the reason of the dead letter of an event older than
// Config.MaxEventAge: "older than max_event_age (<age> > <max>)".
const StaleReason = "older than max_event_age"

// IsStaleReason reports whether a dead letter's reason says its event was
// older than max_event_age when pgsignal was about to send it.
func IsStaleReason(reason string) bool { return strings.HasPrefix(reason, StaleReason) }

// StaleLogMessage is the message of the log line that summarizes stale
// events.
const StaleLogMessage = "events older than sink.max_event_age were not sent"

// StaleMetrics is implemented by a Metrics that also counts stale events.
type StaleMetrics interface {
	// Stale reports n events of table older than max_event_age, and what
	// became of them: OutcomeDeadLettered or OutcomeDropped.
	Stale(table, action string, n int)
}

// staleRepeat is how often a summary of stale events is logged while they
// keep coming.
const staleRepeat = time.Minute

// stale reports whether ev is too old to be sent at now: MaxEventAge is
// set, ev is an event (not a rejected row), it is not a backfill's (a
// backfill asks for history) and it has a commit time.
func (s *Sink) stale(ev *cdc.Event, now time.Time) bool {
	return s.cfg.MaxEventAge > 0 && ev.Reject == "" && !ev.Backfill && !ev.CommitTime.IsZero() &&
		now.Sub(ev.CommitTime) > s.cfg.MaxEventAge
}

// staleLetter is the dead letter of a stale event.
func (s *Sink) staleLetter(ev *cdc.Event, now time.Time, attempts int, first time.Time) cdc.DeadLetter {
	age := now.Sub(ev.CommitTime)
	if age >= time.Minute {
		age = age.Round(time.Second)
	} else {
		age = age.Round(time.Millisecond)
	}
	if first.IsZero() {
		first = now
	}
	return cdc.DeadLetter{Pos: ev.Pos, Table: ev.Table, IdempotencyKey: ev.IdempotencyKey, Event: ev.JSON, Row: ev.Row,
		Reason:   fmt.Sprintf("%s (%s > %s)", StaleReason, age, s.cfg.MaxEventAge),
		Attempts: attempts, FirstFailure: first, LastFailure: now}
}

// expire takes the stale events out of evs: their dead letters are
// appended to letters (with attempts and first, the delivery attempts so
// far), or they are dropped (Config.StaleDrop). It returns the events left
// to send, evs itself when none was stale. They are handled with their
// batch.
func (s *Sink) expire(evs []*cdc.Event, letters *[]cdc.DeadLetter, attempts int, first time.Time) []*cdc.Event {
	if s.cfg.MaxEventAge <= 0 {
		return evs
	}
	now := s.cfg.Now()
	n := 0
	for _, ev := range evs {
		if s.stale(ev, now) {
			n++
		}
	}
	if n == 0 {
		return evs
	}
	keep := make([]*cdc.Event, 0, len(evs)-n)
	var stale []*cdc.Event
	for _, ev := range evs {
		if !s.stale(ev, now) {
			keep = append(keep, ev)
			continue
		}
		stale = append(stale, ev)
		if !s.cfg.StaleDrop {
			*letters = append(*letters, s.staleLetter(ev, now, attempts, first))
		}
	}
	action := OutcomeDeadLettered
	if s.cfg.StaleDrop {
		action = OutcomeDropped
		s.stats.dropped.Add(uint64(len(stale)))
		countByTable(stale, func(ev *cdc.Event) string { return ev.Table }, func(t string, n int) {
			s.cfg.Metrics.Handled(t, OutcomeDropped, n)
		})
	}
	s.stats.stale.Add(uint64(len(stale)))
	sm, _ := s.cfg.Metrics.(StaleMetrics)
	countByTable(stale, func(ev *cdc.Event) string { return ev.Table }, func(t string, n int) {
		if sm != nil {
			sm.Stale(t, action, n)
		}
	})
	times := make([]time.Time, len(stale))
	for i, ev := range stale {
		times[i] = ev.CommitTime
	}
	s.staleLog.add(time.Now(), stale[0].Table, action, times)
	return keep
}

// staleLog turns stale events into few log lines: one summary (how many,
// the oldest and newest commit times) when an event is sent again after
// them, at the stop, or at most every staleRepeat while they keep coming.
// Lanes share one staleLog.
type staleLog struct {
	log    *zap.Logger
	maxAge time.Duration

	pending atomic.Bool // events counted and not yet logged

	mu             sync.Mutex
	from           time.Time // first event counted since the last line (or the last repeat)
	n              int
	action         string
	tables         []string
	oldest, newest time.Time
	timer          *time.Timer
}

// add counts stale events of table (their commit times) and logs the
// summary when the last line is staleRepeat old. The summary of events
// that stop coming is logged by a timer staleRepeat after the first.
func (l *staleLog) add(now time.Time, table, action string, commits []time.Time) {
	l.mu.Lock()
	if l.from.IsZero() {
		l.from = now
	}
	l.n += len(commits)
	l.action = action
	if !slices.Contains(l.tables, table) {
		l.tables = append(l.tables, table)
	}
	for _, c := range commits {
		if l.oldest.IsZero() || c.Before(l.oldest) {
			l.oldest = c
		}
		if c.After(l.newest) {
			l.newest = c
		}
	}
	l.pending.Store(true)
	due := now.Sub(l.from) >= staleRepeat
	if due {
		l.writeLocked()
		l.from = now
		if l.timer != nil {
			l.timer.Stop()
			l.timer = nil
		}
	} else if l.timer == nil && l.log != nil {
		l.timer = time.AfterFunc(staleRepeat, func() { l.flush(time.Now()) })
	}
	l.mu.Unlock()
}

// flush logs the summary of the events counted since the last line, if
// any, and starts the next period afresh.
func (l *staleLog) flush(time.Time) {
	if !l.pending.Load() {
		return
	}
	l.mu.Lock()
	l.writeLocked()
	l.from = time.Time{}
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	l.mu.Unlock()
}

// writeLocked logs the summary and resets the counts; l.mu is held.
func (l *staleLog) writeLocked() {
	if l.n == 0 {
		return
	}
	fields := []zap.Field{zap.Int("events", l.n), zap.String("action", l.action),
		zap.String("max_event_age", l.maxAge.String()), zap.Strings("tables", l.tables),
		zap.String("oldest_commit", l.oldest.UTC().Format(time.RFC3339Nano)),
		zap.String("newest_commit", l.newest.UTC().Format(time.RFC3339Nano))}
	if l.action == OutcomeDeadLettered {
		fields = append(fields, zap.String("replay", "their dead letters' reason starts with \""+StaleReason+
			"\": review them with `pgsignal dead-letters list --reason '"+StaleReason+"'`, send them anyway with `pgsignal dead-letters replay --reason '"+StaleReason+"'`"))
	}
	if l.log != nil {
		l.log.Warn(StaleLogMessage, fields...)
	}
	l.n, l.tables, l.oldest, l.newest = 0, nil, time.Time{}, time.Time{}
	l.pending.Store(false)
}

// oldestCommit is the earliest commit time of evs, zero when none has one.
func oldestCommit(evs []*cdc.Event) time.Time {
	var o time.Time
	for _, ev := range evs {
		if !ev.CommitTime.IsZero() && (o.IsZero() || ev.CommitTime.Before(o)) {
			o = ev.CommitTime
		}
	}
	return o
}

// oldestUnsent is the commit time of the oldest event queued or in flight
// in any lane, zero when none.
func (s *Sink) oldestUnsent() time.Time {
	var o time.Time
	for _, l := range s.lanes {
		l.mu.Lock()
		for _, t := range []time.Time{l.inFlight, oldestCommit(l.q)} {
			if !t.IsZero() && (o.IsZero() || t.Before(o)) {
				o = t
			}
		}
		l.mu.Unlock()
	}
	return o
}
