package checkpoint

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

// minSaveInterval is the shortest time between two saves of the watermark
// (see RunCheckpointer).
const minSaveInterval = 50 * time.Millisecond

// Store keeps the checkpoint outside the slot (full mode); internal/store
// implements it with <schema>.sync_state.
type Store interface {
	// Load returns the stored watermark (zero when none).
	Load(ctx context.Context) (cdc.Position, cdc.LSN, error)
	// Save durably stores the watermark: the position of the last handled
	// event and the confirmable LSN.
	Save(ctx context.Context, pos cdc.Position, confirmed cdc.LSN) error
}

// Slot is where the checkpoint is confirmed: replication.Stream.
type Slot interface {
	// SetFlushed sets the LSN the next status update confirms.
	SetFlushed(lsn cdc.LSN)
	// MaxOutstanding is the bound on events received but not yet durable.
	MaxOutstanding() int
}

// RunCheckpointer hands the tracker's checkpoint to the stream (which
// confirms it to the slot) and, with a Store (full mode), saves the watermark
// there, until ctx ends.
//
// The slot may safely run ahead of the stored watermark: the watermark only
// lets a restart skip the handled part of a transaction the slot would send
// again, so a stale one costs duplicates (absorbed by idempotency keys), never
// events. Confirming does therefore not wait for the save: when the database
// is shutting down, a walsender waiting for our confirmation must not wait
// for a save that cannot happen. A failed save is retried with backoff.
//
// Saves are at least minSaveInterval apart while fewer than half of the
// stream's MaxOutstanding events wait to become durable, so that a fast
// stream writes the bookkeeping row tens of times a second, not hundreds;
// past that half it saves at once, so the bound rarely stops reading.
func RunCheckpointer(ctx context.Context, t *Tracker, store Store, s Slot, log *zap.Logger) {
	if log == nil {
		log = zap.NewNop()
	}
	var saved cdc.Position
	if store != nil {
		saved, _ = t.Checkpoint()
	}
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = 10 * time.Second
	bo.MaxElapsedTime = 0
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	failing := false
	var lastSave time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Changed():
		case <-retry.C:
		}
		pos, confirm, seq := t.Watermark()
		s.SetFlushed(confirm)
		if store == nil || pos == saved {
			// Read-only mode: the slot is the only checkpoint, and a restart
			// resends the whole open transaction; the handled prefix is as
			// durable as it gets.
			t.MarkDurable(seq)
			continue
		}
		if wait := minSaveInterval - time.Since(lastSave); wait > 0 && !failing && t.Outstanding() < s.MaxOutstanding()/2 {
			retry.Reset(wait) // save what is handled by then
			continue
		}
		lastSave = time.Now()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := store.Save(sctx, pos, confirm)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := bo.NextBackOff()
			if !failing {
				log.Warn("saving the checkpoint failed; retrying", zap.Error(err))
			}
			failing = true
			retry.Reset(wait)
			continue
		}
		if failing {
			log.Info("checkpoint saved again", zap.Stringer("position", pos))
		}
		failing = false
		bo.Reset()
		saved = pos
		t.MarkSaved(pos)
		t.MarkDurable(seq)
	}
}
