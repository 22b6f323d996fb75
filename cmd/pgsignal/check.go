package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/check"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/replication"
)

const checkUsage = `Usage:
  pgsignal check [--config FILE] [--json] [--timeout D]

Checks, item by item, what pgsignal needs from the database and from OneSignal,
and prints how to fix every failure. It writes nothing to the database and creates
no event. It exits 0 only when every required item passes (warnings are advice).

Flags:
`

func cmdCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSetWithUsage("check", checkUsage, stderr)
	path := fs.String("config", "pgsignal.yaml", "configuration file")
	asJSON := fs.Bool("json", false, `print {"ok":bool,"items":[{"name","status","detail","fix"}]}`)
	timeout := fs.Duration("timeout", 60*time.Second, "bound on the whole check")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "pgsignal check: warning:", w)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	dial, closeDial, err := dialerFor(cfg, zap.NewNop())
	if err != nil {
		return err
	}
	defer closeDial() //nolint:errcheck // best effort at exit
	rep := check.Run(ctx, check.Options{Config: cfg, Source: replication.Source{DSN: cfg.Source.DSN, Dial: dial}})
	if *asJSON {
		err = rep.WriteJSON(stdout)
	} else {
		err = rep.WriteText(stdout)
	}
	if err != nil {
		return err
	}
	if !rep.OK {
		return errReported
	}
	return nil
}
