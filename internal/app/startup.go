package app

import (
	"context"
	"errors"
	"time"

	"go.uber.org/zap"
)

// errStartupStopped ends a start-up that Stop interrupted.
var errStartupStopped = errors.New("stopped during start-up")

// startup returns the context of Run's start-up (connecting, the schema,
// the publication, the slot): it ends shutdown_timeout after Stop, so that a
// database that accepts connections and never answers cannot hold a stop.
// started ends the watch once start-up is over (the stream's own stop
// applies then); cancel releases the context.
func (a *App) startup(ctx context.Context) (sctx context.Context, started, cancel func()) {
	sctx, cancelCause := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		select {
		case <-a.stopCh:
		case <-done:
			return
		}
		t := time.NewTimer(a.shutdownLeft())
		defer t.Stop()
		select {
		case <-t.C:
			cancelCause(errStartupStopped)
		case <-done:
		}
	}()
	var once bool
	started = func() {
		if !once {
			once = true
			close(done)
		}
	}
	return sctx, started, func() { started(); cancelCause(nil) }
}

// startupStopped turns the error of a start-up that Stop interrupted into
// a clean stop, with a warning saying so and what start-up was doing.
func (a *App) startupStopped(sctx context.Context, err error) error {
	if err == nil || !errors.Is(context.Cause(sctx), errStartupStopped) {
		return err
	}
	a.log.Warn("stopped during start-up: it did not finish within shutdown_timeout of the stop request; nothing was streamed and nothing is lost",
		zap.Duration("shutdown_timeout", a.opts.Config.ShutdownTimeout), zap.NamedError("interrupted", err))
	return nil
}

// shutdownLeft is what remains of shutdown_timeout since Stop (all of it
// before Stop).
func (a *App) shutdownLeft() time.Duration {
	d := a.opts.Config.ShutdownTimeout
	a.mu.Lock()
	at := a.stopAt
	a.mu.Unlock()
	if at.IsZero() {
		return d
	}
	return max(d-time.Since(at), 0)
}
