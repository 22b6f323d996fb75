package main

import (
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/tunnel"
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
