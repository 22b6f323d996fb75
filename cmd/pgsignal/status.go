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
	} `json:"slot"`
	Watermark   *store.Watermark `json:"watermark,omitempty"`
	Backfill    *store.Backfill  `json:"backfill,omitempty"`
	DeadLetters int              `json:"dead_letters"`
	Runs        []store.Run      `json:"runs"`

	// Ledger is the delivery ledger's size (nil before the first run).
	Ledger *checkpoint.LedgerSize `json:"ledger,omitempty"`
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
	rep := &statusReport{Runs: []store.Run{}}
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
	if cfg.Source.Mode == config.ModeReadOnly {
		letters, err := (&sink.FileLetters{Path: cfg.Sink.DeadLetterFile}).List(ctx, sink.Filter{})
		if err != nil {
			return nil, err
		}
		rep.DeadLetters = len(letters)
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
	runs, err := store.ListRuns(ctx, pool, schema, slot, nRuns)
	if err != nil {
		return nil, err
	}
	rep.Runs = append(rep.Runs, runs...)
	return rep, nil
}

func printStatus(w io.Writer, rep *statusReport) {
	s := rep.Slot
	switch {
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
