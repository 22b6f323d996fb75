package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgsignal/pgsignal/internal/app"
	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

const demoSchema = `CREATE SCHEMA analytics;
CREATE TABLE analytics.user_events (
  id              bigserial PRIMARY KEY,
  event_name      text,
  user_id         text,
  event_timestamp timestamptz DEFAULT now(),
  event_data      jsonb
);`

// demoTxns are the transactions the demo inserts while streaming.
var demoTxns = [][]string{
	{`('signup', 'user_1', '{"plan": "free"}')`},
	{`('purchase', 'user_1', '{"item": "T-shirt", "price": 24.99}')`, `('purchase', 'user_2', '{"item": "Mug", "price": 9.5}')`},
	{`('page_view', NULL, '{"path": "/pricing"}')`}, // no user: a dead letter
	{`('level_up', 'user_3', '{"level": 2}')`, `('level_up', 'user_3', '{"level": 3}')`, `('level_up', 'user_3', '{"level": 4}')`},
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo", stderr)
	bulk := fs.Int("rows", 200, "rows in the final bulk transaction")
	verbose := fs.Bool("v", false, "log pgsignal's own messages")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	sigs, stopSig := signals()
	defer stopSig()
	go func() {
		select {
		case <-sigs:
			cancel()
		case <-ctx.Done():
		}
	}()

	fmt.Fprintln(stdout, "starting a throwaway PostgreSQL (wal_level=logical)...")
	pg, err := pgtest.Start(ctx, pgtest.Options{})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer pg.Stop()
	fake, err := onesignaltest.Start(onesignaltest.Options{})
	if err != nil {
		return err
	}
	defer fake.Close()
	fmt.Fprintf(stdout, "PostgreSQL %d on 127.0.0.1:%d, fake OneSignal at %s\n", pg.Version(), pg.Port(), fake.URL())
	if err := pg.Exec(ctx, demoSchema); err != nil {
		return err
	}

	cfg := config.Defaults()
	cfg.Source.DSN = pg.DSN("")
	cfg.OneSignal.AppID, cfg.OneSignal.APIKey, cfg.OneSignal.URL = fake.AppID(), fake.APIKey(), fake.URL()
	cfg.Tables = []config.Table{{Schema: "analytics", Name: "user_events", EventName: "event_name",
		ExternalID: "user_id", Timestamp: "event_timestamp", Properties: []string{"event_data"}}}
	if err := cfg.Validate(); err != nil {
		return err
	}
	level := "error"
	if *verbose {
		level = "info"
	}
	log, err := newLogger(level, "console", stderr)
	if err != nil {
		return err
	}

	var out sync.Mutex
	var handled atomic.Int64
	quiet := atomic.Bool{}
	started := make(chan struct{})
	a := app.New(app.Options{Config: &cfg, Logger: log,
		OnStreaming: func() { close(started) },
		OnDelivered: func(ev *cdc.Event, at time.Time) {
			handled.Add(1)
			if quiet.Load() {
				return
			}
			out.Lock()
			fmt.Fprintf(stdout, "  delivered  %-10s %-7s  %s  (commit→accepted %s)\n", ev.Name, ev.ExternalID,
				props(ev), at.Sub(ev.CommitTime).Round(100*time.Microsecond))
			out.Unlock()
		},
		OnDeadLetter: func(l cdc.DeadLetter) {
			handled.Add(1)
			out.Lock()
			fmt.Fprintf(stdout, "  dead letter at %s: %s\n", l.Pos, l.Reason)
			out.Unlock()
		},
	})
	type result struct {
		sum app.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := a.Run(ctx)
		done <- result{sum, err}
	}()
	select {
	case <-started:
	case r := <-done:
		return fmt.Errorf("pgsignal stopped before streaming: %w", r.err)
	}
	fmt.Fprintln(stdout, "streaming from slot \"pgsignal\"; inserting events in separate transactions:")

	conn, err := pgx.Connect(ctx, pg.DSN(""))
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	inserted := 0
	for _, txn := range demoTxns {
		if err := insertRows(ctx, conn, txn); err != nil {
			return err
		}
		inserted += len(txn)
		waitHandled(ctx, &handled, inserted, 10*time.Second)
		time.Sleep(200 * time.Millisecond)
	}
	if *bulk > 0 {
		quiet.Store(true)
		fmt.Fprintf(stdout, "  ... and one transaction of %d rows (not printed)\n", *bulk)
		if _, err := conn.Exec(ctx, `INSERT INTO analytics.user_events (event_name, user_id, event_data)
SELECT 'bulk_event', 'user_' || (i % 10), jsonb_build_object('i', i) FROM generate_series(1, $1::int) AS i`, *bulk); err != nil {
			return err
		}
		inserted += *bulk
	}
	waitHandled(ctx, &handled, inserted, 60*time.Second)
	a.Stop()
	r := <-done
	if r.err != nil {
		return r.err
	}
	s := r.sum
	fmt.Fprintf(stdout, "\nsummary: %d rows inserted, %d delivered, %d dead-lettered, %d requests, %d retries\n",
		inserted, s.Delivered, s.DeadLettered, s.Requests, s.Retries)
	fmt.Fprintf(stdout, "commit→accepted latency: p50 %s, p99 %s\n", s.LatencyP50.Round(100*time.Microsecond), s.LatencyP99.Round(100*time.Microsecond))
	fmt.Fprintf(stdout, "fake OneSignal holds %d events (%d duplicates dropped); slot confirmed to %s\n",
		fake.Count(), fake.Duplicates(), s.Confirmed)
	if int(s.Delivered+s.DeadLettered) != inserted || fake.Count() != int(s.Delivered) {
		return errors.New("not every event was handled")
	}
	fmt.Fprintln(stdout, "every event was handled.")
	return nil
}

// waitHandled waits until n events were delivered or dead-lettered.
func waitHandled(ctx context.Context, handled *atomic.Int64, n int, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for handled.Load() < int64(n) && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
	}
}

func insertRows(ctx context.Context, conn *pgx.Conn, rows []string) error {
	sql := "INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES "
	for i, r := range rows {
		if i > 0 {
			sql += ", "
		}
		sql += r
	}
	if _, err := conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("insert: %w", err)
	}
	return nil
}

// props extracts the properties object from an event's JSON for display.
func props(ev *cdc.Event) string {
	const key = `"properties":`
	s := string(ev.JSON)
	for i := 0; i+len(key) <= len(s); i++ {
		if s[i:i+len(key)] == key {
			return s[i+len(key) : len(s)-1]
		}
	}
	return "{}"
}
