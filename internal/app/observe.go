package app

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/checkpoint"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/replication"
	"github.com/pgsignal/pgsignal/sink"
)

// monitor holds pgsignal's metrics and health state. Counters that the
// stages already keep are read at scrape time; histograms are observed as
// events happen (sink.Metrics).
type monitor struct {
	reg      *prometheus.Registry
	requests *prometheus.HistogramVec
	retries  *prometheus.CounterVec
	// handled counts events by table and outcome: delivered,
	// dead-lettered, dropped (sink.Metrics.Handled).
	handled map[string]*prometheus.CounterVec
	latency prometheus.Histogram
	batch   prometheus.Histogram
	bfDone  prometheus.Gauge
	bfTotal prometheus.Gauge
	// stale counts events older than sink.max_event_age, by table and
	// action (sink.StaleMetrics).
	stale *prometheus.CounterVec

	mu        sync.Mutex
	stream    *replication.Stream
	sink      *sink.Sink
	tracker   *checkpoint.Tracker
	slotState slotState
	// query is the query method's status (nil with the logical method).
	query *queryStatus

	lastProgress atomic.Int64 // unix nanos of the last checkpoint advance
	stalled      atomic.Bool
	health       tableHealth
	ledger       ledgerMetrics
}

type slotState struct {
	walStatus   string
	safeWALSize float64 // -1 when unlimited/unknown
	known       bool
}

var _ sink.Metrics = (*monitor)(nil)
var _ sink.StaleMetrics = (*monitor)(nil)

func newMonitor() *monitor {
	o := &monitor{reg: prometheus.NewRegistry()}
	o.requests = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "pgsignal_onesignal_request_duration_seconds", Help: "OneSignal request latency by outcome.",
		Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
	}, []string{"outcome"})
	o.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pgsignal_retries_total", Help: "OneSignal requests retried, by reason.",
	}, []string{"reason"})
	o.handled = map[string]*prometheus.CounterVec{
		sink.OutcomeDelivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgsignal_events_delivered_total", Help: "Events OneSignal accepted, by source table.",
		}, []string{"table"}),
		sink.OutcomeDeadLettered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgsignal_events_dead_lettered_total", Help: "Events written to the dead letters, by source table.",
		}, []string{"table"}),
		sink.OutcomeDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "pgsignal_events_dropped_total", Help: "Events dropped (sink.unknown_user: drop for unknown users, sink.stale: drop for events older than sink.max_event_age), by source table.",
		}, []string{"table"}),
	}
	for _, c := range o.handled {
		o.reg.MustRegister(c)
	}
	o.latency = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "pgsignal_commit_to_accepted_seconds", Help: "Time from the transaction's commit to OneSignal's acceptance.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
	})
	o.batch = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "pgsignal_batch_size_events", Help: "Events per OneSignal request.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 14),
	})
	o.bfDone = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pgsignal_backfill_rows_done", Help: "Rows of the running backfill read and handed to the sink.",
	})
	o.bfTotal = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "pgsignal_backfill_rows_total", Help: "Rows in the running backfill's window.",
	})
	// Every retry reason exists from the start (at 0), so that rate() and
	// increase() alerts see the first retry.
	for _, r := range sink.RetryReasons {
		o.retries.WithLabelValues(r)
	}
	o.stale = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "pgsignal_stale_events_total", Help: "Events not sent because they were older than sink.max_event_age, by source table and action (dead_lettered, dropped).",
	}, []string{"table", "action"})
	o.reg.MustRegister(o.stale)
	o.reg.MustRegister(o.requests, o.retries, o.latency, o.batch, o.bfDone, o.bfTotal, o, &o.health, &o.ledger, buildInfoGauge(),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	o.lastProgress.Store(time.Now().UnixNano())
	return o
}

// Request implements sink.Metrics.
func (o *monitor) Request(d time.Duration, outcome string, events int) {
	o.requests.WithLabelValues(outcome).Observe(d.Seconds())
	o.batch.Observe(float64(events))
}

// backfillProgress reports a backfill's progress.
func (o *monitor) backfillProgress(done, total int64) {
	o.bfDone.Set(float64(done))
	o.bfTotal.Set(float64(total))
}

// Retry implements sink.Metrics.
func (o *monitor) Retry(reason string) { o.retries.WithLabelValues(reason).Inc() }

// Handled implements sink.Metrics.
func (o *monitor) Handled(table, outcome string, n int) {
	if c := o.handled[outcome]; c != nil {
		c.WithLabelValues(table).Add(float64(n))
	}
}

// tables makes every configured table's counters exist (at 0) before its
// first event, so that rate() and increase() see the first one.
func (o *monitor) tables(names []string) {
	for _, c := range o.handled {
		for _, t := range names {
			c.WithLabelValues(t)
		}
	}
	for _, t := range names {
		o.stale.WithLabelValues(t, sink.OutcomeDeadLettered)
		o.stale.WithLabelValues(t, sink.OutcomeDropped)
	}
}

// Stale implements sink.StaleMetrics.
func (o *monitor) Stale(table, action string, n int) {
	o.stale.WithLabelValues(table, action).Add(float64(n))
}

// Accepted implements sink.Metrics.
func (o *monitor) Accepted(latency time.Duration) { o.latency.Observe(latency.Seconds()) }

// attachQuery is attach for the query method, which has no stream.
func (o *monitor) attachQuery(sk *sink.Sink, t *checkpoint.Tracker, q *queryStatus) {
	o.mu.Lock()
	o.sink, o.tracker, o.query = sk, t, q
	o.mu.Unlock()
	_ = o.reg.Register(q) // a second run of the App: already registered
}

func (o *monitor) attach(st *replication.Stream, sk *sink.Sink, t *checkpoint.Tracker) {
	o.mu.Lock()
	o.stream, o.sink, o.tracker = st, sk, t
	o.mu.Unlock()
}

var (
	descReceived     = prometheus.NewDesc("pgsignal_events_received_total", "Row changes received from the slot.", nil, nil)
	descBatches      = prometheus.NewDesc("pgsignal_batches_total", "Batches processed by the sink.", nil, nil)
	descQueueEvents  = prometheus.NewDesc("pgsignal_queue_events", "Events queued or in flight in the sink.", nil, nil)
	descQueueBytes   = prometheus.NewDesc("pgsignal_queue_bytes", "Bytes queued or in flight in the sink.", nil, nil)
	descLag          = prometheus.NewDesc("pgsignal_replication_lag_bytes", "Server WAL end minus the confirmed position.", nil, nil)
	descLastProgress = prometheus.NewDesc("pgsignal_last_progress_timestamp_seconds", "Unix time at which the checkpoint last advanced (or nothing was pending).", nil, nil)
	descConnected    = prometheus.NewDesc("pgsignal_replication_connected", "1 while the replication connection streams.", nil, nil)
	descReconnects   = prometheus.NewDesc("pgsignal_replication_reconnects_total", "Replication reconnects.", nil, nil)
	descBlocked      = prometheus.NewDesc("pgsignal_replication_blocked", "1 while reading waits for room in the sink (backpressure).", nil, nil)
	descSlotStatus   = prometheus.NewDesc("pgsignal_slot_wal_status", "The slot's wal_status (1 for the current value).", []string{"status"}, nil)
	descSafeWAL      = prometheus.NewDesc("pgsignal_slot_safe_wal_size_bytes", "WAL that can still be written before the slot is lost; absent while max_slot_wal_keep_size is unlimited.", nil, nil)
	descStalled      = prometheus.NewDesc("pgsignal_stalled", "1 while pending work makes no progress for stall_timeout.", nil, nil)
	descDLFailures   = prometheus.NewDesc("pgsignal_dead_letter_write_failures_total", "Failed attempts to write dead letters (each is retried).", nil, nil)
	descOldestUnsent = prometheus.NewDesc("pgsignal_oldest_unsent_event_age_seconds", "Age (since its transaction committed) of the oldest event queued or in flight in the sink; 0 when none.", nil, nil)
)

// Describe implements prometheus.Collector.
func (o *monitor) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descReceived, descBatches,
		descQueueEvents, descQueueBytes, descLag, descLastProgress, descConnected, descReconnects, descBlocked,
		descSlotStatus, descSafeWAL, descStalled, descDLFailures, descOldestUnsent} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (o *monitor) Collect(ch chan<- prometheus.Metric) {
	o.mu.Lock()
	st, sk, slot := o.stream, o.sink, o.slotState
	o.mu.Unlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	if st != nil {
		ss := st.Stats()
		counter(descReceived, ss.Received)
		counter(descReconnects, ss.Reconnects)
		gauge(descConnected, b2f(ss.Connected))
		gauge(descBlocked, b2f(ss.Blocked))
		lag := 0.0
		if ss.ServerWALEnd > ss.Flushed {
			lag = float64(ss.ServerWALEnd - ss.Flushed)
		}
		gauge(descLag, lag)
	}
	if sk != nil {
		s := sk.Stats()
		counter(descBatches, s.Batches)
		counter(descDLFailures, s.DeadLetterWriteFailures)
		gauge(descQueueEvents, float64(s.PendingEvents))
		gauge(descQueueBytes, float64(s.PendingBytes))
		gauge(descOldestUnsent, unsentAge(s.OldestUnsent, time.Now()))
	}
	gauge(descLastProgress, float64(o.lastProgress.Load())/1e9)
	gauge(descStalled, b2f(o.stalled.Load()))
	if slot.known {
		for _, s := range []string{"reserved", "extended", "unreserved", "lost"} {
			gauge(descSlotStatus, b2f(slot.walStatus == s), s)
		}
		if slot.safeWALSize >= 0 {
			gauge(descSafeWAL, slot.safeWALSize)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// handler serves /metrics, /healthz and /readyz.
func (o *monitor) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(o.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ok, why := o.ready(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, why)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// ready reports whether pgsignal streams and the sink is not stalled.
func (o *monitor) ready() (bool, string) {
	o.mu.Lock()
	st, q := o.stream, o.query
	o.mu.Unlock()
	if q != nil && st == nil {
		if ok, why := q.ready(); !ok {
			return false, why
		}
	}
	switch {
	case o.health.problem() != "":
		return false, o.health.problem()
	case st == nil && q != nil:
	case st == nil:
		return false, "not streaming yet"
	case st != nil && !st.Stats().Connected:
		return false, "replication connection down (reconnecting)"
	case o.stalled.Load():
		return false, "stalled: pending events make no progress"
	}
	return true, ""
}

// watch tracks progress and detects stalls: pending work and no checkpoint
// advance for stallTimeout. It logs an error once per stall saying what is
// stuck, and polls the slot's wal_status every 15 s.
func (o *monitor) watch(ctx context.Context, pool *pgxpool.Pool, slot string, stallTimeout time.Duration, log *zap.Logger) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastPos cdc.Position
	var lastConfirm cdc.LSN
	var lastSlotPoll time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		o.mu.Lock()
		st, sk, t := o.stream, o.sink, o.tracker
		o.mu.Unlock()
		if t == nil {
			continue
		}
		pos, confirm := t.Checkpoint()
		pending := t.Pending()
		if pos != lastPos || confirm != lastConfirm || pending == 0 {
			lastPos, lastConfirm = pos, confirm
			o.lastProgress.Store(time.Now().UnixNano())
			if o.stalled.Swap(false) {
				log.Info("progress again after a stall", zap.Stringer("checkpoint", pos))
			}
		} else if stallTimeout > 0 && time.Since(time.Unix(0, o.lastProgress.Load())) > stallTimeout && !o.stalled.Load() {
			o.stalled.Store(true)
			var ss replication.StreamStats
			if st != nil {
				ss = st.Stats()
			} else {
				ss.Connected = true // the query method: its failures are logged by the poller
			}
			sks := sk.Stats()
			stuck := "the sink: OneSignal requests are failing or slow (see the retry log lines)"
			if sks.DeadLetterStoreFailing {
				stuck = "the dead-letter store: writing dead letters keeps failing (see the \"writing dead letters failed\" log lines); make census.dead_letters (full mode) or sink.dead_letter_file (read-only mode) writable"
			} else if ss.TransformFailing {
				stuck = "a SQL transform whose evaluation keeps failing (see the \"transform could not be evaluated\" log lines)"
			} else if !ss.Connected {
				stuck = "the replication connection, which is down"
			} else if sks.PendingEvents == 0 {
				stuck = "the checkpoint: events are delivered but the watermark does not advance"
			}
			log.Error("stalled: pending events make no progress", zap.Duration("for", stallTimeout),
				zap.Int("pending_events", pending), zap.Int("queued_events", sks.PendingEvents),
				zap.Uint64("retries", sks.Retries), zap.Bool("replication_blocked", ss.Blocked),
				zap.Stringer("checkpoint", pos), zap.String("stuck", stuck))
		}
		if pool != nil && time.Since(lastSlotPoll) >= 15*time.Second {
			lastSlotPoll = time.Now()
			o.pollSlot(ctx, pool, slot)
		}
	}
}

func (o *monitor) pollSlot(ctx context.Context, pool *pgxpool.Pool, slot string) {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	si, err := pgcat.LookupSlot(qctx, pool, slot)
	if err != nil || !si.Exists {
		return
	}
	s := slotState{known: true, safeWALSize: -1, walStatus: si.WALStatus}
	if si.SafeWALSize != nil {
		s.safeWALSize = float64(*si.SafeWALSize)
	}
	o.mu.Lock()
	o.slotState = s
	o.mu.Unlock()
}

// unsentAge is the age in seconds of an event committed at oldest (0 for
// none, and for a commit time ahead of this clock).
func unsentAge(oldest, now time.Time) float64 {
	if oldest.IsZero() || !now.After(oldest) {
		return 0
	}
	return now.Sub(oldest).Seconds()
}
