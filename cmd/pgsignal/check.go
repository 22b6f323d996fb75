package main

import (
	"context"
	"io"
	"time"

	"github.com/pgsignal/pgsignal/internal/check"
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
	cfg, src, closeSrc, err := loadSource("check", *path, true, stderr)
	if err != nil {
		return err
	}
	defer closeSrc()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep := check.Run(ctx, check.Options{Config: cfg, Source: src})
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
