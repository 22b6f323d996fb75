package replication

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/config/defaults"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/internal/store"
)

// SlotLoss describes a slot that was invalidated or dropped.
type SlotLoss struct {
	Slot string
	// Dropped is true when the slot no longer exists; otherwise it is
	// invalidated (wal_status = lost).
	Dropped bool
	// From is the last position confirmed to the slot; To the server's WAL
	// position when the loss was found. Changes committed between them
	// were not (and will not be) decoded.
	From, To cdc.LSN
	// Schema is the bookkeeping schema that holds pgsignal's checkpoint
	// (full mode), "" when unknown or in read-only mode; the fix names it.
	Schema string
}

// Bytes is the size of the WAL range that will not be decoded.
func (l SlotLoss) Bytes() int64 {
	if l.To <= l.From {
		return 0
	}
	return int64(l.To - l.From)
}

func (l SlotLoss) what() string {
	if l.Dropped {
		return fmt.Sprintf("replication slot %q was dropped", l.Slot)
	}
	return fmt.Sprintf("replication slot %q was invalidated (wal_status = lost: max_slot_wal_keep_size was exceeded and the WAL it needed was removed)", l.Slot)
}

// Problem says what was lost: `pgsignal run`, `check` and `status` all
// report it in these words.
func (l SlotLoss) Problem() string {
	return fmt.Sprintf("%s: changes committed between %s and %s (up to %d bytes of WAL) were not decoded and their events are lost",
		l.what(), l.From, l.To, l.Bytes())
}

// Fix says how to go on (the gap stays lost) and how to avoid it next time.
func (l SlotLoss) Fix() string {
	lit := pgcat.QuoteReplLiteral(l.Slot)
	var forget []string
	if !l.Dropped {
		forget = append(forget, "SELECT pg_drop_replication_slot("+lit+");")
	}
	schema, mode := "<source.schema>", " (full mode)"
	if l.Schema != "" {
		schema, mode = pgcat.QuoteIdent(l.Schema), ""
	}
	forget = append(forget, "DELETE FROM "+schema+".sync_state WHERE slot = "+lit+";"+mode)
	avoid := "raise max_slot_wal_keep_size so it does not happen again"
	if l.Dropped {
		avoid = "make sure nothing drops the slot while pgsignal is stopped"
	}
	gap := "logs the gap"
	if l.Schema != "" {
		gap = "records the gap in " + schema + ".runs"
	}
	return fmt.Sprintf("To go on from now, set source.on_slot_lost: recreate (pgsignal recreates the slot and %s), "+
		"or forget the old position yourself (%s) and start again; %s", gap, strings.Join(forget, " "), avoid)
}

// Error explains the loss and what to do.
func (l SlotLoss) Error() string { return l.Problem() + ". " + l.Fix() }

// Unwrap makes a SlotLoss permanent.
func (l SlotLoss) Unwrap() error { return ErrPermanent }

// CheckSlotLost reports whether slot is lost: missing although it was used
// before (wasUsed: a checkpoint exists), or invalidated. confirmed is the
// last position pgsignal confirmed.
func CheckSlotLost(ctx context.Context, pool *pgxpool.Pool, slot string, confirmed cdc.LSN, wasUsed bool) (*SlotLoss, error) {
	si, err := pgcat.LookupSlot(ctx, pool, slot)
	if err != nil {
		return nil, err
	}
	if si.Exists && si.WALStatus != "lost" {
		return nil, nil
	}
	if !si.Exists && !wasUsed {
		return nil, nil // first start: the slot will be created
	}
	var cur string
	if err := pool.QueryRow(ctx, `SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text`).Scan(&cur); err != nil {
		return nil, fmt.Errorf("current WAL position: %w", err)
	}
	to, err := cdc.ParseLSN(cur)
	if err != nil {
		return nil, err
	}
	from := confirmed
	if si.ConfirmedFlushLSN != "" {
		if l, err := cdc.ParseLSN(si.ConfirmedFlushLSN); err == nil && l > from {
			from = l
		}
	}
	return &SlotLoss{Slot: slot, Dropped: !si.Exists, From: from, To: to}, nil
}

// StoredSlotLoss is the decision `pgsignal run` takes about the slot when
// it starts, for `check` and `status` to say the same: in full mode it reads
// the checkpoint pgsignal keeps in schema (a slot missing although a
// checkpoint exists was lost); in read-only mode the slot is its own
// checkpoint and only an invalidated slot is known to be lost. nil: no loss.
func StoredSlotLoss(ctx context.Context, pool *pgxpool.Pool, schema, slot string, full bool) (*SlotLoss, error) {
	var confirmed cdc.LSN
	if full {
		exists, err := store.Exists(ctx, pool, schema)
		if err != nil {
			return nil, err
		}
		if exists {
			_, c, err := (&store.TableStore{Pool: pool, Schema: schema, Slot: slot}).Load(ctx)
			if err != nil {
				return nil, err
			}
			confirmed = c
		}
	}
	loss, err := CheckSlotLost(ctx, pool, slot, confirmed, confirmed > 0)
	if loss != nil && full {
		loss.Schema = schema
	}
	return loss, err
}

// RecreateSlot drops the lost slot (when it still exists) and creates it
// again, and logs the gap as an error; streaming resumes from the new
// slot's consistent point. conn is a replication connection that is not
// streaming.
func RecreateSlot(ctx context.Context, pool *pgxpool.Pool, conn *pgconn.PgConn, loss *SlotLoss, log *zap.Logger) error {
	if !loss.Dropped {
		if _, err := pool.Exec(ctx, `SELECT pg_drop_replication_slot($1)`, loss.Slot); err != nil {
			return fmt.Errorf("drop lost slot %q: %w", loss.Slot, err)
		}
	}
	_, err := pglogrepl.CreateReplicationSlot(ctx, conn, loss.Slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Mode: pglogrepl.LogicalReplication})
	if err != nil {
		return fmt.Errorf("recreate slot %q: %w", loss.Slot, err)
	}
	log.Error("replication slot lost and recreated: events in the gap are lost",
		zap.String("slot", loss.Slot), zap.Bool("dropped", loss.Dropped), zap.Stringer("gap_from", loss.From),
		zap.Stringer("gap_to", loss.To), zap.Int64("gap_bytes", loss.Bytes()))
	return nil
}

// handleStartError looks at a failed START_REPLICATION: a lost slot is
// either a SlotLoss error or, with on_slot_lost: recreate, recreated (the
// caller reconnects).
func (s *Stream) handleStartError(ctx context.Context, startErr error) error {
	var pgErr *pgconn.PgError
	if !errors.As(startErr, &pgErr) || (pgErr.Code != pgcat.UndefinedObject && pgErr.Code != pgcat.ObjectNotInPrerequisiteState) {
		return nil
	}
	loss, err := CheckSlotLost(ctx, s.pool, s.cfg.Slot, s.Flushed(), true)
	if err != nil || loss == nil {
		return err
	}
	if s.cfg.OnSlotLost != defaults.SlotLostRecreate {
		return *loss
	}
	// The slot's connection must not stream to drop or create a slot: use
	// a fresh replication connection.
	rconn, err := ConnectReplication(ctx, s.cfg.Source)
	if err != nil {
		return err
	}
	defer rconn.Close(context.Background())
	if err := RecreateSlot(ctx, s.pool, rconn, loss, s.log); err != nil {
		return err
	}
	if s.cfg.OnGap != nil {
		s.cfg.OnGap(*loss)
	}
	return errSlotRecreated
}

var errSlotRecreated = errors.New("slot recreated; reconnecting")
