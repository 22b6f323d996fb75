package replication

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/config/defaults"
	"github.com/pgsignal/pgsignal/internal/pgcat"
)

// sessionParams are set on every replication connection so that pgoutput's
// text values have one well-known form (see codec.AppendJSON), and on every
// ordinary one. client_encoding UTF8 makes the server convert text from
// its encoding (LATIN1, ...) to UTF-8.
var sessionParams = map[string]string{
	"client_encoding":    "UTF8",
	"DateStyle":          "ISO, YMD",
	"TimeZone":           "UTC",
	"bytea_output":       "hex",
	"extra_float_digits": "3",
	"IntervalStyle":      "postgres",
}

// Source says how to reach the database.
type Source struct {
	// DSN is a libpq URL or key=value string.
	DSN string
	// Dial, when set, replaces the network dialer (an SSH tunnel).
	Dial pgconn.DialFunc
	// readAhead makes a Unix-socket connection read the network on a
	// goroutine of its own (readAheadConn): the stream's connection.
	readAhead bool
	// beforeRead, when set with readAhead, is called by the stream's
	// reader before a read that would wait for the network (the stream
	// sets it to its sink's Flush).
	beforeRead func()
	// ReceiveTimeout, when set, is source.receive_timeout: the stream's
	// silence limit, and the TCP_USER_TIMEOUT of direct connections
	// (default DefaultTCPUserTimeout).
	ReceiveTimeout time.Duration
}

// ReplicationConfig parses dsn (a libpq URL or key=value string; PG*
// environment variables and ~/.pgpass apply) for a replication=database
// connection.
func ReplicationConfig(dsn string) (*pgconn.Config, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse source.dsn: %w", redactParseError(err))
	}
	cfg.RuntimeParams["replication"] = "database"
	// Read the stream through a large buffer: one read system call per
	// 256 KiB instead of per 8 KiB chunk, and coalesce the reads of a busy
	// stream (coalesceWindow).
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return coalescingFrontend(r, w, nil)
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "pgsignal"
	}
	for k, v := range sessionParams {
		cfg.RuntimeParams[k] = v
	}
	return cfg, nil
}

// coalescingFrontend reads r through a 256 KiB buffer and a coalescingReader
// that calls beforeRead (when not nil) before each read.
func coalescingFrontend(r io.Reader, w io.Writer, beforeRead func()) *pgproto3.Frontend {
	cr := &coalescingReader{r: r, beforeRead: beforeRead}
	return pgproto3.NewFrontend(bufio.NewReaderSize(cr, 256<<10), w)
}

// setReadAhead makes cfg's Unix-socket connections read ahead
// (readAheadConn) and read the stream through a hookReader that calls
// beforeRead (when not nil) before a read that finds nothing read ahead; a
// TCP connection reads through coalescingFrontend. Call it after
// applyNetwork.
func setReadAhead(cfg *pgconn.Config, beforeRead func()) {
	var last *readAheadConn
	cfg.DialFunc = readAheadDialer(cfg.DialFunc, func(c *readAheadConn) { last = c })
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		// Called after the dial, on the same goroutine: last is the
		// connection r reads (beneath TLS, when TLS is on).
		if last == nil {
			return coalescingFrontend(r, w, beforeRead)
		}
		return pgproto3.NewFrontend(&hookReader{r: r, ahead: last, beforeRead: beforeRead}, w)
	}
}

// ConnectReplication opens a replication=database connection.
func ConnectReplication(ctx context.Context, src Source) (*pgconn.PgConn, error) {
	cfg, err := ReplicationConfig(src.DSN)
	if err != nil {
		return nil, err
	}
	applyNetwork(cfg, src)
	if src.readAhead {
		setReadAhead(cfg, src.beforeRead)
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect for replication: %w", ExplainConnectError(err))
	}
	return conn, nil
}

// NewPool opens a pool of ordinary connections for catalog queries and the
// bookkeeping schema.
func NewPool(ctx context.Context, src Source, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := poolConfig(src, maxConns)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open connection pool: %w", err)
	}
	return pool, nil
}

// NewTransformPool opens the pool that evaluates SQL transforms: its
// sessions are read-only (a transform runs with pgsignal's privileges and
// may be evaluated more than once, so it must not write) and a statement
// that runs longer than a minute (the default tables[].transform_timeout,
// which the transformer sets per table) is cancelled, and its batch split,
// instead of holding the stream without a word.
func NewTransformPool(ctx context.Context, src Source) (*pgxpool.Pool, error) {
	cfg, err := poolConfig(src, 2)
	if err != nil {
		return nil, err
	}
	cfg.ConnConfig.RuntimeParams["default_transaction_read_only"] = "on"
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(defaults.TransformTimeout.Milliseconds(), 10)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open the transform connection pool: %w", err)
	}
	return pool, nil
}

// poolConfig is the configuration of a pool of ordinary connections to src
// (maxConns 0: pgxpool's default), whose sessions give values the same text
// forms as the stream's: transforms and backfill read rows as text and map
// them like decoded changes.
func poolConfig(src Source, maxConns int32) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(src.DSN)
	if err != nil {
		return nil, fmt.Errorf("parse source.dsn: %w", redactParseError(err))
	}
	applyNetwork(&cfg.ConnConfig.Config, src)
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	if cfg.ConnConfig.RuntimeParams["application_name"] == "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = "pgsignal"
	}
	for k, v := range sessionParams {
		cfg.ConnConfig.RuntimeParams[k] = v
	}
	return cfg, nil
}

// lookupThroughDialer leaves host names to Source.Dial: the far end of a
// tunnel resolves them (the database's name may exist only there).
func lookupThroughDialer(_ context.Context, host string) ([]string, error) {
	return []string{host}, nil
}

// redactParseError drops the connection string from a pgconn parse error,
// which may quote it (with its password).
func redactParseError(err error) error {
	msg, ok := pgcat.RedactParseError(err)
	if !ok {
		return err
	}
	return errors.New("invalid connection string: " + msg)
}
