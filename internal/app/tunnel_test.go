package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap/zaptest"
	"golang.org/x/crypto/ssh"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/internal/tunnel"
	"github.com/pgsignal/pgsignal/internal/tunnel/sshtest"
)

// tunnelDBAddr is the database's address as the DSN names it: only the
// bastion knows it (.invalid never resolves), so the app reaches the
// database through the tunnel or not at all.
const tunnelDBAddr = "pg.pgsignal.invalid:5432"

// bastion is an in-process SSH server forwarding tunnelDBAddr to a
// throwaway PostgreSQL, and the source.ssh section to reach it.
type bastion struct {
	srv     *sshtest.Server
	ssh     config.SSH
	hostKey ssh.Signer
	client  ssh.PublicKey
	targets map[string]string
}

func newBastion(t *testing.T, h *harness) *bastion {
	t.Helper()
	signer, keyPEM, err := sshtest.NewKey("")
	if err != nil {
		t.Fatal(err)
	}
	b := &bastion{client: signer.PublicKey(), targets: map[string]string{tunnelDBAddr: "127.0.0.1:" + strconv.Itoa(h.pg.Port())}}
	b.start(t, "")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	known := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(known, []byte(b.srv.KnownHostsLine()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.ssh = config.SSH{Host: b.srv.Host(), Port: b.srv.Port(), User: "tunnel", PrivateKeyFile: keyFile, KnownHostsFile: known}
	return b
}

// start starts the server, on addr when it is not "" (a restart).
func (b *bastion) start(t *testing.T, addr string) {
	t.Helper()
	srv, err := sshtest.Start(sshtest.Options{Addr: addr, HostKey: b.hostKey, User: "tunnel", AuthorizedKey: b.client, Targets: b.targets})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	b.srv, b.hostKey = srv, srv.HostKey()
}

// tunnelConfig returns h's config with the database reached through b.
func tunnelConfig(h *harness, b *bastion) *config.Config {
	c := h.config()
	c.Source.DSN = "postgres://postgres@" + tunnelDBAddr + "/postgres?sslmode=disable"
	s := b.ssh
	c.Source.SSH = &s
	return c
}

// startWith is harness.start with a dialer.
func startWith(h *harness, cfg *config.Config, dial pgconn.DialFunc) *running {
	h.t.Helper()
	if err := cfg.Validate(); err != nil {
		h.t.Fatalf("config: %v", err)
	}
	streaming := make(chan struct{})
	r := &running{done: make(chan struct{})}
	r.app = New(Options{Config: cfg, Logger: zaptest.NewLogger(h.t), Dial: dial, OnStreaming: func() { close(streaming) }})
	go func() {
		defer close(r.done)
		r.sum, r.err = r.app.Run(context.Background())
	}()
	select {
	case <-streaming:
	case <-r.done:
		h.t.Fatalf("app stopped before streaming: %v", r.err)
	case <-time.After(30 * time.Second):
		h.t.Fatal("app did not start streaming in 30s")
	}
	return r
}

func newTunnel(t *testing.T, cfg *config.Config) *tunnel.Tunnel {
	t.Helper()
	tun, err := tunnel.New(*cfg.Source.SSH, zaptest.NewLogger(t).Named("tunnel"))
	if err != nil {
		t.Fatalf("tunnel: %v", err)
	}
	t.Cleanup(func() {
		if err := tun.Close(); err != nil {
			t.Errorf("close tunnel: %v", err)
		}
	})
	return tun
}

// TestTunnelStreams streams through an SSH bastion, which is then killed and
// restarted: the tunnel is rebuilt and streaming goes on.
func TestTunnelStreams(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	b := newBastion(t, h)
	cfg := tunnelConfig(h, b)
	tun := newTunnel(t, cfg)
	insert := func(from, to int) {
		for i := from; i < to; i++ {
			h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('purchase', $1, '{}')`, fmt.Sprintf("u%d", i))
		}
	}

	r := startWith(h, cfg, tun.Dial)
	insert(0, 3)
	h.waitCount(3)
	// The pool and the replication connection both went through the
	// bastion, to the name only it knows.
	if n := b.srv.Forwarded(); n < 2 {
		t.Errorf("bastion forwarded %d connections, want the pool's and the replication connection (>= 2)", n)
	}
	for _, a := range b.srv.Requested() {
		if a != tunnelDBAddr {
			t.Errorf("bastion asked to forward to %s, want only %s", a, tunnelDBAddr)
		}
	}

	// Kill the bastion and bring it back on the same port.
	addr := b.srv.Addr()
	if err := b.srv.Close(); err != nil {
		t.Fatal(err)
	}
	insert(3, 5)
	time.Sleep(200 * time.Millisecond)
	b.start(t, addr)
	insert(5, 7)
	h.waitCount(7)
	if n := b.srv.Forwarded(); n < 1 {
		t.Errorf("restarted bastion forwarded %d connections, want the new replication connection", n)
	}
	sum := r.stop(t)
	if sum.Delivered != 7 || h.fake.Duplicates() != 0 {
		t.Errorf("delivered %d (%d duplicates), want 7 (0)", sum.Delivered, h.fake.Duplicates())
	}
}

// TestTunnelWrongHostKey fails to start when the bastion's host key is not
// the one in known_hosts_file.
func TestTunnelWrongHostKey(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	b := newBastion(t, h)
	impostor, _, err := sshtest.NewKey("")
	if err != nil {
		t.Fatal(err)
	}
	b.hostKey = impostor
	addr := b.srv.Addr()
	if err := b.srv.Close(); err != nil {
		t.Fatal(err)
	}
	b.start(t, addr) // same address, another host key
	cfg := tunnelConfig(h, b)
	tun := newTunnel(t, cfg)

	err = runError(t, Options{Config: cfg, Dial: tun.Dial})
	want := "ssh: host key of " + addr + " (ssh-ed25519 " + ssh.FingerprintSHA256(impostor.PublicKey()) + ") does not match known_hosts_file " +
		cfg.Source.SSH.KnownHostsFile + ": possible man-in-the-middle; if the bastion's key was changed on purpose, replace its line in known_hosts_file"
	if !strings.HasPrefix(err.Error(), "connect to source.dsn: ") || !strings.Contains(err.Error(), want) {
		t.Errorf("error:\n%v\nwant it to contain:\n%s", err, want)
	}
	if n := b.srv.Forwarded(); n != 0 {
		t.Errorf("bastion forwarded %d connections for a client that refused it", n)
	}
}
