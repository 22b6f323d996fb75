package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"time"

	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/app"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/progress"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer, backfill bool) error {
	name := "run"
	if backfill {
		name = "backfill"
	}
	fs := newFlagSet(name, stderr)
	path := fs.String("config", "pgsignal.yaml", "configuration file")
	var since *string
	if backfill {
		since = fs.String("since", "", `the window to send, e.g. "7d" or "36h" (required; overrides tables[].backfill.since)`)
	}
	level := fs.String("log-level", "", "log level: debug, info, warn, error (overrides log.level)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file (performance work)")
	memprofile := fs.String("memprofile", "", "write an allocation profile to this file at exit (performance work)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if err := applyListenEnv(cfg); err != nil {
		return err
	}
	if backfill {
		if err := applyBackfill(cfg, *since); err != nil {
			return err
		}
	}
	if *level != "" {
		cfg.Log.Level = *level
	}
	logOut, line := stderr, (*progress.Line)(nil)
	if backfill {
		line, logOut = progressLine(stderr, cfg, "backfill", "rows")
		defer line.Finish()
	}
	log, err := newLogger(cfg.Log.Level, cfg.Log.Format, logOut)
	if err != nil {
		return err
	}
	defer log.Sync() //nolint:errcheck // best effort at exit
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}

	if *cpuprofile != "" {
		stopProfile, err := startCPUProfile(*cpuprofile)
		if err != nil {
			return err
		}
		defer stopProfile()
	}
	if *memprofile != "" {
		defer writeAllocProfile(*memprofile, log)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dial, closeDialer, err := dialerFor(cfg, log)
	if err != nil {
		return err
	}
	defer closeDialer() //nolint:errcheck // best effort at exit
	a := app.New(app.Options{Config: cfg, Logger: log, Dial: dial, ForceBackfill: backfill,
		OnBackfillProgress: finishing(line)})
	if cfg.Server.Listen != "" {
		stopServer, err := serve(cfg.Server.Listen, a.Handler(), log)
		if err != nil {
			return err
		}
		defer stopServer()
	}
	sigs, stop := signals()
	defer stop()
	defer ignoreHangups(log)()
	go func() {
		n := 0
		for sig := range sigs {
			n++
			if n == 1 {
				log.Info("signal received: stopping gracefully (send it again to stop at once)", zap.String("signal", sig.String()))
				a.Stop()
				continue
			}
			log.Warn("second signal: stopping at once; unconfirmed events are sent again on the next start")
			cancel()
			return
		}
	}()
	_, err = a.Run(ctx)
	return err
}

// startCPUProfile writes a CPU profile to path until the returned function
// is called.
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// writeAllocProfile writes the allocation profile (every allocation since
// the start) to path.
func writeAllocProfile(path string, log *zap.Logger) {
	f, err := os.Create(path)
	if err != nil {
		log.Warn("allocation profile", zap.Error(err))
		return
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		log.Warn("allocation profile", zap.Error(err))
	}
}

// serve runs the metrics and health server until the returned function is
// called.
func serve(addr string, h http.Handler, log *zap.Logger) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, listenError(addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", zap.Error(err))
		}
	}()
	log.Info("serving /metrics, /healthz and /readyz", zap.String("listen", ln.Addr().String()))
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// applyBackfill gives every configured table a backfill of the window since
// (pgsignal backfill), keeping a configured backfill column.
func applyBackfill(cfg *config.Config, since string) error {
	if since == "" {
		return errors.New("backfill needs --since: how far back to send rows, e.g. --since 7d")
	}
	d, err := config.ParseSince(since)
	if err != nil {
		return fmt.Errorf("--since: %w", err)
	}
	for i := range cfg.Tables {
		b := &config.Backfill{Since: d}
		if old := cfg.Tables[i].Backfill; old != nil {
			b.Column = old.Column
		}
		cfg.Tables[i].Backfill = b
	}
	return cfg.Validate()
}
