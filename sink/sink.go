package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/config/defaults"
)

// Config configures a Sink. Zero values take the defaults shown.
type Config struct {
	BatchSize        int           // events per request, default 500
	Linger           time.Duration // least time between two partial batches of a lane; 0: none (sink.linger's default is 5ms; see lane.take)
	Concurrency      int           // lanes, default 8
	MaxPendingEvents int           // events queued or in flight, default 20000
	MaxPendingBytes  int64         // bytes queued or in flight, default 64 MiB
	MaxBackoff       time.Duration // cap of the retry backoff, default 60s
	// UnknownUser is "dead-letter" (default) or "drop": what to do with
	// events OneSignal reports "not found" (no such external_id).
	UnknownUser string
	Logger      *zap.Logger
	// OnDelivered, when set, is called for every event OneSignal accepted,
	// from the lane that sent it.
	OnDelivered func(ev *cdc.Event, at time.Time)
	// OnDeadLetter, when set, is called for every dead letter written.
	OnDeadLetter func(l cdc.DeadLetter)
	// Metrics, when set, receives measurements.
	Metrics Metrics
	// MaxEventAge, when positive, is the oldest an event may be (since its
	// transaction committed) when its batch is formed and again before
	// each retry: an older one is not sent but dead-lettered with a reason
	// starting with StaleReason (or dropped, StaleDrop), and handled.
	// Backfilled events (cdc.Event.Backfill) are exempt. 0 sends every
	// event, however old.
	MaxEventAge time.Duration
	// StaleDrop drops stale events instead of dead-lettering them.
	StaleDrop bool
	// Now is the clock of the MaxEventAge check; default time.Now.
	Now func() time.Time
	// OnHandled, when set, is called by lane (cdc.Lane of the external_id)
	// after the handled callback, with the events of each batch it handled,
	// in order: a lane reports its events handled in submission order, one
	// batch after the other (the delivery ledger records that). It is called
	// from the lane's goroutine and must not block.
	OnHandled func(lane int, evs []*cdc.Event)
}

// Metrics receives the sink's measurements. Calls come from the lanes and
// must be cheap and never block.
type Metrics interface {
	// Request reports one OneSignal request: its duration, its outcome
	// ("2xx", "400", "401/403", "429", "5xx", "other", "unexpected" for an
	// answer that is not OneSignal's JSON, "error") and size.
	Request(d time.Duration, outcome string, events int)
	// Retry reports a retried request and why: one of RetryReasons.
	Retry(reason string)
	// Accepted reports an event OneSignal accepted, with its
	// commit-to-accepted latency.
	Accepted(latency time.Duration)
	// Handled reports n events of table ("schema.table") that reached an
	// outcome: OutcomeDelivered, OutcomeDeadLettered or OutcomeDropped.
	Handled(table, outcome string, n int)
}

// Outcomes of Metrics.Handled.
const (
	OutcomeDelivered    = "delivered"
	OutcomeDeadLettered = "dead_lettered"
	OutcomeDropped      = "dropped"
)

// countByTable calls f once for each run of consecutive items of the same
// table, with the run's length: a batch is mostly one table, so this is
// one call per batch instead of one per event.
func countByTable[T any](items []T, table func(T) string, f func(table string, n int)) {
	start := 0
	for i := 1; i <= len(items); i++ {
		if i == len(items) || table(items[i]) != table(items[start]) {
			if i > start {
				f(table(items[start]), i-start)
			}
			start = i
		}
	}
}

// RetryReasons are the reasons Metrics.Retry reports: a network error or
// time-out, 429, 5xx, an answer that is not OneSignal's JSON, and any other
// retried status.
var RetryReasons = []string{"network", "429", "5xx", "unexpected", "other"}

type nopMetrics struct{}

func (nopMetrics) Request(time.Duration, string, int) {}
func (nopMetrics) Retry(string)                       {}
func (nopMetrics) Accepted(time.Duration)             {}
func (nopMetrics) Handled(string, string, int)        {}

// Outcome names the outcome of a request for metrics.
func Outcome(err error) string {
	if err == nil {
		return "2xx"
	}
	var se *StatusError
	if !errors.As(err, &se) {
		if ue := (*UnexpectedAnswerError)(nil); errors.As(err, &ue) {
			return "unexpected"
		}
		return "error"
	}
	switch {
	case se.Status == 400 || se.Status == 413:
		return "400"
	case se.Status == 401 || se.Status == 403:
		return "401/403"
	case se.Status == 429:
		return "429"
	case se.Status >= 500:
		return "5xx"
	default:
		return "other"
	}
}

func (c *Config) defaults() {
	if c.BatchSize <= 0 {
		c.BatchSize = defaults.BatchSize
	}
	if c.Linger < 0 {
		c.Linger = 0
	}
	if c.Concurrency <= 0 {
		c.Concurrency = defaults.Concurrency
	}
	if c.MaxPendingEvents <= 0 {
		c.MaxPendingEvents = defaults.MaxPendingEvents
	}
	if c.MaxPendingBytes <= 0 {
		c.MaxPendingBytes = defaults.MaxPendingBytes
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = defaults.MaxBackoff
	}
	if c.UnknownUser == "" {
		c.UnknownUser = "dead-letter"
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Metrics == nil {
		c.Metrics = nopMetrics{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Sender posts one request body; *Client implements it.
type Sender interface {
	Send(ctx context.Context, body []byte) (Result, error)
}

// ErrUnauthorized is returned (wrapped) when OneSignal refuses the API key.
var ErrUnauthorized = errors.New("OneSignal refused the API key")

// Sink delivers events to OneSignal through lanes.
//
// TrySubmit never blocks; it refuses an event when MaxPendingEvents or
// MaxPendingBytes would be exceeded, and Ready is signalled when room frees
// up. Events are routed to a lane by a hash of their external_id, so one
// user's events are sent in submission (commit) order; lanes run in
// parallel. Each lane sends one batch at a time and retries it until
// OneSignal accepts it, splitting a batch OneSignal rejects as a whole (400)
// until the bad events are isolated. An event is reported handled (through
// the handled callback) once OneSignal accepted it or its dead letter is
// durable. A refused API key or another unrecoverable answer stops the lanes
// and is reported on Err; nothing after it is reported handled.
type Sink struct {
	cfg     Config
	client  Sender
	dl      DeadLetterStore
	handled func(seqs ...uint64)
	log     *zap.Logger

	mu      sync.Mutex
	events  int
	bytes   int64
	ready   chan struct{}
	lanes   []*lane
	fatal   chan error
	wg      sync.WaitGroup
	stopped atomic.Bool

	stats  counters
	outage outage
	// backlog is set while the source reads a backlog (SetBacklog).
	backlog atomic.Bool
	// flushes counts the source's Flush calls: from the first on, a lane
	// holds its first events until the read that brought them has been
	// handled (see Flush).
	flushes atomic.Uint64
	Latency Histogram // commit -> accepted

	staleLog staleLog
}

type counters struct {
	submitted, delivered, deadLettered, dropped, retries, requests, batches atomic.Uint64
	dlFailures                                                              atomic.Uint64
	stale                                                                   atomic.Uint64
}

// Stats is a snapshot of the sink's counters.
type Stats struct {
	Submitted, Delivered, DeadLettered, Dropped, Retries, Requests, Batches uint64
	PendingEvents                                                           int
	PendingBytes                                                            int64
	// DeadLetterWriteFailures counts failed attempts to write dead letters;
	// DeadLetterStoreFailing is set while the last one failed.
	DeadLetterWriteFailures uint64
	DeadLetterStoreFailing  bool
	// Stale counts the events not sent because they were older than
	// MaxEventAge (dead-lettered or dropped; also counted there).
	Stale uint64
	// OldestUnsent is the commit time of the oldest event queued or in
	// flight; zero when there is none.
	OldestUnsent time.Time
}

// New returns a sink; call Start to run its lanes.
func New(cfg Config, client Sender, dl DeadLetterStore, handled func(seqs ...uint64)) *Sink {
	cfg.defaults()
	s := &Sink{
		cfg: cfg, client: client, dl: dl, handled: handled, log: cfg.Logger,
		ready: make(chan struct{}, 1), fatal: make(chan error, 1),
	}
	s.outage.log = cfg.Logger
	s.staleLog.log, s.staleLog.maxAge = cfg.Logger, cfg.MaxEventAge
	for i := 0; i < cfg.Concurrency; i++ {
		s.lanes = append(s.lanes, &lane{s: s, id: i, notify: make(chan struct{}, 1)})
	}
	return s
}

// Start runs the lanes until ctx ends. Wait waits for them.
func (s *Sink) Start(ctx context.Context) {
	for _, l := range s.lanes {
		// Paced from the start: a start-up backlog makes full batches.
		l.lastSend = time.Now()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			l.run(ctx)
		}()
	}
}

// Wait blocks until every lane has returned (after Start's ctx ended), then
// logs the summary of stale events not logged yet.
func (s *Sink) Wait() {
	s.wg.Wait()
	s.staleLog.flush(time.Now())
}

// Err reports an unrecoverable delivery error (e.g. ErrUnauthorized).
func (s *Sink) Err() <-chan error { return s.fatal }

// Ready is signalled when room frees up after TrySubmit refused an event.
func (s *Sink) Ready() <-chan struct{} { return s.ready }

// Stats returns the current counters.
func (s *Sink) Stats() Stats {
	s.mu.Lock()
	ev, by := s.events, s.bytes
	s.mu.Unlock()
	return Stats{
		Submitted: s.stats.submitted.Load(), Delivered: s.stats.delivered.Load(),
		DeadLettered: s.stats.deadLettered.Load(), Dropped: s.stats.dropped.Load(),
		Retries: s.stats.retries.Load(), Requests: s.stats.requests.Load(), Batches: s.stats.batches.Load(),
		PendingEvents: ev, PendingBytes: by,
		DeadLetterWriteFailures: s.stats.dlFailures.Load(), DeadLetterStoreFailing: s.dlFailing(),
		Stale: s.stats.stale.Load(), OldestUnsent: s.oldestUnsent(),
	}
}

// TrySubmit queues ev unless the sink is full.
func (s *Sink) TrySubmit(ev *cdc.Event) bool {
	size := int64(ev.Size())
	s.mu.Lock()
	if s.events > 0 && (s.events+1 > s.cfg.MaxPendingEvents || s.bytes+size > s.cfg.MaxPendingBytes) {
		s.mu.Unlock()
		return false
	}
	s.events++
	s.bytes += size
	s.mu.Unlock()
	s.stats.submitted.Add(1)
	l := s.lanes[cdc.Lane(ev.ExternalID, len(s.lanes))]
	l.push(ev)
	return true
}

// SetBacklog tells the sink whether its source reads a backlog (far behind
// the database's writes): the lanes then pace as when continuously busy, for
// large batches, as latency is the backlog's anyway.
func (s *Sink) SetBacklog(backlog bool) { s.backlog.Store(backlog) }

// Flush says that the source has submitted everything it has received and
// is about to wait for more (the replication stream calls it before a read
// of the network when no transaction is half read). A lane that found itself
// idle holds its events until then, at most Linger, so that the rows of a
// transaction leave in one request rather than the first alone and the rest
// a Linger later. A sink that never receives a Flush sends such events at
// once.
func (s *Sink) Flush() {
	s.flushes.Add(1)
	for _, l := range s.lanes {
		if l.holding.Load() {
			select {
			case l.notify <- struct{}{}:
			default:
			}
		}
	}
}

func (s *Sink) release(evs []*cdc.Event) {
	var size int64
	for _, ev := range evs {
		size += int64(ev.Size())
	}
	s.mu.Lock()
	s.events -= len(evs)
	s.bytes -= size
	s.mu.Unlock()
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

func (s *Sink) fail(err error) {
	s.stopped.Store(true)
	select {
	case s.fatal <- err:
	default:
	}
}

// lane sends its events one batch at a time.
type lane struct {
	s      *Sink
	id     int
	mu     sync.Mutex
	q      []*cdc.Event
	qBytes int // body bytes of the events in q
	// lastSend is when the lane last took a batch: the next partial batch
	// waits for pace() after it. busy counts the lane's last requests in a
	// row that ended with events already queued for the next.
	lastSend time.Time
	busy     int
	// firstFlush and firstAt are the source's Flush count and the time
	// when the first event of q was queued; holding is set while take
	// waits for the next Flush (see Sink.Flush).
	firstFlush uint64
	firstAt    time.Time
	holding    atomic.Bool
	notify     chan struct{}
	// d is reused from batch to batch so that the request body buffer is
	// allocated once per lane.
	d delivery
	// dlFailing is set while the lane's last attempt to write dead letters
	// failed.
	dlFailing atomic.Bool
	// inFlight is the oldest commit time of the batch being processed,
	// zero when none (guarded by mu).
	inFlight time.Time
}

// dlFailing reports whether a lane waits for the dead-letter store.
func (s *Sink) dlFailing() bool {
	for _, l := range s.lanes {
		if l.dlFailing.Load() {
			return true
		}
	}
	return false
}

func (l *lane) push(ev *cdc.Event) {
	l.mu.Lock()
	l.q = append(l.q, ev)
	n := len(l.q)
	if f := l.s.flushes.Load(); n == 1 && f > 0 {
		l.firstFlush = f
		l.firstAt = time.Now()
	}
	before := l.qBytes
	l.qBytes += len(ev.JSON) + 1
	full := before+bodyOverhead < MaxBodyBytes && l.qBytes+bodyOverhead >= MaxBodyBytes
	l.mu.Unlock()
	if n == 1 || n == l.s.cfg.BatchSize || full {
		select {
		case l.notify <- struct{}{}:
		default:
		}
	}
}

// take waits for a batch: BatchSize events, 1 MB of body, or whatever is
// queued once Linger has passed since the lane last took a batch. It returns
// nil when ctx ends.
//
// A lane is in take only while it has no request in flight, so an event that
// finds its lane idle, with no batch taken in the last Linger, is sent at
// once (with a source that calls Flush: as soon as the source has handled
// the read that brought it, so that a transaction's rows go together); the
// events that arrive while a request is in flight go together in the next
// one (as with Nagle's algorithm). Linger paces a busy lane: it
// starts at most one partial batch per Linger, so that a fast stream into a
// fast sink still makes full batches rather than a request per event (see
// pace). An event of a light stream waits at most Linger plus the request
// in flight before its own.
func (l *lane) take(ctx context.Context) []*cdc.Event {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	l.mu.Lock()
	if len(l.q) > 0 {
		l.busy++ // events arrived during the last request
	} else {
		l.busy = 0
	}
	l.mu.Unlock()
	for {
		l.mu.Lock()
		n := len(l.q)
		wait := time.Duration(0)
		hold := false
		if n > 0 && l.s.cfg.Linger > 0 && n < l.s.cfg.BatchSize && l.qBytes+bodyOverhead < MaxBodyBytes {
			wait = l.pace() - time.Since(l.lastSend)
			if wait <= 0 && l.firstFlush != 0 {
				// Set holding before reading the count: a Flush that the
				// load misses sees holding and wakes the lane.
				l.holding.Store(true)
				if l.firstFlush == l.s.flushes.Load() {
					// The read that brought the first event is still
					// being handled: wait for its end, at most Linger.
					wait = l.s.cfg.Linger - time.Since(l.firstAt)
					hold = wait > 0
				}
			}
		}
		if !hold {
			l.holding.Store(false)
		}
		if n > 0 && wait <= 0 {
			batch := l.cut()
			l.lastSend = time.Now()
			l.mu.Unlock()
			return batch
		}
		l.mu.Unlock()
		var tc <-chan time.Time
		if n > 0 {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-l.notify:
		case <-tc:
		}
	}
}

// heavyPace is how many times Linger a lane waits between two partial
// batches while it is continuously busy: while its last two requests (or
// more) each ended with events already queued for the next one.
const heavyPace = 4

// pace is the least time between two partial batches of the lane: Linger,
// or heavyPace × Linger while it is continuously busy or the source reads a
// backlog, so that a sustained
// stream makes large requests (fewer: less CPU per event on both sides)
// while a bursty or light one (a transaction's events, then quiet) keeps
// its latency within Linger.
func (l *lane) pace() time.Duration {
	if l.busy >= 2 || l.s.backlog.Load() {
		return heavyPace * l.s.cfg.Linger
	}
	return l.s.cfg.Linger
}

// cut removes the next batch from the queue; l.mu is held.
func (l *lane) cut() []*cdc.Event {
	size := bodyOverhead
	n := 0
	for n < len(l.q) && n < l.s.cfg.BatchSize {
		add := len(l.q[n].JSON) + 1
		if n > 0 && size+add > MaxBodyBytes {
			break
		}
		size += add
		n++
	}
	batch := make([]*cdc.Event, n)
	copy(batch, l.q[:n])
	l.inFlight = oldestCommit(batch)
	l.qBytes -= size - bodyOverhead
	clear(l.q[:n])
	l.q = l.q[n:]
	if len(l.q) == 0 {
		l.q = nil
	}
	return batch
}

func (l *lane) run(ctx context.Context) {
	for {
		batch := l.take(ctx)
		if batch == nil {
			return
		}
		err := l.process(ctx, batch)
		l.mu.Lock()
		l.inFlight = time.Time{}
		l.mu.Unlock()
		if err != nil {
			if ctx.Err() == nil {
				l.s.fail(err)
			}
			return
		}
	}
}

// process delivers a batch (and dead-letters what cannot be delivered), then
// reports it handled. It returns an error only for a stop: ctx ended or an
// unrecoverable answer.
func (l *lane) process(ctx context.Context, batch []*cdc.Event) error {
	s := l.s
	s.stats.batches.Add(1)
	var letters []cdc.DeadLetter
	send := batch[:0:0]
	now := time.Now()
	for _, ev := range batch {
		if ev.Reject != "" {
			letters = append(letters, cdc.DeadLetter{Pos: ev.Pos, Table: ev.Table, IdempotencyKey: ev.IdempotencyKey,
				Row: ev.Row, Reason: ev.Reject, FirstFailure: ev.CommitTime, LastFailure: now})
			continue
		}
		send = append(send, ev)
	}
	send = s.expire(send, &letters, 0, time.Time{})
	d := &l.d
	d.l, d.letters = l, d.letters[:0]
	if err := d.deliver(ctx, send); err != nil {
		return err
	}
	letters = append(letters, d.letters...)
	if err := l.writeDeadLetters(ctx, letters); err != nil {
		return err
	}
	seqs := make([]uint64, len(batch))
	for i, ev := range batch {
		seqs[i] = ev.Seq
	}
	if s.stopped.Load() {
		return errors.New("sink stopped")
	}
	s.handled(seqs...)
	if s.cfg.OnHandled != nil {
		s.cfg.OnHandled(l.id, batch)
	}
	s.release(batch)
	return nil
}

// deadLetterTimeout bounds one attempt to write dead letters.
const deadLetterTimeout = 60 * time.Second

// writeDeadLetters writes letters, retrying while the store fails (it is
// down, full or forbidden: a retry succeeds once that is fixed). A store
// that refuses the letters for good (ErrLetterRefused) stops the sink.
func (l *lane) writeDeadLetters(ctx context.Context, letters []cdc.DeadLetter) error {
	if len(letters) == 0 {
		return nil
	}
	s := l.s
	bo := s.newBackoff()
	for {
		wctx, cancel := context.WithTimeout(ctx, deadLetterTimeout)
		err := s.dl.Write(wctx, letters)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrLetterRefused) {
			return fmt.Errorf("dead letter %s could not be written, and writing it again cannot help: %w; nothing after the last handled event was confirmed", letters[0].Pos, err)
		}
		s.stats.dlFailures.Add(1)
		l.dlFailing.Store(true)
		wait := bo.NextBackOff()
		s.log.Error("writing dead letters failed; retrying", zap.Error(err), zap.Int("letters", len(letters)), zap.Float64("retry_in_seconds", wait.Seconds()),
			zap.String("fix", "make the dead-letter store writable: census.dead_letters in full mode (connection, permissions, disk space), sink.dead_letter_file in read-only mode (directory, permissions, disk space, or a `pgsignal dead-letters` command holding it); the events wait meanwhile"))
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
	l.dlFailing.Store(false)
	s.stats.deadLettered.Add(uint64(len(letters)))
	countByTable(letters, func(l cdc.DeadLetter) string { return l.Table }, func(t string, n int) {
		s.cfg.Metrics.Handled(t, OutcomeDeadLettered, n)
	})
	for _, dl := range letters {
		if IsStaleReason(dl.Reason) {
			// Summarized by the stale log, not one line per event.
			s.log.Debug("dead letter", zap.String("table", dl.Table), zap.Stringer("position", dl.Pos), zap.String("reason", dl.Reason))
		} else {
			s.log.Warn("dead letter", zap.String("table", dl.Table), zap.Stringer("position", dl.Pos), zap.String("reason", dl.Reason))
		}
		if s.cfg.OnDeadLetter != nil {
			s.cfg.OnDeadLetter(dl)
		}
	}
	return nil
}

func (s *Sink) newBackoff() backoff.BackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 200 * time.Millisecond
	bo.RandomizationFactor = 0.5
	bo.Multiplier = 2
	bo.MaxInterval = s.cfg.MaxBackoff
	bo.MaxElapsedTime = 0
	bo.Reset()
	return bo
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// delivery sends one batch, splitting it on 400s.
type delivery struct {
	l       *lane
	letters []cdc.DeadLetter
	body    []byte
	parts   [][]byte
}

func (d *delivery) deliver(ctx context.Context, evs []*cdc.Event) error {
	if len(evs) == 0 {
		return nil
	}
	s := d.l.s
	d.parts = d.parts[:0]
	for _, ev := range evs {
		d.parts = append(d.parts, ev.JSON)
	}
	d.body = AppendBody(d.body[:0], d.parts)
	bo := s.newBackoff()
	first := time.Time{}
	attempts := 0
	for {
		attempts++
		s.stats.requests.Add(1)
		sent := time.Now()
		res, err := s.client.Send(ctx, d.body)
		s.cfg.Metrics.Request(time.Since(sent), Outcome(err), len(evs))
		if err == nil {
			s.outage.succeeded(time.Now())
			d.accepted(evs, res, attempts, first)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if first.IsZero() {
			first = time.Now()
		}
		switch Classify(err) {
		case Retry:
			wait := bo.NextBackOff()
			if ra := RetryAfter(err); ra > wait {
				wait = ra
			}
			s.stats.retries.Add(1)
			reason := Outcome(err)
			if reason == "error" {
				reason = "network"
			}
			s.cfg.Metrics.Retry(reason)
			if ue := (*UnexpectedAnswerError)(nil); errors.As(err, &ue) {
				// Not OneSignal: nothing is known of these events, so none is
				// handled and the checkpoint waits.
				s.outage.failed(time.Now(), wait, true,
					zap.String("url", ue.URL), zap.Int("status", ue.Status), zap.String("content_type", ue.ContentType),
					zap.String("body", ue.Body), zap.Int("lane", d.l.id), zap.Int("events", len(evs)),
					zap.Int("attempt", attempts),
					zap.String("fix", "set onesignal.url to https://api.onesignal.com (or a proxy that forwards to it unchanged)"))
			} else {
				s.outage.failed(time.Now(), wait, false, zap.Int("lane", d.l.id), zap.Int("events", len(evs)),
					zap.Int("attempt", attempts), zap.Error(err))
			}
			if err := sleep(ctx, wait); err != nil {
				return err
			}
			// An event that became stale during the outage is not sent.
			if left := s.expire(evs, &d.letters, attempts, first); len(left) != len(evs) {
				if len(left) == 0 {
					return nil
				}
				evs = left
				d.parts = d.parts[:0]
				for _, ev := range evs {
					d.parts = append(d.parts, ev.JSON)
				}
				d.body = AppendBody(d.body[:0], d.parts)
			}
		case BadRequest:
			if len(evs) == 1 {
				now := time.Now()
				ev := evs[0]
				d.letters = append(d.letters, cdc.DeadLetter{Pos: ev.Pos, Table: ev.Table, IdempotencyKey: ev.IdempotencyKey,
					Event: ev.JSON, Reason: "OneSignal rejected the event: " + err.Error(), Attempts: attempts,
					FirstFailure: first, LastFailure: now})
				return nil
			}
			half := len(evs) / 2
			left, right := evs[:half], evs[half:]
			if err := d.deliver(ctx, left); err != nil {
				return err
			}
			return d.deliver(ctx, right)
		case Unauthorized:
			return fmt.Errorf("%w (%v): set onesignal.api_key to the App API key of %s (Settings > Keys & IDs); nothing after the last delivered event was confirmed", ErrUnauthorized, err, appOf(s.client))
		default:
			return fmt.Errorf("OneSignal request failed permanently: %w; check onesignal.app_id and onesignal.url", err)
		}
	}
}

// accepted handles a 2xx answer: per-event failures become dead letters (or
// are dropped), the rest is delivered.
func (d *delivery) accepted(evs []*cdc.Event, res Result, attempts int, first time.Time) {
	s := d.l.s
	now := time.Now()
	var failed map[string]EventError
	if len(res.Failed) > 0 {
		failed = make(map[string]EventError, len(res.Failed))
		for _, f := range res.Failed {
			failed[f.ExternalID] = f
		}
	}
	delivered := 0
	defer func() {
		s.stats.delivered.Add(uint64(delivered))
		if delivered > 0 && s.staleLog.pending.Load() {
			s.staleLog.flush(now) // sending again: the stale ones are summarized
		}
	}()
	if len(failed) == 0 {
		countByTable(evs, func(ev *cdc.Event) string { return ev.Table }, func(t string, n int) {
			s.cfg.Metrics.Handled(t, OutcomeDelivered, n)
		})
	}
	debug := s.log.Core().Enabled(zap.DebugLevel)
	for _, ev := range evs {
		if f, ok := failed[ev.ExternalID]; ok {
			if s.cfg.UnknownUser == defaults.UnknownUserDrop && strings.EqualFold(f.Code, "not found") {
				s.stats.dropped.Add(1)
				s.cfg.Metrics.Handled(ev.Table, OutcomeDropped, 1)
				continue
			}
			if first.IsZero() {
				first = now
			}
			d.letters = append(d.letters, cdc.DeadLetter{Pos: ev.Pos, Table: ev.Table, IdempotencyKey: ev.IdempotencyKey,
				Event: ev.JSON, Reason: fmt.Sprintf("OneSignal: %s: %s", f.Code, f.Title), Attempts: attempts,
				FirstFailure: first, LastFailure: now})
			continue
		}
		delivered++
		if len(failed) > 0 {
			s.cfg.Metrics.Handled(ev.Table, OutcomeDelivered, 1)
		}
		if debug {
			s.log.Debug("event accepted", zap.String("table", ev.Table), zap.String("name", ev.Name), zap.String("external_id", ev.ExternalID),
				zap.String("idempotency_key", ev.IdempotencyKey), zap.Stringer("position", ev.Pos))
		}
		if !ev.CommitTime.IsZero() {
			s.Latency.Observe(now.Sub(ev.CommitTime))
			s.cfg.Metrics.Accepted(now.Sub(ev.CommitTime))
		}
		if s.cfg.OnDelivered != nil {
			s.cfg.OnDelivered(ev, now)
		}
	}
}

// appOf names the OneSignal app that client posts to, for a message: "app
// <id>" for a *Client, else the configuration key.
func appOf(client Sender) string {
	if c, ok := client.(*Client); ok && c.cfg.AppID != "" {
		return "app " + c.cfg.AppID
	}
	return "the app of onesignal.app_id"
}
