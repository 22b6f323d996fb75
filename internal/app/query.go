package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/checkpoint"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/statefile"
	"github.com/pgsignal/pgsignal/internal/store"
	"github.com/pgsignal/pgsignal/mapper"
	"github.com/pgsignal/pgsignal/replication"
	"github.com/pgsignal/pgsignal/replication/query"
	"github.com/pgsignal/pgsignal/sink"
)

// querySection is the state file's section of the query method
// (read-only mode).
const querySection = "query"

// queryStateFile is the query method's state file section.
type queryStateFile struct {
	SystemID string      `json:"system_id"`
	Tables   query.State `json:"tables"`
}

// queryStore keeps the query method's positions: in the bookkeeping
// schema (full mode) or in the state file (read-only mode).
type queryStore interface {
	Load(ctx context.Context) (query.State, error)
	Save(ctx context.Context, st query.State) error
}

type tableQueryStore struct {
	pool         *pgxpool.Pool
	schema, name string
}

func (s *tableQueryStore) Load(ctx context.Context) (query.State, error) {
	raw, err := store.LoadQueryPositions(ctx, s.pool, s.schema, s.name)
	if err != nil {
		return nil, err
	}
	st := query.State{}
	for t, b := range raw {
		var ts query.TableState
		if err := json.Unmarshal(b, &ts); err != nil {
			return nil, fmt.Errorf("the stored query position of %s in %s.query_positions: %w", t, s.schema, err)
		}
		st[t] = ts
	}
	return st, nil
}

func (s *tableQueryStore) Save(ctx context.Context, st query.State) error {
	raw := make(map[string][]byte, len(st))
	for t, ts := range st {
		b, err := json.Marshal(ts)
		if err != nil {
			return err
		}
		raw[t] = b
	}
	return store.SaveQueryPositions(ctx, s.pool, s.schema, s.name, raw)
}

type fileQueryStore struct {
	f        *statefile.File
	systemID string
}

func (s *fileQueryStore) Load(context.Context) (query.State, error) {
	var v queryStateFile
	ok, err := s.f.Get(querySection, &v)
	if err != nil || !ok {
		return nil, err
	}
	if v.SystemID != "" && v.SystemID != s.systemID {
		return nil, fmt.Errorf("state file %s holds the query method's position in the database system %s, and source.dsn is system %s: point source.dsn at the database it was written for (or a standby of it), or give this database its own source.state_file", s.f.Path(), v.SystemID, s.systemID)
	}
	return v.Tables, nil
}

func (s *fileQueryStore) Save(_ context.Context, st query.State) error {
	return s.f.Put(map[string]any{querySection: queryStateFile{SystemID: s.systemID, Tables: st}})
}

// queryCandidate is the poller's state after a poll: it may be stored once
// every event below seqEnd is handled.
type queryCandidate struct {
	seqEnd uint64
	state  query.State
}

// queryCandidates holds the states waiting for their events.
type queryCandidates struct {
	mu   sync.Mutex
	list []queryCandidate
}

// maxCandidates bounds the states kept while events are not handled;
// past it every other one is dropped (storing less often is safe).
const maxCandidates = 512

func (c *queryCandidates) add(seqEnd uint64, st query.State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n := len(c.list); n > 0 && c.list[n-1].seqEnd == seqEnd {
		c.list[n-1].state = st
		return
	}
	if len(c.list) >= maxCandidates {
		kept := c.list[:0]
		for i, x := range c.list {
			if i%2 == 1 {
				kept = append(kept, x)
			}
		}
		c.list = kept
	}
	c.list = append(c.list, queryCandidate{seqEnd, st})
}

// take returns the newest state whose events (those below seqEnd) are all
// handled when every seq below handled is, and forgets the older ones.
func (c *queryCandidates) take(handled uint64) (queryCandidate, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := -1
	for i, x := range c.list {
		if x.seqEnd <= handled {
			k = i
		}
	}
	if k < 0 {
		return queryCandidate{}, false
	}
	x := c.list[k]
	c.list = append(c.list[:0], c.list[k+1:]...)
	return x, true
}

// queryStatus is the query method's health and metrics.
type queryStatus struct {
	connected atomic.Bool
	reset     atomic.Value // string: the reset error, "" for none
	standby   atomic.Bool
	lagMillis atomic.Int64 // -1 unknown
	polls     atomic.Uint64
	failures  atomic.Uint64
	rows      atomic.Uint64
	window    atomic.Int64
	horizons  atomic.Int64
	pollNanos atomic.Int64
}

var (
	descQueryPolls    = prometheus.NewDesc("pgsignal_query_polls_total", "Polls of the query method.", nil, nil)
	descQueryFailures = prometheus.NewDesc("pgsignal_query_poll_failures_total", "Polls of the query method that failed (retried with backoff).", nil, nil)
	descQueryRows     = prometheus.NewDesc("pgsignal_query_rows_total", "Rows the query method read and handed on (each once).", nil, nil)
	descQueryUp       = prometheus.NewDesc("pgsignal_query_connected", "1 while the query method's last poll succeeded.", nil, nil)
	descQueryLag      = prometheus.NewDesc("pgsignal_query_replay_lag_seconds", "On a hot standby: now minus the commit time of the last replayed transaction (absent on a primary).", nil, nil)
	descQueryWindow   = prometheus.NewDesc("pgsignal_query_window_values", "Cursor values seen above the final watermarks (rows of transactions that may still commit late are read again among them).", nil, nil)
	descQueryHorizons = prometheus.NewDesc("pgsignal_query_pending_horizons", "Polls whose rows wait for the transactions open at the time to end before they are final.", nil, nil)
	descQueryPollTime = prometheus.NewDesc("pgsignal_query_poll_duration_seconds", "Duration of the last poll.", nil, nil)
	descQueryReset    = prometheus.NewDesc("pgsignal_query_cursor_reset", "1 when a table's cursor went back below the final watermark (the database went back to an earlier point).", nil, nil)
)

func (q *queryStatus) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueryPolls, descQueryFailures, descQueryRows, descQueryUp, descQueryLag,
		descQueryWindow, descQueryHorizons, descQueryPollTime, descQueryReset} {
		ch <- d
	}
}

func (q *queryStatus) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	counter(descQueryPolls, q.polls.Load())
	counter(descQueryFailures, q.failures.Load())
	counter(descQueryRows, q.rows.Load())
	gauge(descQueryUp, b2f(q.connected.Load()))
	if q.standby.Load() && q.lagMillis.Load() >= 0 {
		gauge(descQueryLag, float64(q.lagMillis.Load())/1000)
	}
	gauge(descQueryWindow, float64(q.window.Load()))
	gauge(descQueryHorizons, float64(q.horizons.Load()))
	gauge(descQueryPollTime, float64(q.pollNanos.Load())/1e9)
	r, _ := q.reset.Load().(string)
	gauge(descQueryReset, b2f(r != ""))
}

// ready reports whether the last poll succeeded.
func (q *queryStatus) ready() (bool, string) {
	if r, _ := q.reset.Load().(string); r != "" {
		return false, r
	}
	if !q.connected.Load() {
		if q.polls.Load() == 0 && q.failures.Load() == 0 {
			return false, "not polling yet"
		}
		return false, "polling the database fails (retrying)"
	}
	return true, ""
}

// queryConfig returns the poller's configuration.
func queryConfig(cfg *config.Config, systemID string) query.Config {
	qc := query.Config{SystemID: systemID, Batch: max(cfg.Sink.BatchSize*4, query.DefaultBatch),
		Guard: max(query.DefaultGuard, cfg.Source.PollInterval)}
	for _, t := range cfg.Tables {
		qc.Tables = append(qc.Tables, query.Table{Table: replication.TableRef{Schema: t.Schema, Name: t.Name},
			Cursor: t.Cursor, Where: t.Where})
	}
	return qc
}

// runQuery is Run for source.method query: it polls each table by its
// cursor (replication/query) instead of streaming a slot. It creates no
// slot and no publication and needs no REPLICATION; full mode keeps the
// positions in <schema>.query_positions, read-only mode in the state file.
func (a *App) runQuery(ctx context.Context) (sum Summary, err error) {
	cfg := a.opts.Config
	log := a.log
	full := cfg.Source.Mode != config.ModeReadOnly
	runCtx := ctx
	ctx, started, cancelStartup := a.startup(runCtx)
	defer cancelStartup()
	sctx := ctx
	defer func() {
		if sctx != nil {
			err = a.startupStopped(sctx, err)
		}
	}()

	for _, t := range cfg.Tables {
		if t.Backfill != nil {
			return sum, fmt.Errorf("table %s: a backfill is not available with source.method: query, which starts from the current rows; backfill once with source.method: logical", t.QualifiedName())
		}
	}
	mp, err := mapper.New(Rules(cfg))
	if err != nil {
		return sum, fmt.Errorf("mapping: %w", err)
	}
	mp.OnPlan = func(table, problem string) { a.obs.health.planned(log, table, problem) }
	src := replication.Source{DSN: cfg.Source.DSN, Dial: a.opts.Dial, ReceiveTimeout: cfg.Source.ReceiveTimeout}
	pool, err := replication.NewPool(ctx, src, int32(cfg.Sink.Concurrency)+4)
	if err != nil {
		return sum, err
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return sum, fmt.Errorf("connect to source.dsn: %w", replication.ExplainConnectError(err))
	}
	if err := checkMappedColumns(ctx, pool, cfg); err != nil {
		return sum, err
	}
	warnEncoding(ctx, pool, log)
	batchMapper, tpool, err := newTransforms(ctx, cfg, src)
	if err != nil {
		return sum, err
	}
	if tpool != nil {
		defer tpool.Close()
	}
	var systemID string
	var standby bool
	qctx, cancel := context.WithTimeout(ctx, query.DefaultTimeout)
	err = pool.QueryRow(qctx, `SELECT system_identifier::text, pg_is_in_recovery() FROM pg_control_system()`).Scan(&systemID, &standby)
	cancel()
	if err != nil {
		return sum, fmt.Errorf("read the database's system identifier (pg_control_system()): %w", err)
	}
	var qs queryStore
	var dl sink.DeadLetterStore
	if full && standby {
		return sum, errors.New("source.dsn is a hot standby, which cannot be written, and source.mode is full, which keeps the position in the bookkeeping schema: set source.mode: read-only (the position goes to source.state_file), or point source.dsn at the primary")
	}
	if full {
		if err := store.EnsureSchema(ctx, pool, cfg.Source.Schema); err != nil {
			return sum, err
		}
		if err := store.EnsureQueryPositions(ctx, pool, cfg.Source.Schema); err != nil {
			return sum, err
		}
		qs = &tableQueryStore{pool: pool, schema: cfg.Source.Schema, name: cfg.Source.Slot}
		dl = &sink.TableDeadLetters{Pool: pool, Schema: cfg.Source.Schema, Slot: cfg.Source.Slot}
	} else {
		sf, err := statefile.Open(cfg.Source.StateFile)
		if err != nil {
			return sum, err
		}
		qs = &fileQueryStore{f: sf, systemID: systemID}
		fdl := &sink.FileDeadLetters{Path: cfg.Sink.DeadLetterFile}
		defer fdl.Close()
		dl = fdl
	}
	qctx, cancel = context.WithTimeout(ctx, query.DefaultTimeout)
	state, err := qs.Load(qctx)
	cancel()
	if err != nil {
		return sum, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return sum, fmt.Errorf("connect to source.dsn: %w", replication.ExplainConnectError(err))
	}
	poller, err := query.Open(ctx, conn.Conn(), queryConfig(cfg, systemID), state)
	conn.Release()
	if err != nil {
		return sum, err
	}
	for _, w := range poller.Warnings() {
		log.Warn(w)
	}
	log.Info("polling the tables by their cursor (source.method: query): no slot, no publication",
		zap.Strings("tables", queryTableNames(cfg)), zap.Duration("poll_interval", cfg.Source.PollInterval),
		zap.Bool("standby", standby), zap.Int("known_positions", len(state)))
	runID := a.startRun(ctx, pool, full)
	defer func() { a.finishRun(ctx, pool, runID, sum, startFailure(err)) }()
	started()
	sctx, ctx = nil, runCtx

	tracker := checkpoint.NewTracker(cdc.Position{}, 0)
	client := sink.NewClient(sink.ClientConfig{BaseURL: cfg.OneSignal.URL, AppID: cfg.OneSignal.AppID,
		APIKey: cfg.OneSignal.APIKey, Timeout: cfg.OneSignal.Timeout})
	sk := sink.New(sink.Config{
		BatchSize: cfg.Sink.BatchSize, Linger: cfg.Sink.Linger, Concurrency: cfg.Sink.Concurrency,
		MaxPendingEvents: cfg.Sink.MaxPendingEvents, MaxPendingBytes: cfg.Sink.MaxPendingBytes,
		MaxBackoff: cfg.Sink.MaxBackoff, UnknownUser: cfg.Sink.UnknownUser, Logger: log.Named("sink"),
		OnDelivered: a.opts.OnDelivered, OnDeadLetter: a.opts.OnDeadLetter, Metrics: a.obs,
	}, client, dl, tracker.Done)
	status := &queryStatus{}
	status.lagMillis.Store(-1)
	a.mu.Lock()
	a.sink = sk
	a.mu.Unlock()
	a.obs.attachQuery(sk, tracker, status)
	a.obs.tables(queryTableNames(cfg))

	hard, cancelHard := context.WithCancelCause(ctx)
	defer cancelHard(nil)
	sinkCtx, cancelSink := context.WithCancel(hard)
	defer cancelSink()
	sk.Start(sinkCtx)
	cands := &queryCandidates{}
	saveCtx, cancelSave := context.WithCancel(hard)
	saveDone := make(chan struct{})
	var saved atomic.Uint64 // seqEnd of the last stored state
	go func() {
		defer close(saveDone)
		a.saveQueryPositions(saveCtx, tracker, cands, qs, &saved)
	}()
	watchCtx, cancelWatch := context.WithCancel(hard)
	defer cancelWatch()
	go a.obs.watch(watchCtx, nil, "", a.opts.StallTimeout, log)
	go a.keepRunCurrent(watchCtx, pool, runID, sk, tracker)

	pollErr := make(chan error, 1)
	go func() {
		pollErr <- a.pollQuery(hard, poller, pool, mp, batchMapper, sk, tracker, cands, status)
	}()
	if a.opts.OnStreaming != nil {
		a.opts.OnStreaming()
	}
	stopReason := "stopped"
	var runErr error
	sinkFailed := func(err error) error {
		cancelHard(err)
		<-pollErr
		return err
	}
	select {
	case runErr = <-pollErr:
	case err := <-sk.Err():
		runErr = sinkFailed(err)
	case <-a.stopCh:
		log.Info("stopping: draining in-flight events", zap.Duration("timeout", cfg.ShutdownTimeout))
		timer := time.AfterFunc(a.shutdownLeft(), func() { cancelHard(errors.New("shutdown timeout")) })
		select {
		case runErr = <-pollErr:
		case err := <-sk.Err():
			runErr = sinkFailed(err)
		}
		timer.Stop()
		if runErr != nil && context.Cause(hard) != nil && ctx.Err() == nil && !errors.Is(context.Cause(hard), sink.ErrUnauthorized) {
			log.Warn("shutdown timeout passed before every event was delivered; the rest is sent again on the next start")
			stopReason = "shutdown timeout"
			runErr = nil
		}
	}
	if err := a.obs.health.err(); err != nil && runErr == nil {
		runErr = err
	}
	cancelSink()
	sk.Wait()
	cancelSave()
	<-saveDone
	if runErr != nil && errors.Is(runErr, context.Canceled) && ctx.Err() != nil {
		runErr = nil
		stopReason = "interrupted"
	}
	if runErr != nil {
		stopReason = runErr.Error()
	}
	// The last state whose events are all handled.
	_, _, handled := tracker.Watermark()
	if c, ok := cands.take(handled); ok {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		if err := qs.Save(sctx, c.state); err != nil {
			log.Warn("final query positions not saved; the events since the last save are sent again on the next start (with the same keys)", zap.Error(err))
		}
		cancel()
	}
	pos, _ := tracker.Checkpoint()
	st := sk.Stats()
	sum = Summary{
		Received: status.rows.Load(), Delivered: st.Delivered, DeadLettered: st.DeadLettered, Dropped: st.Dropped,
		Retries: st.Retries, Requests: st.Requests,
		LatencyP50: sk.Latency.Quantile(0.5), LatencyP99: sk.Latency.Quantile(0.99),
		Checkpoint: pos,
	}
	a.finishRun(ctx, pool, runID, sum, stopReason)
	log.Info("stopped", zap.Uint64("delivered", sum.Delivered), zap.Uint64("dead_lettered", sum.DeadLettered))
	return sum, runErr
}

// saveQueryPositions stores, every queryPositionSave, the newest poller
// state whose events are all handled, until ctx ends; a failed save is
// retried at the next tick.
func (a *App) saveQueryPositions(ctx context.Context, tracker *checkpoint.Tracker, cands *queryCandidates, qs queryStore, saved *atomic.Uint64) {
	tick := time.NewTicker(queryPositionSave)
	defer tick.Stop()
	failing := false
	var pending *queryCandidate
	for {
		select {
		case <-ctx.Done():
			if pending != nil {
				cands.mu.Lock()
				cands.list = append([]queryCandidate{*pending}, cands.list...)
				cands.mu.Unlock()
			}
			return
		case <-tick.C:
		}
		_, _, handled := tracker.Watermark()
		if c, ok := cands.take(handled); ok {
			pending = &c
		}
		if pending == nil {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := qs.Save(sctx, pending.state)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				continue
			}
			if !failing {
				a.log.Warn("saving the query positions failed; retrying", zap.Error(err))
			}
			failing = true
			continue
		}
		if failing {
			a.log.Info("query positions saved again")
		}
		failing = false
		saved.Store(pending.seqEnd)
		tracker.MarkDurable(pending.seqEnd)
		pending = nil
	}
}

// queryPositionSave is how often the query positions are stored while
// events are handled.
const queryPositionSave = 50 * time.Millisecond

// pollQuery polls until ctx ends, a permanent error, or Stop (then it
// waits until every event read is handled). Each poll's rows are mapped,
// handed to the sink (waiting while it is full) and the poller's state
// recorded for saving once they are handled.
func (a *App) pollQuery(ctx context.Context, poller *query.Poller, pool *pgxpool.Pool, mp *mapper.Mapper, batch replication.BatchMapper,
	sk *sink.Sink, tracker *checkpoint.Tracker, cands *queryCandidates, status *queryStatus) error {
	cfg := a.opts.Config
	log := a.log.Named("query")
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 500 * time.Millisecond
	bo.MaxInterval = 30 * time.Second
	bo.MaxElapsedTime = 0
	var seqEnd uint64 = 1 // every seq below it was assigned
	var lastState query.State
	var lastSeqEnd uint64
	failing := false
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-a.stopCh:
		case <-ctx.Done():
		}
		return false
	}
	for {
		if a.stopping() {
			return a.waitHandled(ctx, tracker)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// At most max_pending_events are sent again after a crash.
		for tracker.Outstanding() >= cfg.Sink.MaxPendingEvents {
			select {
			case <-tracker.Room():
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		readAt := time.Now()
		res, err := a.pollOnce(ctx, poller, pool)
		status.pollNanos.Store(int64(time.Since(readAt)))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var reset *query.CursorResetError
			if errors.As(err, &reset) {
				status.reset.Store(err.Error())
				status.connected.Store(false)
				log.Error("a table's cursor went back: stopping", zap.String("table", reset.Table),
					zap.Int64("max", reset.Max), zap.Int64("final", reset.Final), zap.Error(err))
				return err
			}
			if errors.Is(err, replication.ErrPermanent) {
				return err
			}
			status.failures.Add(1)
			status.connected.Store(false)
			d := bo.NextBackOff()
			if !failing {
				log.Warn("poll failed; retrying with backoff", zap.Error(replication.ExplainConnectError(err)), zap.Duration("next_in", d))
			} else {
				log.Debug("poll failed again", zap.Error(err))
			}
			failing = true
			wait(d) // the loop's top sees a stop
			continue
		}
		if failing {
			log.Info("polling again")
		}
		failing = false
		bo.Reset()
		status.polls.Add(1)
		status.connected.Store(true)
		status.standby.Store(res.Standby)
		status.lagMillis.Store(-1)
		if res.ReplayLag >= 0 {
			status.lagMillis.Store(res.ReplayLag.Milliseconds())
		}
		n, err := a.submitQueryRows(ctx, res.Rows, readAt, mp, batch, sk, tracker, &seqEnd)
		status.rows.Add(uint64(n))
		if err != nil {
			return err
		}
		w, h := poller.Window()
		status.window.Store(w)
		status.horizons.Store(int64(h))
		// An unchanged position (an empty poll) is not written again.
		if st := poller.State(); lastState == nil || seqEnd != lastSeqEnd || !reflect.DeepEqual(st, lastState) {
			cands.add(seqEnd, st)
			lastState, lastSeqEnd = st, seqEnd
		}
		if res.More {
			continue
		}
		wait(cfg.Source.PollInterval)
	}
}

// pollOnce runs one poll on a connection of pool.
func (a *App) pollOnce(ctx context.Context, poller *query.Poller, pool *pgxpool.Pool) (query.Poll, error) {
	actx, cancel := context.WithTimeout(ctx, query.DefaultTimeout)
	conn, err := pool.Acquire(actx)
	cancel()
	if err != nil {
		return query.Poll{}, fmt.Errorf("poll: connect: %w", err)
	}
	defer conn.Release()
	res, err := poller.Poll(ctx, conn.Conn())
	if err != nil && !conn.Conn().PgConn().IsClosed() && ctx.Err() == nil && !errors.Is(err, replication.ErrPermanent) {
		// A connection in an unknown state does not go back to the pool.
		_ = conn.Conn().Close(context.WithoutCancel(ctx))
	}
	return res, err
}

// submitQueryRows maps the rows of a poll (transformed tables in one
// batch, as the backfill does) and hands their events to the sink in
// cursor order per table. It returns the number of rows handed on.
func (a *App) submitQueryRows(ctx context.Context, rows []query.Row, readAt time.Time, mp *mapper.Mapper, batch replication.BatchMapper,
	sk *sink.Sink, tracker *checkpoint.Tracker, seqEnd *uint64) (int, error) {
	var chs []*replication.Change
	for _, r := range rows {
		if r.Change != nil {
			r.Change.CommitTime = readAt
			chs = append(chs, r.Change)
		}
	}
	if len(chs) == 0 {
		return 0, nil
	}
	events, err := a.mapRows(ctx, chs, mp, batch)
	if err != nil {
		return 0, err
	}
	for i, evs := range events {
		seq := tracker.Assign(chs[i].Pos)
		*seqEnd = seq + 1
		tracker.Attach(seq, evs)
		for _, ev := range evs {
			// Latency is measured from the poll that read the row: its
			// commit time is not known.
			ev.CommitTime = readAt
			if err := a.submitBackfill(ctx, sk, ev); err != nil {
				return i, err
			}
		}
	}
	return len(chs), nil
}

// mapRows maps rows read by SQL (a backfill's, the query method's): rows
// of transformed tables in one batch (retried while the failure is not
// the rows'), the others by the mapper's rules. out[i] holds the events
// of chs[i].
func (a *App) mapRows(ctx context.Context, chs []*replication.Change, mp *mapper.Mapper, batch replication.BatchMapper) ([][]*cdc.Event, error) {
	out := make([][]*cdc.Event, len(chs))
	var batched []*replication.Change
	var idx []int
	for i, ch := range chs {
		if batch != nil && batch.Batched(ch.Rel, false) {
			batched = append(batched, ch)
			idx = append(idx, i)
			continue
		}
		if ev := mp.Map(ch); ev != nil {
			out[i] = []*cdc.Event{ev}
		}
	}
	if len(batched) == 0 {
		return out, nil
	}
	res, err := replication.MapBatchRetrying(ctx, batch, batched, a.log.Named("query"), nil, 0, nil)
	if err != nil {
		return nil, err
	}
	for k, i := range idx {
		out[i] = res[k]
	}
	return out, nil
}

func queryTableNames(cfg *config.Config) []string {
	names := make([]string, len(cfg.Tables))
	for i, t := range cfg.Tables {
		names[i] = t.QualifiedName()
	}
	return names
}
