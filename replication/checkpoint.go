package replication

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v4"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

// RunCheckpointer makes the tracker's checkpoint durable and hands it to the
// stream, until ctx ends. With a Store (full mode) the watermark is saved
// before the stream may confirm it to the slot; without one (read-only mode)
// the slot is the only checkpoint. A failed save is retried: the slot is
// simply not advanced meanwhile, so nothing is lost.
func RunCheckpointer(ctx context.Context, t *Tracker, store Store, s *Stream, log *zap.Logger) {
	if log == nil {
		log = zap.NewNop()
	}
	var saved cdc.Position
	if store != nil {
		saved, _ = t.Checkpoint()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.Changed():
		}
		pos, confirm := t.Checkpoint()
		if store != nil && pos != saved {
			op := func() error { return store.Save(ctx, pos, confirm) }
			bo := backoff.NewExponentialBackOff()
			bo.InitialInterval = 100 * time.Millisecond
			bo.MaxInterval = 10 * time.Second
			bo.MaxElapsedTime = 0
			notify := func(err error, d time.Duration) {
				log.Warn("saving the checkpoint failed; retrying", zap.Error(err), zap.Duration("in", d))
			}
			if err := backoff.RetryNotify(op, backoff.WithContext(bo, ctx), notify); err != nil {
				return
			}
			saved = pos
		}
		s.SetFlushed(confirm)
	}
}
