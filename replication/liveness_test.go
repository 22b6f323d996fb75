package replication

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestReceiveTimeoutDefault(t *testing.T) {
	for _, tt := range []struct{ configured, wst, want time.Duration }{
		{0, 60 * time.Second, 120 * time.Second},
		{0, 3 * time.Second, 10 * time.Second},
		{0, 0, DefaultTCPUserTimeout},
		{5 * time.Second, 60 * time.Second, 5 * time.Second},
	} {
		if got := receiveTimeout(tt.configured, tt.wst); got != tt.want {
			t.Errorf("receiveTimeout(%v, %v) = %v, want %v", tt.configured, tt.wst, got, tt.want)
		}
	}
}

func TestApplyNetworkConnectTimeout(t *testing.T) {
	for dsn, want := range map[string]time.Duration{
		"postgres://u@127.0.0.1:1/db":                   DefaultConnectTimeout,
		"postgres://u@127.0.0.1:1/db?connect_timeout=3": 3 * time.Second,
		"host=127.0.0.1 port=1 connect_timeout=25":      25 * time.Second,
	} {
		cfg, err := pgconn.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		applyNetwork(cfg, Source{})
		if cfg.ConnectTimeout != want {
			t.Errorf("%s: connect timeout %v, want %v", dsn, cfg.ConnectTimeout, want)
		}
	}
	rc, err := ReplicationConfig("postgres://u@127.0.0.1:1/db")
	if err != nil {
		t.Fatal(err)
	}
	if rc.RuntimeParams["client_encoding"] != "UTF8" {
		t.Errorf("replication client_encoding %q, want UTF8", rc.RuntimeParams["client_encoding"])
	}
	pc, err := poolConfig(Source{DSN: "postgres://u@127.0.0.1:1/db?client_encoding=LATIN1"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	if pc.ConnConfig.RuntimeParams["client_encoding"] != "UTF8" {
		t.Errorf("pool client_encoding %q, want UTF8", pc.ConnConfig.RuntimeParams["client_encoding"])
	}
}

// dialSocket dials a local listener with the dialer applyNetwork installs
// and returns the client's socket.
func dialSocket(t *testing.T, src Source) *net.TCPConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	cfg, err := pgconn.ParseConfig("postgres://u@" + ln.Addr().String() + "/db")
	if err != nil {
		t.Fatal(err)
	}
	applyNetwork(cfg, src)
	c, err := cfg.DialFunc(context.Background(), "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}
