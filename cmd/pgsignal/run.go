package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/pprof"

	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/app"
	"github.com/pgsignal/pgsignal/internal/config"
)

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("run", stderr)
	path := fs.String("config", "pgsignal.yaml", "configuration file")
	level := fs.String("log-level", "", "log level: debug, info, warn, error (overrides log.level)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file (performance work)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if *level != "" {
		cfg.Log.Level = *level
	}
	log, err := newLogger(cfg.Log.Level, cfg.Log.Format, stderr)
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

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a := app.New(app.Options{Config: cfg, Logger: log})
	sigs, stop := signals()
	defer stop()
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
