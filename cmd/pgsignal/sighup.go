package main

import (
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
)

// ignoreHangups keeps SIGHUP from killing a run (without drain or
// checkpoint, its default action): a sidecar or a terminal going away sends
// it. Each one is logged with what to do instead; the configuration is not
// reloaded. The returned function stops listening.
func ignoreHangups(log *zap.Logger) func() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-ch:
				log.Warn("SIGHUP received and ignored: pgsignal does not reload its configuration; restart it to apply changes (SIGTERM drains and stops it)")
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(ch)
		close(done)
	}
}
