package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/checkpoint"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/store"
	"github.com/pgsignal/pgsignal/mapper"
	"github.com/pgsignal/pgsignal/replication"
	"github.com/pgsignal/pgsignal/sink"
)

// Options configure an App.
type Options struct {
	Config *config.Config
	Logger *zap.Logger
	// OnDelivered and OnDeadLetter are optional hooks (the demo prints them).
	OnDelivered  func(ev *cdc.Event, at time.Time)
	OnDeadLetter func(l cdc.DeadLetter)
	// OnStreaming, when set, is called once streaming has started.
	OnStreaming func()
	// Dial, when set, replaces the network dialer of every database
	// connection (an SSH tunnel).
	Dial pgconn.DialFunc
	// OnSlotLost is config.SlotLostError (default) or SlotLostRecreate.
	OnSlotLost string
	// StallTimeout is how long pending events may make no progress before
	// pgsignal reports itself stalled (/readyz fails, an error is logged).
	// Default 2 minutes.
	StallTimeout time.Duration
	// ForceBackfill makes a run whose tables have a backfill fail when the
	// slot exists already instead of skipping the backfill (pgsignal
	// backfill).
	ForceBackfill bool
	// RelationCheck is how often the catalog is read for a configured
	// table that was replaced, renamed or taken out of the publication
	// (default replication.RelationCheckInterval).
	RelationCheck time.Duration
	// OnBackfillProgress, when set, is told the rows a backfill has read
	// and handed to the sink, of its total (a progress line).
	OnBackfillProgress func(done, total int64)
}

// Summary reports what a run did.
type Summary struct {
	Received     uint64
	Delivered    uint64
	DeadLettered uint64
	Dropped      uint64
	Retries      uint64
	Requests     uint64
	LatencyP50   time.Duration
	LatencyP99   time.Duration
	Checkpoint   cdc.Position
	Confirmed    cdc.LSN
}

// App is one pgsignal run.
type App struct {
	opts     Options
	log      *zap.Logger
	stopOnce sync.Once
	stopCh   chan struct{}

	// runFinished is set once the run's row has its end recorded.
	runFinished atomic.Bool

	mu     sync.Mutex
	stopAt time.Time // when Stop was called
	stream *replication.Stream
	sink   *sink.Sink
	obs    *monitor

	// slotCreated is set by ensureSlot when this start created the slot.
	slotCreated bool
}

// New returns an App for a validated config.
func New(opts Options) *App {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.StallTimeout <= 0 && opts.Config != nil {
		opts.StallTimeout = opts.Config.StallTimeout
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = 2 * time.Minute
	}
	if opts.OnSlotLost == "" && opts.Config != nil {
		opts.OnSlotLost = opts.Config.Source.OnSlotLost
	}
	return &App{opts: opts, log: opts.Logger, stopCh: make(chan struct{}), obs: newMonitor()}
}

// Handler serves /metrics (Prometheus), /healthz (the process is alive) and
// /readyz (streaming, and the sink is not stalled).
func (a *App) Handler() http.Handler { return a.obs.handler() }

// Stop asks a running App to stop gracefully: stop reading, deliver what is
// in flight for up to shutdown_timeout, write the checkpoint. Safe to call
// more than once and before Run.
func (a *App) Stop() {
	a.stopOnce.Do(func() {
		a.mu.Lock()
		a.stopAt = time.Now()
		a.mu.Unlock()
		close(a.stopCh)
	})
}

// BackendPID returns the walsender's pid of the current replication
// connection (0 before streaming).
func (a *App) BackendPID() uint32 {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stream == nil {
		return 0
	}
	return a.stream.BackendPID()
}

// Rules converts the configured tables to mapper rules.
func Rules(cfg *config.Config) []mapper.Rule {
	rules := make([]mapper.Rule, 0, len(cfg.Tables))
	for _, t := range cfg.Tables {
		if t.Transform != "" {
			continue // mapped by its transform
		}
		rules = append(rules, mapper.Rule{
			Schema: t.Schema, Table: t.Name,
			NameColumn: t.EventName, NameValue: t.EventNameValue, NamePrefix: t.NamePrefix,
			ExternalID: t.ExternalID, Timestamp: t.Timestamp,
			Properties: t.Properties, PropertiesList: t.PropertiesIsList,
			TimestampZone: t.TimestampZone, TimestampUnit: t.TimestampUnit,
			PropertiesColumns: t.PropertiesColumns, Exclude: t.Exclude,
			Updates: t.EmitsUpdates(),
		})
	}
	return rules
}

// TableRefs lists the configured tables as the publication has them: with
// their row filters and whether their updates are published.
func TableRefs(cfg *config.Config) []replication.PublishedTable {
	refs := make([]replication.PublishedTable, len(cfg.Tables))
	for i, t := range cfg.Tables {
		refs[i] = replication.PublishedTable{TableRef: replication.TableRef{Schema: t.Schema, Name: t.Name},
			Where: t.Where, Updates: t.EmitsUpdates()}
	}
	return refs
}

// Run streams until ctx ends (a hard stop), Stop is called and the pipeline
// drained, or an unrecoverable error occurs. It returns nil after a graceful
// stop.
func (a *App) Run(ctx context.Context) (sum Summary, err error) {
	cfg := a.opts.Config
	if cfg.Source.Method == config.MethodQuery {
		return a.runQuery(ctx) // no slot, no publication (query.go)
	}
	log := a.log
	full := cfg.Source.Mode != config.ModeReadOnly
	// Start-up runs under sctx, which a Stop ends after shutdown_timeout.
	runCtx := ctx
	ctx, started, cancelStartup := a.startup(runCtx)
	defer cancelStartup()
	sctx := ctx
	defer func() {
		if sctx != nil {
			err = a.startupStopped(sctx, err)
		}
	}()

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
	// One replication connection serves start-up: IDENTIFY_SYSTEM and the
	// slot. The stream opens its own.
	rconn, err := replication.ConnectReplication(ctx, src)
	if err != nil {
		return sum, err
	}
	defer rconn.Close(context.Background())
	sys, err := pglogrepl.IdentifySystem(ctx, rconn)
	if err != nil {
		return sum, fmt.Errorf("identify system: %w", err)
	}
	tables := TableRefs(cfg)
	var ckStore checkpoint.Store
	var dl sink.DeadLetterStore
	if full {
		if err := store.EnsureSchema(ctx, pool, cfg.Source.Schema); err != nil {
			return sum, err
		}
		ckStore = &store.TableStore{Pool: pool, Schema: cfg.Source.Schema, Slot: cfg.Source.Slot}
		dl = &sink.TableDeadLetters{Pool: pool, Schema: cfg.Source.Schema, Slot: cfg.Source.Slot}
	} else {
		fdl := &sink.FileDeadLetters{Path: cfg.Sink.DeadLetterFile}
		defer fdl.Close()
		dl = fdl
	}
	rw := a.relationWatch(tables, full)
	if err := rw.Prepare(ctx, pool); err != nil {
		return sum, err
	}
	pub, err := replication.SyncPublication(ctx, pool, cfg.Source.Publication, tables, full)
	if err != nil {
		return sum, err
	}
	if err := rw.Bind(ctx, pool); err != nil {
		return sum, err
	}
	warnUpdatesIntoFilter(log, tables)
	if pub.Created {
		log.Info("created publication", zap.String("publication", cfg.Source.Publication))
	}
	if len(pub.Altered) > 0 {
		log.Info("altered publication", zap.String("publication", cfg.Source.Publication), zap.Strings("sql", pub.Altered))
	}
	var resume cdc.Position
	var confirmed cdc.LSN
	if ckStore != nil {
		if resume, confirmed, err = ckStore.Load(ctx); err != nil {
			return sum, err
		}
	}
	// Recorded on this version's first run before a slot is created: the
	// commits (and the rows an interrupted backfill redoes, at positions
	// below its slot's consistent point) an earlier version may have sent
	// keep their keys.
	legacy, err := legacyKeys(ctx, pool, cfg, full, sys.SystemID, uint32(sys.Timeline))
	if err != nil {
		return sum, err
	}
	if tb, ok := batchMapper.(*transforms); ok {
		tb.t.KeepLegacyKeys(legacy.Before)
	}
	// A backfill creates the slot itself, with an exported snapshot, before
	// anything else uses rconn.
	bf, err := a.prepareBackfill(ctx, pool, rconn, sys.SystemID, confirmed)
	if err != nil {
		return sum, err
	}
	if bf != nil {
		resume, confirmed = cdc.Position{}, 0 // a new slot
		// Closed by runBackfill, or here when the run ends before it.
		defer bf.close(context.WithoutCancel(ctx))
	}
	runID := a.startRun(ctx, pool, full)
	// A start that fails from here on is recorded as failed, not left
	// "running"; the normal end records itself first.
	defer func() { a.finishRun(ctx, pool, runID, sum, startFailure(err)) }()
	// A slot that is missing although a checkpoint exists, or that is
	// invalidated, was lost: events are gone, and that must not pass
	// silently.
	loss, err := replication.CheckSlotLost(ctx, pool, cfg.Source.Slot, confirmed, confirmed > 0)
	if err != nil {
		return sum, err
	}
	if loss != nil {
		if full {
			loss.Schema = cfg.Source.Schema // as StoredSlotLoss says it to check and status
		}
		if a.opts.OnSlotLost != config.SlotLostRecreate {
			a.finishRun(ctx, pool, runID, sum, "slot lost")
			return sum, *loss
		}
		if err := replication.RecreateSlot(ctx, pool, rconn, loss, log); err != nil {
			return sum, err
		}
		a.recordGap(ctx, pool, runID, *loss)
	}
	if err := a.ensureSlot(ctx, rconn, pool); err != nil {
		return sum, err
	}
	overlap, err := a.backfillOverlap(ctx, pool)
	if err != nil {
		return sum, err
	}
	// The delivery ledger: what OneSignal accepted above the watermark
	// before a restart is not sent again.
	var tracker *checkpoint.Tracker
	var slotConfirmed atomic.Uint64 // read-only mode: the slot's confirmed_flush_lsn (watchSlotConfirmed)
	ledger, err := a.openLedger(ctx, ledgerSetup{full: full, systemID: sys.SystemID, fresh: bf != nil || loss != nil || a.slotCreated,
		runID: runID, pool: pool, durable: func() (cdc.Position, cdc.LSN) {
			if !full {
				return cdc.Position{}, cdc.LSN(slotConfirmed.Load())
			}
			if tracker == nil {
				return resume, 0 // at start: the stored watermark
			}
			return tracker.Saved(), 0
		}})
	if err != nil {
		return sum, err
	}
	rconn.Close(context.Background())
	// Start-up is over: from here a Stop drains the stream.
	started()
	sctx, ctx = nil, runCtx
	tracker = checkpoint.NewTracker(resume, confirmed)
	client := sink.NewClient(sink.ClientConfig{BaseURL: cfg.OneSignal.URL, AppID: cfg.OneSignal.AppID,
		APIKey: cfg.OneSignal.APIKey, Timeout: cfg.OneSignal.Timeout})
	sk := sink.New(sink.Config{
		BatchSize: cfg.Sink.BatchSize, Linger: cfg.Sink.Linger, Concurrency: cfg.Sink.Concurrency,
		MaxPendingEvents: cfg.Sink.MaxPendingEvents, MaxPendingBytes: cfg.Sink.MaxPendingBytes,
		MaxBackoff: cfg.Sink.MaxBackoff, UnknownUser: cfg.Sink.UnknownUser, Logger: log.Named("sink"),
		OnDelivered: a.opts.OnDelivered, OnDeadLetter: a.opts.OnDeadLetter, Metrics: a.obs,
		MaxEventAge: cfg.Sink.MaxEventAge, StaleDrop: cfg.Sink.Stale == config.StaleDrop,
		OnHandled: ledger.Record,
	}, client, dl, tracker.Done)
	stream := replication.NewStream(replication.Config{
		Source: src, Slot: cfg.Source.Slot, Publication: cfg.Source.Publication, Logger: log.Named("replication"),
		MaxOutstanding: cfg.Sink.MaxPendingEvents, OnSlotLost: a.opts.OnSlotLost,
		OnGap: func(l replication.SlotLoss) { a.recordGap(ctx, pool, runID, l) },
		Batch: batchMapper, BatchRows: cfg.Sink.BatchSize, Overlap: overlap, Relations: rw,
		LegacyKeys: legacy, Ledger: ledger,
	}, pool, sys.SystemID, mp, sk, tracker, resume)
	a.mu.Lock()
	a.stream, a.sink = stream, sk
	a.mu.Unlock()
	a.obs.attach(stream, sk, tracker)
	names := make([]string, len(cfg.Tables))
	for i, t := range cfg.Tables {
		names[i] = t.QualifiedName()
	}
	a.obs.tables(names)

	// hard ends everything: the caller's ctx, a fatal sink error, or the
	// shutdown timeout after Stop.
	hard, cancelHard := context.WithCancelCause(ctx)
	defer cancelHard(nil)
	sinkCtx, cancelSink := context.WithCancel(hard)
	defer cancelSink()
	sk.Start(sinkCtx)
	ckCtx, cancelCk := context.WithCancel(hard)
	ckDone := make(chan struct{})
	go func() {
		defer close(ckDone)
		checkpoint.RunCheckpointer(ckCtx, tracker, ckStore, stream, log.Named("checkpoint"))
	}()
	ledgerDone := make(chan struct{})
	go func() {
		defer close(ledgerDone)
		if !full {
			go a.watchSlotConfirmed(ckCtx, pool, &slotConfirmed)
		}
		ledger.Run(ckCtx)
	}()

	watchCtx, cancelWatch := context.WithCancel(hard)
	defer cancelWatch()
	go a.obs.watch(watchCtx, pool, cfg.Source.Slot, a.opts.StallTimeout, log)
	go a.keepRunCurrent(watchCtx, pool, runID, sk, tracker)
	go a.watchRelations(watchCtx, rw, pool)

	streamErr := make(chan error, 1)
	go func() {
		if bf != nil {
			finished, err := a.runBackfill(hard, bf, pool, mp, batchMapper, sk, tracker)
			if err != nil || !finished {
				streamErr <- err
				return
			}
		}
		streamErr <- stream.Run(hard)
	}()
	if a.opts.OnStreaming != nil {
		a.opts.OnStreaming()
	}
	stopReason, runErr := a.awaitEnd(ctx, hard, cancelHard, streamErr, sk, stream)
	cancelSink()
	sk.Wait()
	cancelCk()
	<-ckDone
	<-ledgerDone
	if runErr != nil && errors.Is(runErr, context.Canceled) && ctx.Err() != nil {
		runErr = nil // hard stop by the caller: not an error of the run
		stopReason = "interrupted"
	}
	if runErr != nil {
		stopReason = runErr.Error()
	}

	pos, conf := tracker.Checkpoint()
	if ckStore != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := ckStore.Save(sctx, pos, conf); err != nil {
			log.Warn("final checkpoint not saved", zap.Error(err))
		} else {
			tracker.MarkSaved(pos)
		}
		cancel()
	}
	a.closeLedger(ctx, ledger, full, pool, runID, &slotConfirmed)
	st := sk.Stats()
	sum = Summary{
		Received: stream.Stats().Received, Delivered: st.Delivered, DeadLettered: st.DeadLettered, Dropped: st.Dropped,
		Retries: st.Retries, Requests: st.Requests,
		LatencyP50: sk.Latency.Quantile(0.5), LatencyP99: sk.Latency.Quantile(0.99),
		Checkpoint: pos, Confirmed: stream.Flushed(),
	}
	a.finishRun(ctx, pool, runID, sum, stopReason)
	log.Info("stopped", zap.Uint64("delivered", sum.Delivered), zap.Uint64("dead_lettered", sum.DeadLettered),
		zap.Stringer("checkpoint", pos), zap.Stringer("confirmed_lsn", sum.Confirmed))
	return sum, runErr
}

// awaitEnd waits until the run ends: the stream or the backfill returns
// (streamErr), the sink fails, or Stop asks for a drain (bounded by
// shutdown_timeout, then a hard stop through cancelHard). It returns the
// stop reason recorded in the run's row and the run's error.
func (a *App) awaitEnd(ctx, hard context.Context, cancelHard context.CancelCauseFunc, streamErr <-chan error, sk *sink.Sink, stream *replication.Stream) (stopReason string, runErr error) {
	log := a.log
	// sinkFailed stops the stream hard after a sink failure.
	sinkFailed := func(err error) error {
		cancelHard(err)
		<-streamErr
		return err
	}
	stopReason = "stopped"
	select {
	case runErr = <-streamErr:
	case err := <-sk.Err():
		runErr = sinkFailed(err)
	case <-a.stopCh:
		log.Info("stopping: draining in-flight events", zap.Duration("timeout", a.opts.Config.ShutdownTimeout))
		stream.Stop()
		timer := time.AfterFunc(a.shutdownLeft(), func() {
			cancelHard(errors.New("shutdown timeout"))
		})
		select {
		case runErr = <-streamErr:
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
		runErr = err // stopped by watchRelations
	}
	return stopReason, runErr
}

func (a *App) ensureSlot(ctx context.Context, conn *pgconn.PgConn, pool *pgxpool.Pool) error {
	cfg := a.opts.Config
	created, err := replication.EnsureSlot(ctx, pool, conn, cfg.Source.Slot)
	if err != nil {
		return err
	}
	if cfg.Source.Failover {
		changed, err := replication.EnsureFailover(ctx, pool, conn, cfg.Source.Slot)
		if err != nil {
			return err
		}
		if changed {
			a.log.Info("slot is now a failover slot (synchronized to standbys with sync_replication_slots = on)", zap.String("slot", cfg.Source.Slot))
		}
	}
	if created {
		a.slotCreated = true
		a.log.Info("created replication slot", zap.String("slot", cfg.Source.Slot))
	}
	return nil
}
