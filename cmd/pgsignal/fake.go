package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
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
	printEvents := fs.Bool("print", false, "print each accepted event as a JSON line (GET on the events path lists them too)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var mu sync.Mutex // stdout is shared by the handler and the report
	stdout = lockedWriter{mu: &mu, w: stdout}
	opts := onesignaltest.Options{Addr: *addr, AppID: *appID, APIKey: *key, CountOnly: *countOnly}
	if *printEvents {
		opts.OnAccept = func(a onesignaltest.Accepted) {
			line, err := json.Marshal(struct {
				Name           string          `json:"name"`
				ExternalID     string          `json:"external_id,omitempty"`
				Timestamp      string          `json:"timestamp,omitempty"`
				IdempotencyKey string          `json:"idempotency_key,omitempty"`
				Properties     json.RawMessage `json:"properties,omitempty"`
			}{a.Name, a.ExternalID, a.Timestamp, a.IdempotencyKey, a.Properties})
			if err == nil {
				fmt.Fprintf(stdout, "accepted %s\n", line)
			}
		}
	}
	srv, err := onesignaltest.Start(opts)
	if err != nil {
		return fmt.Errorf("start fake OneSignal: %w", err)
	}
	defer srv.Close()
	srv.SetFaults(onesignaltest.Faults{Latency: *latency, Rate500: *rate500, Rate429: *rate429})
	fmt.Fprintf(stdout, "fake OneSignal listening on %s (app id %s); GET %s/apps/%s/custom_events lists the accepted events\n",
		srv.URL(), *appID, srv.URL(), *appID)
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

// lockedWriter serializes writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
