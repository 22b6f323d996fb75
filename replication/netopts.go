package replication

import (
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
