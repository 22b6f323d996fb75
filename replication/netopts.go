package replication

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// DefaultConnectTimeout bounds how long a new database connection may take
// (TCP, TLS, start-up and authentication) when the dsn sets no
// connect_timeout: a host that accepts TCP and never answers must not hang
// pgsignal.
const DefaultConnectTimeout = 10 * time.Second

// DefaultTCPUserTimeout is the TCP_USER_TIMEOUT of database sockets when
// Source.ReceiveTimeout is not set: how long sent data may stay
// unacknowledged before the kernel drops the connection.
const DefaultTCPUserTimeout = 2 * time.Minute

// TCP keepalive probes: the first after tcpKeepAliveIdle of silence, then
// every tcpKeepAliveInterval. They keep NAT and firewall state alive and,
// with TCP_USER_TIMEOUT, end a connection whose peer vanished.
const (
	tcpKeepAliveIdle     = 30 * time.Second
	tcpKeepAliveInterval = 10 * time.Second
	tcpKeepAliveCount    = 3
)

// applyNetwork gives cfg a connect timeout (DefaultConnectTimeout unless
// the dsn's connect_timeout set one) and, for direct connections, a dialer
// with TCP keepalives and TCP_USER_TIMEOUT. A tunnel's dialer (src.Dial)
// is kept as it is.
func applyNetwork(cfg *pgconn.Config, src Source) {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	prev := cfg.AfterConnect
	cfg.AfterConnect = func(ctx context.Context, c *pgconn.PgConn) error {
		if prev != nil {
			if err := prev(ctx, c); err != nil {
				return err
			}
		}
		return rawBytesOnSQLASCII(ctx, c)
	}
	if src.Dial != nil {
		cfg.DialFunc = src.Dial
		cfg.LookupFunc = lookupThroughDialer
		return
	}
	userTimeout := src.ReceiveTimeout
	if userTimeout <= 0 {
		userTimeout = DefaultTCPUserTimeout
	}
	d := &net.Dialer{
		Timeout: cfg.ConnectTimeout,
		KeepAliveConfig: net.KeepAliveConfig{
			Enable: true, Idle: tcpKeepAliveIdle, Interval: tcpKeepAliveInterval, Count: tcpKeepAliveCount,
		},
		Control: func(network, _ string, c syscall.RawConn) error {
			if network != "tcp" && network != "tcp4" && network != "tcp6" {
				return nil // a Unix socket
			}
			var serr error
			if err := c.Control(func(fd uintptr) { serr = setTCPUserTimeout(fd, userTimeout) }); err != nil {
				return err
			}
			return serr
		},
	}
	cfg.DialFunc = d.DialContext
}

// PrepareAdminConfig gives a connection made outside Source (pgsignal setup's
// --admin-dsn) the same connect timeout, TCP settings and client_encoding
// as pgsignal's own connections.
func PrepareAdminConfig(cfg *pgconn.Config) {
	applyNetwork(cfg, Source{})
	cfg.RuntimeParams["client_encoding"] = "UTF8"
}

// rawBytesOnSQLASCII sets client_encoding SQL_ASCII on a connection to a
// SQL_ASCII database. There the server cannot convert text to UTF-8: with
// client_encoding UTF8 it refuses to send a row holding bytes that are not
// UTF-8 (22021), and one such row would stop the stream for good. Passed
// through as they are, such values reach the mapper, which makes the row a
// dead letter that keeps the bytes.
func rawBytesOnSQLASCII(ctx context.Context, c *pgconn.PgConn) error {
	if c.ParameterStatus("server_encoding") != "SQL_ASCII" || c.ParameterStatus("client_encoding") == "SQL_ASCII" {
		return nil
	}
	if _, err := c.Exec(ctx, "SET client_encoding TO 'SQL_ASCII'").ReadAll(); err != nil {
		return fmt.Errorf("set client_encoding SQL_ASCII for a SQL_ASCII database: %w", err)
	}
	return nil
}
