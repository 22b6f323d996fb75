package replication

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/checkpoint"
	"github.com/pgsignal/pgsignal/internal/config/defaults"
	"github.com/pgsignal/pgsignal/internal/pgcat"
)

// Change is one inserted row.
type Change struct {
	Rel *Relation
	// Values are the column values in PostgreSQL text form, nil for NULL.
	// They alias the receive buffer: valid only during Mapper.Map.
	Values [][]byte
	Pos    cdc.Position
	// CommitTime is the commit timestamp of the transaction.
	CommitTime time.Time
	// IdempotencyKey is the deterministic key of this row's event.
	IdempotencyKey string
}

// Mapper turns a change into an event, or into an event with Reject set when
// the row cannot become one, or returns nil when the table is not mapped.
// It is called from the stream goroutine and must not block.
type Mapper interface {
	Map(ch *Change) *cdc.Event
}

// Sink receives events. TrySubmit never blocks: false means the sink is full
// (backpressure) and the stream offers the same event again after Ready is
// signalled. The sink reports handled events to the Tracker.
type Sink interface {
	TrySubmit(ev *cdc.Event) bool
	Ready() <-chan struct{}
}

// Flusher is a Sink that batches what the stream submits in one go: the
// stream calls Flush before a read of the network when every message
// received so far has been handled and submitted and no transaction is half
// read, so that the sink can send at once what it held back, and a
// transaction's rows (which may take several reads) leave together.
type Flusher interface {
	Flush()
}

// flushHook returns the function the reader calls before each read of the
// network (it runs on the stream's goroutine, inside ReceiveMessage): it
// flushes f unless the stream is inside a transaction, whose rows the sink
// then keeps holding (at most its linger) until the commit has been read.
// Flushing between two reads of one transaction sent its first rows alone
// and the rest a linger later (W3's p95 and p99).
func (s *Stream) flushHook(f Flusher) func() {
	return func() {
		if !s.inTxn {
			f.Flush()
		}
	}
}

// Config configures a Stream.
type Config struct {
	Source      Source
	Slot        string
	Publication string
	// StatusInterval is the period of standby status updates (default 10s).
	StatusInterval time.Duration
	// MaxReconnectBackoff caps the wait between reconnects (default 30s).
	MaxReconnectBackoff time.Duration
	// OnSlotLost is defaults.SlotLostError (the default) or
	// defaults.SlotLostRecreate.
	OnSlotLost string
	// OnGap, when set, is called after a lost slot was recreated.
	OnGap func(SlotLoss)
	// MaxOutstanding bounds the events received but not yet in the durable
	// checkpoint (default 20000): reading stops at the bound, and a crash
	// sends at most this many events again (within a transaction in full
	// mode).
	MaxOutstanding int
	// Relations, when set, keeps a renamed configured table's rows under
	// its configured name (see RelationWatch.Adopt).
	Relations *RelationWatch
	// Batch, when set, maps the rows of some tables in batches (SQL
	// transforms); see BatchMapper.
	Batch BatchMapper
	// BatchRows is the most rows of Batch tables evaluated at once
	// (default 500); BatchLinger is how long a row may wait for others
	// (default 10ms).
	BatchRows   int
	BatchLinger time.Duration
	Logger      *zap.Logger
	// Overlap, when set, skips the inserts a redone backfill already sent
	// (see Overlap).
	Overlap *Overlap
	// LegacyKeys are the commits whose rows keep the keys earlier
	// versions gave them (see cdc.LegacyKeys and store.RecordLegacyKeys).
	LegacyKeys cdc.LegacyKeys
	// Ledger, when set, says which events an earlier run handled above the
	// stored watermark (the delivery ledger): they are not submitted again
	// but reported handled at once.
	Ledger Ledger
}

// Ledger is the delivery ledger as the stream uses it (checkpoint.Ledger).
type Ledger interface {
	// Covers reports whether ev (with its Pos and Timeline set) was handled
	// by an earlier run. It is called from the stream's goroutine.
	Covers(ev *cdc.Event) bool
}

// Stream reads the slot and feeds the pipeline. Run it once.
type Stream struct {
	cfg     Config
	pool    *pgxpool.Pool
	mapper  Mapper
	sink    Sink
	tracker *checkpoint.Tracker
	log     *zap.Logger

	systemID string
	flushed  atomic.Uint64 // durable checkpoint: what the server may be told
	stop     chan struct{}
	stopOnce sync.Once

	// timelines of the current session's server: the timeline that wrote
	// a commit is part of its rows' keys.
	timelines Timelines

	// stream state, owned by the Run goroutine
	rels       map[uint32]*Relation
	vals       [][]byte
	oldVals    [][]byte
	last       cdc.Position // highest position handed on (or resumed from)
	inTxn      bool
	commitLSN  cdc.LSN
	commitTime time.Time
	xid        uint32 // the current transaction's
	ordinal    uint32
	lastStatus time.Time
	sentFlush  cdc.LSN
	statusIvl  time.Duration // status interval in force (below wal_sender_timeout)
	// held is an event assigned a sequence number but not yet accepted by
	// the sink when the connection failed; it is submitted when the server
	// sends its row again.
	held       *cdc.Event
	received   atomic.Uint64 // events received (metrics, tests)
	backendPID atomic.Uint32
	walEnd     atomic.Uint64 // the server's WAL end from the last keepalive or XLogData
	backlog    bool          // reading transactions committed long ago (see noteBacklog)
	connected  atomic.Bool
	reconnects atomic.Uint64
	blocked    atomic.Bool // waiting for room in the sink
	// transformFailing: a batch evaluation failed and is being retried.
	transformFailing atomic.Bool
	// pending are rows waiting for their batch evaluation, and every row
	// after the first of them (so that events keep commit order); ready
	// are events evaluated but not yet submitted. Both survive reconnects.
	pending      []pendingRow
	pendingSince time.Time
	pendingBytes int
	ready        []*cdc.Event
	fanout       int           // events per row of the last evaluated batch (see batchRows)
	rd           *readDeadline // the session's, while one runs
	// recvTimeout is the silence after which the connection is presumed
	// dead (Source.ReceiveTimeout, or derived from wal_sender_timeout).
	recvTimeout time.Duration
	resend      resendCache // relations of resent rows (handleMessage)
}

// NewStream prepares a stream. resume is the position of the last handled
// event (from the Store, or zero): changes at or before it are skipped.
// systemID is the database system identifier (see IdentifySystem).
func NewStream(cfg Config, pool *pgxpool.Pool, systemID string, mapper Mapper, sink Sink, tracker *checkpoint.Tracker, resume cdc.Position) *Stream {
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = 10 * time.Second
	}
	if cfg.MaxOutstanding <= 0 {
		cfg.MaxOutstanding = defaults.MaxPendingEvents
	}
	if cfg.MaxReconnectBackoff <= 0 {
		cfg.MaxReconnectBackoff = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.BatchRows <= 0 {
		cfg.BatchRows = defaults.BatchSize
	}
	if cfg.BatchLinger <= 0 {
		cfg.BatchLinger = 10 * time.Millisecond
	}
	_, confirmed := tracker.Checkpoint()
	s := &Stream{
		cfg: cfg, pool: pool, mapper: mapper, sink: sink, tracker: tracker, log: cfg.Logger,
		systemID: systemID, stop: make(chan struct{}), rels: map[uint32]*Relation{}, last: resume,
	}
	s.flushed.Store(uint64(confirmed))
	s.statusIvl = cfg.StatusInterval
	s.recvTimeout = cfg.Source.ReceiveTimeout
	if s.recvTimeout <= 0 {
		s.recvTimeout = DefaultTCPUserTimeout
	}
	return s
}

// SetFlushed tells the stream that the checkpoint up to lsn is durable, so
// the slot may be confirmed to it.
func (s *Stream) SetFlushed(lsn cdc.LSN) {
	for {
		cur := s.flushed.Load()
		if uint64(lsn) <= cur || s.flushed.CompareAndSwap(cur, uint64(lsn)) {
			return
		}
	}
}

// MaxOutstanding returns the bound on events received but not yet in the
// durable watermark (Config.MaxOutstanding, defaulted).
func (s *Stream) MaxOutstanding() int { return s.cfg.MaxOutstanding }

// Flushed returns the LSN the slot may be confirmed to.
func (s *Stream) Flushed() cdc.LSN { return cdc.LSN(s.flushed.Load()) }

// StreamStats is a snapshot of the stream's state, for metrics and health.
type StreamStats struct {
	Received   uint64
	Reconnects uint64
	Connected  bool
	// Blocked reports that the stream waits for room in the sink.
	Blocked bool
	// ServerWALEnd is the server's WAL end last reported.
	ServerWALEnd cdc.LSN
	// Flushed is the LSN confirmed (or to be confirmed) to the slot.
	Flushed cdc.LSN
	// TransformFailing reports that rows wait for a SQL transform whose
	// evaluation keeps failing (it is retried).
	TransformFailing bool
}

// Stats returns a snapshot of the stream's state. Safe from any goroutine.
func (s *Stream) Stats() StreamStats {
	return StreamStats{
		Received: s.received.Load(), Reconnects: s.reconnects.Load(), Connected: s.connected.Load(),
		Blocked: s.blocked.Load(), ServerWALEnd: cdc.LSN(s.walEnd.Load()), Flushed: s.Flushed(),
		TransformFailing: s.transformFailing.Load(),
	}
}

// BackendPID returns the walsender's process id of the current connection.
func (s *Stream) BackendPID() uint32 { return s.backendPID.Load() }

// Stop asks Run to stop reading and drain: Run returns nil once every
// received event is handled and confirmed, or when its context ends.
func (s *Stream) Stop() { s.stopOnce.Do(func() { close(s.stop) }) }

func (s *Stream) stopping() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// Run streams until ctx ends (hard stop: returns ctx's error), Stop is
// called and the pipeline is drained (returns nil), or a permanent error
// occurs. Connection failures are retried with exponential backoff.
func (s *Stream) Run(ctx context.Context) error {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 500 * time.Millisecond
	bo.MaxInterval = s.cfg.MaxReconnectBackoff
	bo.MaxElapsedTime = 0
	waiting := false
	for {
		started := time.Now()
		err := s.session(ctx)
		s.tracker.Abort()
		s.inTxn = false
		if errors.Is(err, errDrained) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(err, ErrPermanent) {
			return err
		}
		if s.stopping() {
			// Stopped while disconnected: the checkpoint store has what was
			// handled; wait for the rest without a connection.
			if err := s.waitDrained(ctx, nil); !errors.Is(err, errDrained) {
				return err
			}
			return nil
		}
		if time.Since(started) > time.Minute {
			bo.Reset()
		}
		wait := bo.NextBackOff()
		if errors.Is(err, errSlotBusy) {
			// Standby instance (high availability): poll every second so
			// that a takeover happens within seconds of the holder's death.
			wait = time.Second
			if !waiting {
				s.log.Info("the slot is held by another reader (another pgsignal?); waiting to take over", zap.String("slot", s.cfg.Slot))
			}
			waiting = true
		} else {
			waiting = false
			s.reconnects.Add(1)
			s.log.Warn("replication connection lost; reconnecting", zap.Error(err), zap.Float64("retry_in_seconds", wait.Seconds()))
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		case <-s.stop:
		}
	}
}

var errDrained = errors.New("drained")

// errSlotBusy: another process reads the slot.
var errSlotBusy = errors.New("the slot is active for another process")

func (s *Stream) session(ctx context.Context) error {
	src := s.cfg.Source
	src.readAhead = true
	if f, ok := s.sink.(Flusher); ok {
		src.beforeRead = s.flushHook(f)
	}
	conn, err := ConnectReplication(ctx, src)
	if err != nil {
		return err
	}
	defer closeConn(conn)
	// A server that accepted the connection and then fell silent must not
	// hold the set-up: it has the receive timeout to answer.
	setupCtx, cancelSetup := context.WithTimeout(ctx, s.recvTimeout)
	defer cancelSetup()
	sys, err := pglogrepl.IdentifySystem(setupCtx, conn)
	if err != nil {
		return fmt.Errorf("identify system: %w", err)
	}
	if s.systemID != "" && sys.SystemID != s.systemID {
		return permanent("the database system changed (system identifier %s, expected %s): the slot's positions do not apply to it", sys.SystemID, s.systemID)
	}
	if s.timelines, err = ReadTimelines(setupCtx, conn, sys.Timeline); err != nil {
		return err
	}
	err = pglogrepl.StartReplication(setupCtx, conn, s.cfg.Slot, 0, pglogrepl.StartReplicationOptions{
		PluginArgs: s.pluginArgs(conn),
	})
	if err != nil {
		if lostErr := s.handleStartError(ctx, err); lostErr != nil {
			return lostErr
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == pgcat.ObjectInUse {
			// Another reader holds the slot (a second instance): wait and retry.
			return fmt.Errorf("%w: %w", errSlotBusy, err)
		}
		if errors.As(err, &pgErr) && (pgErr.Code == pgcat.UndefinedObject || pgErr.Code == pgcat.InsufficientPrivilege || pgErr.Code[:2] == pgcat.ClassInvalidAuthorization) {
			return permanent("start replication on slot %q: %w", s.cfg.Slot, err)
		}
		return fmt.Errorf("start replication on slot %q: %w", s.cfg.Slot, err)
	}
	s.backendPID.Store(conn.PID())
	s.connected.Store(true)
	defer s.connected.Store(false)
	s.statusIvl = s.statusInterval(setupCtx)
	cancelSetup()
	s.log.Info("streaming", zap.String("slot", s.cfg.Slot), zap.String("publication", s.cfg.Publication),
		zap.Stringer("resume", s.last), zap.Stringer("confirmed", s.Flushed()),
		zap.Duration("receive_timeout", s.recvTimeout), zap.Bool("read_ahead", readsAhead(conn)))
	s.lastStatus = time.Time{}
	s.sentFlush = 0
	if err := s.sendStatus(conn); err != nil {
		return err
	}

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-s.stop:
			cancel()
		case <-rctx.Done():
		}
	}()

	// Reads wait on the connection's read deadline rather than a context:
	// a context per message costs a watcher registration each time.
	rd := &readDeadline{conn: conn.Conn()}
	stopRD := context.AfterFunc(rctx, rd.cancel)
	defer stopRD()
	s.rd = rd
	defer func() { s.rd = nil }()
	// Rows evaluated or buffered before a reconnect go first: the server
	// resends nothing at or before them.
	if err := s.flush(rctx, conn); err != nil {
		return s.sessionError(ctx, conn, err)
	}
	live := newLiveness(s.recvTimeout)
	for {
		if s.stopping() {
			return s.waitDrained(ctx, conn)
		}
		// One reading of the clock serves the checks before the read (a
		// one-row transaction is three messages: the clock was a tenth of
		// the stream's CPU when each check read it).
		now := time.Now()
		if live.pingDue(now) {
			// Silent for a while: ask the server for a keepalive, which it
			// sends at once; an idle healthy server sends nothing otherwise
			// (it pings only a client silent for wal_sender_timeout/2).
			if err := s.sendStatusReply(conn, true); err != nil {
				return err
			}
			live.pinged(now)
		}
		if err := s.maybeSendStatusAt(conn, now); err != nil {
			return err
		}
		if len(s.pending) > 0 {
			due := s.pendingSince.Add(s.cfg.BatchLinger)
			if !now.Before(due) {
				if err := s.flush(rctx, conn); err != nil {
					return s.sessionError(ctx, conn, err)
				}
				live.resumed(time.Now())
			} else {
				rd.before(due)
			}
		}
		// Wake at least every 500 ms so an advanced checkpoint is confirmed
		// promptly even when the stream is idle.
		if !rd.ensure(now, func() time.Time {
			deadline := s.lastStatus.Add(s.statusIvl)
			if soon := now.Add(500 * time.Millisecond); soon.Before(deadline) {
				deadline = soon
			}
			return deadline
		}) {
			if s.stopping() {
				return s.waitDrained(ctx, conn)
			}
			return ctx.Err()
		}
		msg, err := conn.ReceiveMessage(context.Background())
		if err != nil {
			if s.stopping() {
				return s.waitDrained(ctx, conn)
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				if live.dead() {
					return fmt.Errorf("the server sent nothing for %s, not even a keepalive when asked for one (source.receive_timeout): the connection is presumed dead (a network failure?)", s.recvTimeout)
				}
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if err := s.handleCopyData(rctx, conn, msg.Data); err != nil {
				return s.sessionError(ctx, conn, err)
			}
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("replication stream: %w", pgconn.ErrorResponseToPgError(msg))
		case *pgproto3.CopyDone:
			return errors.New("server ended the replication stream")
		}
		// The server spoke. Handling may have waited (for room in the
		// sink): silence counts only while reading, from the end of it.
		live.resumed(time.Now())
	}
}

// readDeadline keeps a read deadline on the replication connection,
// renewed only when it has passed, and lets a cancelled context interrupt a
// read.
type readDeadline struct {
	mu       sync.Mutex
	conn     net.Conn
	at       time.Time
	canceled bool
	final    bool // finish was called: cancel changes nothing
}

// finish sets the deadline of the last reads (ending the stream); a later
// cancel (the stop that led here) does not cut them short.
func (r *readDeadline) finish(at time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.final, r.at = true, at
	_ = r.conn.SetReadDeadline(at)
}

// ensure sets a new deadline when the current one has passed at now; false
// means the context was cancelled.
func (r *readDeadline) ensure(now time.Time, next func() time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.canceled {
		return false
	}
	if r.at.IsZero() || !now.Before(r.at) {
		r.at = next()
		_ = r.conn.SetReadDeadline(r.at)
	}
	return true
}

// before moves the deadline to t when t is earlier.
func (r *readDeadline) before(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.canceled && (r.at.IsZero() || t.Before(r.at)) {
		r.at = t
		_ = r.conn.SetReadDeadline(t)
	}
}

func (r *readDeadline) cancel() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.final {
		return
	}
	r.canceled = true
	_ = r.conn.SetReadDeadline(time.Now())
}

// statusInterval returns the configured status interval, shortened to a
// third of the server's wal_sender_timeout so that a stream blocked on a slow
// sink is never dropped for silence.
func (s *Stream) statusInterval(ctx context.Context) time.Duration {
	ivl := s.cfg.StatusInterval
	var ms int64
	err := s.pool.QueryRow(ctx, `SELECT setting::bigint FROM pg_settings WHERE name = 'wal_sender_timeout'`).Scan(&ms)
	if err != nil {
		s.log.Debug("cannot read wal_sender_timeout; keeping the status interval", zap.Error(err))
		return ivl
	}
	s.recvTimeout = receiveTimeout(s.cfg.Source.ReceiveTimeout, time.Duration(ms)*time.Millisecond)
	if t := time.Duration(ms) * time.Millisecond / 3; ms > 0 && t < ivl {
		ivl = max(t, 100*time.Millisecond)
	}
	return ivl
}

// maybeSendStatus sends a standby status update when the interval has passed
// or the flushed position advanced (at most every 100 ms).
func (s *Stream) maybeSendStatus(conn *pgconn.PgConn) error {
	return s.maybeSendStatusAt(conn, time.Now())
}

// maybeSendStatusAt is maybeSendStatus with the time read by the caller.
func (s *Stream) maybeSendStatusAt(conn *pgconn.PgConn, now time.Time) error {
	since := now.Sub(s.lastStatus)
	if since >= s.statusIvl || (s.Flushed() != s.sentFlush && since >= 100*time.Millisecond) {
		return s.sendStatus(conn)
	}
	return nil
}

func (s *Stream) sendStatus(conn *pgconn.PgConn) error { return s.sendStatusReply(conn, false) }

// sendStatusReply sends a standby status update; reply asks the server to
// answer with a keepalive at once (a ping).
func (s *Stream) sendStatusReply(conn *pgconn.PgConn, reply bool) error {
	f := s.Flushed()
	err := pglogrepl.SendStandbyStatusUpdate(context.Background(), conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(f), WALFlushPosition: pglogrepl.LSN(f), WALApplyPosition: pglogrepl.LSN(f),
		ReplyRequested: reply,
	})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	s.lastStatus = time.Now()
	s.sentFlush = f
	return nil
}

// endCopy ends the replication stream the way the protocol does (CopyDone,
// then the server's CopyDone and CommandComplete), so that the walsender
// has applied the final status update before the connection closes: a
// restart must not start before the confirmed position. Best effort, for
// at most 5 seconds.
func (s *Stream) endCopy(ctx context.Context, conn *pgconn.PgConn) {
	at := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(at) {
		at = d
	}
	if s.rd != nil {
		s.rd.finish(at)
	} else {
		_ = conn.Conn().SetReadDeadline(at)
	}
	// The hard stop (shutdown timeout) cuts it short too.
	stop := context.AfterFunc(ctx, func() { _ = conn.Conn().SetReadDeadline(time.Now()) })
	defer stop()
	if _, err := pglogrepl.SendStandbyCopyDone(context.Background(), conn); err != nil {
		s.log.Debug("ending the replication stream", zap.Error(err))
	}
}

// waitDrained waits until every event is handled and the checkpoint is
// durable, sending status updates meanwhile (conn may be nil), then sends the
// final position.
func (s *Stream) waitDrained(ctx context.Context, conn *pgconn.PgConn) error {
	err := s.flush(ctx, conn)
	if err == nil && s.held != nil {
		// The event that waited for room when the stop came: deliver it,
		// or the tracker never drains.
		if err = s.submit(ctx, conn, s.held); err == nil {
			s.last, s.held = s.held.Pos, nil
		}
	}
	if err != nil {
		if conn != nil {
			_ = s.sendStatus(conn)
		}
		return err
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		_, confirm := s.tracker.Checkpoint()
		if s.tracker.Drained() && s.Flushed() >= confirm {
			if conn != nil {
				if err := s.sendStatus(conn); err != nil {
					return err
				}
				s.endCopy(ctx, conn)
			}
			return errDrained
		}
		select {
		case <-ctx.Done():
			if conn != nil {
				_ = s.sendStatus(conn)
			}
			return ctx.Err()
		case <-tick.C:
		}
		if conn != nil {
			if err := s.maybeSendStatus(conn); err != nil {
				return err
			}
		}
	}
}
