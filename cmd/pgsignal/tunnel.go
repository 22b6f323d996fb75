package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/tunnel"
	"github.com/pgsignal/pgsignal/replication"
)

// dialerFor returns the dialer every database connection of cfg goes
// through, and the function that closes it: an SSH tunnel when source.ssh
// is set, else a nil dialer (direct connections) and a no-op.
func dialerFor(cfg *config.Config, log *zap.Logger) (pgconn.DialFunc, func() error, error) {
	if cfg.Source.SSH == nil {
		return nil, func() error { return nil }, nil
	}
	t, err := tunnel.New(*cfg.Source.SSH, log.Named("tunnel"))
	if err != nil {
		return nil, nil, err
	}
	return t.Dial, t.Close, nil
}

// openPool opens a small pool of ordinary connections to the source, through
// the tunnel when one is configured; close releases both.
func openPool(ctx context.Context, cfg *config.Config, conns int32) (pool *pgxpool.Pool, close func(), err error) {
	dial, closeDial, err := dialerFor(cfg, zap.NewNop())
	if err != nil {
		return nil, nil, err
	}
	pool, err = replication.NewPool(ctx, replication.Source{DSN: cfg.Source.DSN, Dial: dial}, conns)
	if err != nil {
		closeDial() //nolint:errcheck // best effort
		return nil, nil, err
	}
	return pool, func() {
		pool.Close()
		closeDial() //nolint:errcheck // best effort
	}, nil
}

// loadSource loads the configuration for command name — without the
// OneSignal key unless needKey — prints its warnings, and returns the
// source as every connection reaches it (through the SSH tunnel when one is
// configured) and the function that closes the tunnel.
func loadSource(name, path string, needKey bool, stderr io.Writer) (*config.Config, replication.Source, func(), error) {
	load := config.LoadForDatabase
	if needKey {
		load = config.Load
	}
	cfg, err := load(path)
	if err != nil {
		return nil, replication.Source{}, nil, err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(stderr, "pgsignal %s: warning: %s\n", name, w)
	}
	dial, closeDial, err := dialerFor(cfg, zap.NewNop())
	if err != nil {
		return nil, replication.Source{}, nil, err
	}
	return cfg, replication.Source{DSN: cfg.Source.DSN, Dial: dial}, func() { closeDial() }, nil //nolint:errcheck // best effort at exit
}

// writeJSON writes v as indented JSON, the form of every --json output.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
