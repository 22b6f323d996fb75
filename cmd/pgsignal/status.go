package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/checkpoint"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/internal/store"
	"github.com/pgsignal/pgsignal/replication"
	"github.com/pgsignal/pgsignal/sink"
)

// statusReport is what `pgsignal status` shows.
type statusReport struct {
	// Method is source.method. The query method has no slot (Slot is left
	// out) and shows Query instead.
	Method string             `json:"method"`
	Query  *store.QueryStatus `json:"query,omitempty"`

	Slot struct {
		Name              string `json:"name"`
		Exists            bool   `json:"exists"`
		Active            bool   `json:"active"`
		ActivePID         int32  `json:"active_pid,omitempty"`
		ConfirmedFlushLSN string `json:"confirmed_flush_lsn,omitempty"`
		WALStatus         string `json:"wal_status,omitempty"`
		LagBytes          *int64 `json:"lag_bytes,omitempty"`
		RetainedBytes     *int64 `json:"retained_bytes,omitempty"`
		// Lost says that the slot was lost and what `pgsignal run` does
		// about it (the words of run and check); Fix how to go on.
		Lost string `json:"lost,omitempty"`
		Fix  string `json:"fix,omitempty"`
	} `json:"slot,omitzero"`
	Watermark   *store.Watermark `json:"watermark,omitempty"`
	Backfill    *store.Backfill  `json:"backfill,omitempty"`
	DeadLetters int              `json:"dead_letters"`
	Runs        []store.Run      `json:"runs"`
	// OldestUnsentAgeSeconds is the age of the oldest event the running
	// run has queued or in flight (0: none), as of its last report
	// (OldestUnsentNote says when it is unknown).
	OldestUnsentAgeSeconds *float64 `json:"oldest_unsent_age_seconds,omitempty"`
	OldestUnsentNote       string   `json:"oldest_unsent_note,omitempty"`
	// Ledger is the delivery ledger's size (nil before the first run).
	Ledger *checkpoint.LedgerSize `json:"ledger,omitempty"`
}

// backlogStale is how old the running run's last report of its backlog may
// be before status takes it for a process that died.
const backlogStale = 30 * time.Second

// setOldestUnsent fills in the oldest unsent event from the newest run, if
// it is running.
func (rep *statusReport) setOldestUnsent(latest store.Run, now time.Time) {
	switch {
	case latest.StoppedAt != nil:
		return
	case latest.BacklogAt == nil:
		rep.OldestUnsentNote = fmt.Sprintf("run %d has not reported it yet", latest.ID)
	case now.Sub(*latest.BacklogAt) > backlogStale:
		rep.OldestUnsentNote = fmt.Sprintf("unknown: run %d last reported %s ago (is it still running?)", latest.ID, now.Sub(*latest.BacklogAt).Round(time.Second))
	default:
		age := 0.0
		if latest.OldestUnsentAt != nil && now.After(*latest.OldestUnsentAt) {
			age = now.Sub(*latest.OldestUnsentAt).Seconds()
		}
		rep.OldestUnsentAgeSeconds = &age
	}
}

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("status", stderr)
	path := fs.String("config", "pgsignal.yaml", "configuration file")
	asJSON := fs.Bool("json", false, "print JSON")
	runs := fs.Int("runs", 5, "how many recent runs to show (full mode)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.LoadForDatabase(*path) // status needs no OneSignal key
	if err != nil {
		return err
	}
	pool, closePool, err := openPool(ctx, cfg, 2)
	if err != nil {
		return err
	}
	defer closePool()
	rep, err := buildStatus(ctx, pool, cfg, *runs)
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, rep)
	}
	printStatus(stdout, rep)
	return nil
}

func buildStatus(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config, nRuns int) (*statusReport, error) {
	rep := &statusReport{Method: cfg.Source.Method, Runs: []store.Run{}}
	if cfg.Source.Method == config.MethodQuery {
		if err := queryStatus(ctx, pool, cfg, rep); err != nil {
			return nil, err
		}
		return statusStore(ctx, pool, cfg, rep, nRuns)
	}
	rep.Slot.Name = cfg.Source.Slot
	si, err := pgcat.LookupSlot(ctx, pool, cfg.Source.Slot)
	if err != nil {
		return nil, err
	}
	rep.Slot.Exists, rep.Slot.Active, rep.Slot.ActivePID = si.Exists, si.Active, si.ActivePID
	rep.Slot.ConfirmedFlushLSN, rep.Slot.WALStatus = si.ConfirmedFlushLSN, si.WALStatus
	rep.Slot.LagBytes, rep.Slot.RetainedBytes = si.LagBytes, si.RetainedBytes
	loss, err := replication.StoredSlotLoss(ctx, pool, cfg.Source.Schema, cfg.Source.Slot, cfg.Source.Mode != config.ModeReadOnly)
	if err != nil {
		return nil, err
	}
	if loss != nil {
		rep.Slot.Lost, rep.Slot.Fix = loss.Problem()+"; pgsignal run refuses to start", loss.Fix()
		if cfg.Source.OnSlotLost == config.SlotLostRecreate {
			rep.Slot.Lost, rep.Slot.Fix = loss.Problem()+"; pgsignal run recreates the slot and goes on from now (source.on_slot_lost: recreate)", ""
		}
	}
	return statusStore(ctx, pool, cfg, rep, nRuns)
}

// statusStore adds what the bookkeeping schema (full mode) or the dead
// letter file (read-only mode) holds.
func statusStore(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config, rep *statusReport, nRuns int) (*statusReport, error) {
	if cfg.Source.Mode == config.ModeReadOnly {
		letters, err := (&sink.FileLetters{Path: cfg.Sink.DeadLetterFile}).List(ctx, sink.Filter{})
		if err != nil {
			return nil, err
		}
		rep.DeadLetters = len(letters)
		rep.OldestUnsentNote = "not recorded in read-only mode: see pgsignal_oldest_unsent_event_age_seconds on the run's /metrics"
		if rep.Ledger, err = checkpoint.ReadStateFileLedgerSize(cfg.Source.StateFile); err != nil {
			return nil, err
		}
		return rep, nil
	}
	schema, slot := cfg.Source.Schema, cfg.Source.Slot
	exists, err := store.Exists(ctx, pool, schema)
	if err != nil {
		return nil, err
	}
	if !exists {
		return rep, nil // pgsignal never ran in full mode here
	}
	if rep.Watermark, err = store.ReadWatermark(ctx, pool, schema, slot); err != nil {
		return nil, err
	}
	if rep.Backfill, err = store.ReadBackfill(ctx, pool, schema, slot); err != nil {
		return nil, err
	}
	if rep.DeadLetters, err = store.CountDeadLetters(ctx, pool, schema, slot); err != nil {
		return nil, err
	}
	if rep.Ledger, err = store.ReadLedgerSize(ctx, pool, schema, slot); err != nil {
		return nil, err
	}
	runs, err := store.ListRuns(ctx, pool, schema, slot, max(nRuns, 1))
	if err != nil {
		return nil, err
	}
	if len(runs) > 0 {
		rep.setOldestUnsent(runs[0], time.Now())
	}
	rep.Runs = append(rep.Runs, runs[:min(nRuns, len(runs))]...)
	return rep, nil
}

func printStatus(w io.Writer, rep *statusReport) {
	s := rep.Slot
	switch {
	case rep.Query != nil:
		printQueryStatus(w, rep.Query)
	case s.Lost != "":
		fmt.Fprintf(w, "slot %s: LOST: %s\n", s.Name, s.Lost)
		if s.Fix != "" {
			fmt.Fprintf(w, "  fix: %s\n", s.Fix)
		}
	case !s.Exists:
		fmt.Fprintf(w, "slot %s: does not exist (pgsignal run creates it)\n", s.Name)
	default:
		state := "inactive"
		if s.Active {
			state = fmt.Sprintf("active (pid %d)", s.ActivePID)
		}
		fmt.Fprintf(w, "slot %s: %s, confirmed_flush_lsn %s, wal_status %s", s.Name, state, s.ConfirmedFlushLSN, s.WALStatus)
		if s.LagBytes != nil {
			fmt.Fprintf(w, ", lag %s, retains %s", bytesHuman(*s.LagBytes), bytesHuman(*s.RetainedBytes))
		}
		fmt.Fprintln(w)
	}
	if rep.Watermark != nil {
		fmt.Fprintf(w, "watermark: %s (confirmed %s), saved %s ago\n", rep.Watermark.Position, rep.Watermark.ConfirmedLSN,
			time.Since(rep.Watermark.UpdatedAt).Round(time.Second))
	}
	if b := rep.Backfill; b != nil {
		fmt.Fprintf(w, "backfill: %s, %d of %d rows (%s), started %s\n", b.State, b.RowsDone, b.RowsTotal,
			strings.Join(b.Tables, ", "), b.StartedAt.UTC().Format("2006-01-02 15:04:05"))
	}
	fmt.Fprintf(w, "dead letters: %d\n", rep.DeadLetters)
	switch {
	case rep.OldestUnsentAgeSeconds != nil && *rep.OldestUnsentAgeSeconds == 0:
		fmt.Fprintln(w, "oldest unsent event: none")
	case rep.OldestUnsentAgeSeconds != nil:
		fmt.Fprintf(w, "oldest unsent event: committed %s ago\n", (time.Duration(*rep.OldestUnsentAgeSeconds * float64(time.Second))).Round(100*time.Millisecond))
	case rep.OldestUnsentNote != "":
		fmt.Fprintf(w, "oldest unsent event: %s\n", rep.OldestUnsentNote)
	}
	if len(rep.Runs) > 0 && rep.Runs[0].StaleEvents > 0 {
		fmt.Fprintf(w, "stale events: run %d did not send %d event(s) older than sink.max_event_age (see pgsignal dead-letters list --reason 'older than max_event_age' unless sink.stale is drop)\n",
			rep.Runs[0].ID, rep.Runs[0].StaleEvents)
	}
	if l := rep.Ledger; l != nil {
		skipped := "unknown"
		if l.SkippedOnLastStart >= 0 {
			skipped = fmt.Sprint(l.SkippedOnLastStart)
		}
		fmt.Fprintf(w, "delivery ledger: %d range(s), %d event(s) accepted above the watermark; skipped on the last start: %s\n", l.Ranges, l.Events, skipped)
	}
	if len(rep.Runs) == 0 {
		return
	}
	fmt.Fprintln(w, "\nrecent runs:")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTARTED\tSTOPPED\tDELIVERED\tDEAD\tLAST POSITION\tSTOP REASON")
	for _, r := range rep.Runs {
		stopped := "running"
		if r.StoppedAt != nil {
			stopped = r.StoppedAt.UTC().Format("2006-01-02 15:04:05")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%d\t%s\t%s\n", r.ID, r.StartedAt.UTC().Format("2006-01-02 15:04:05"), stopped,
			r.EventsDelivered, r.DeadLettered, r.LastPosition, r.StopReason)
	}
	_ = tw.Flush()
}

func bytesHuman(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// queryStatus fills the query method's part of the report: no slot, the
// tables' positions (store.ReadQueryStatus).
func queryStatus(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config, rep *statusReport) error {
	src := store.QueryStatusSource{Pool: pool, Schema: cfg.Source.Schema, Name: cfg.Source.Slot}
	if cfg.Source.Mode == config.ModeReadOnly {
		src.Schema, src.StateFile = "", cfg.Source.StateFile
	}
	for _, t := range cfg.Tables {
		src.Tables = append(src.Tables, t.Schema+"."+t.Name)
	}
	q, err := store.ReadQueryStatus(ctx, src)
	if err != nil {
		return err
	}
	rep.Query = q
	return nil
}

// printQueryStatus prints the query method's lines.
func printQueryStatus(w io.Writer, q *store.QueryStatus) {
	fmt.Fprintln(w, "method query: no replication slot; each table is polled by its cursor column")
	if !q.Available {
		fmt.Fprintf(w, "positions: not available (%s)\n", q.Note)
		return
	}
	for _, t := range q.Tables {
		fmt.Fprintf(w, "position %s: %s\n", t.Table, t.Position)
	}
}
