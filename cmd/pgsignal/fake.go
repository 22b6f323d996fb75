package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

func cmdFake(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("fake-onesignal", stderr)
	addr := fs.String("listen", "127.0.0.1:8787", "loopback address to listen on")
	appID := fs.String("app-id", onesignaltest.DefaultAppID, "app id to accept")
	key := fs.String("api-key", onesignaltest.DefaultAPIKey, "API key to accept")
	countOnly := fs.Bool("count-only", false, "count events without recording them (benchmarks)")
	latency := fs.Duration("latency", 0, "latency added to every response")
	rate500 := fs.Float64("rate-500", 0, "fraction of requests answered 500")
	rate429 := fs.Float64("rate-429", 0, "fraction of requests answered 429")
	report := fs.Duration("report", 0, "print the counters at this interval (0: only at exit)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	srv, err := onesignaltest.Start(onesignaltest.Options{Addr: *addr, AppID: *appID, APIKey: *key, CountOnly: *countOnly})
	if err != nil {
		return fmt.Errorf("start fake OneSignal: %w", err)
	}
	defer srv.Close()
	srv.SetFaults(onesignaltest.Faults{Latency: *latency, Rate500: *rate500, Rate429: *rate429})
	fmt.Fprintf(stdout, "fake OneSignal listening on %s (app id %s)\n", srv.URL(), *appID)
	sigs, stop := signals()
	defer stop()
	var tick <-chan time.Time
	if *report > 0 {
		t := time.NewTicker(*report)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sigs:
			fmt.Fprintf(stdout, "%+v\n", srv.Stats())
			return nil
		case <-tick:
			fmt.Fprintf(stdout, "%+v\n", srv.Stats())
		}
	}
}
