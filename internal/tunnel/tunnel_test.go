package tunnel

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/ssh"

	"github.com/pgsignal/pgsignal/internal/tunnel/sshtest"
)

// echoServer starts a TCP server that echoes what it reads, and returns its
// address.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
				_ = c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// fixture is a bastion and the configuration to reach it.
type fixture struct {
	server *sshtest.Server
	cfg    Config
	dir    string
}

// newFixture starts a bastion accepting a new key for user "tunnel", and
// writes the key and a known_hosts file holding the bastion's key.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	signer, keyPEM, err := sshtest.NewKey("")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sshtest.Start(sshtest.Options{User: "tunnel", AuthorizedKey: signer.PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	dir := t.TempDir()
	keyFile := writeFile(t, dir, "id_ed25519", string(keyPEM))
	known := writeFile(t, dir, "known_hosts", srv.KnownHostsLine()+"\n")
	return &fixture{
		server: srv,
		dir:    dir,
		cfg: Config{
			Host: srv.Host(), Port: srv.Port(), User: "tunnel",
			PrivateKeyFile: keyFile, KnownHostsFile: known,
		},
	}
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// newTunnel builds a tunnel and closes it at the end of the test.
func newTunnel(t *testing.T, cfg Config, log *zap.Logger) *Tunnel {
	t.Helper()
	if log == nil {
		log = zaptest.NewLogger(t)
	}
	tun, err := New(cfg, log)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := tun.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return tun
}

// echo writes msg to c and reads it back.
func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatalf("SetDeadline: %v", err)
	}
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("read %q, want %q", buf, msg)
	}
}

func TestDial(t *testing.T) {
	target := echoServer(t)
	f := newFixture(t)
	tun := newTunnel(t, f.cfg, nil)
	ctx := t.Context()

	c, err := tun.Dial(ctx, "tcp", target)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	echo(t, c, "hello through the bastion")
	if got := c.RemoteAddr(); got.Network() != "tcp" || got.String() != target {
		t.Errorf("RemoteAddr = %s %s, want tcp %s (pgconn dials it again for cancel requests)", got.Network(), got, target)
	}

	// Deadlines work, and a read that timed out loses nothing.
	if err := c.SetReadDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	var ne net.Error
	if _, err := c.Read(make([]byte, 1)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read past the deadline = %v, want a timeout", err)
	}
	echo(t, c, "still there")

	// Concurrent Dials share one SSH connection.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := tun.Dial(ctx, "tcp", target)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			msg := "conn " + strconv.Itoa(i)
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(c, msg); err != nil {
				errs <- err
				return
			}
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
				errs <- errors.New("bad echo: " + string(buf))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := f.server.Logins(); n != 1 {
		t.Errorf("bastion logins = %d, want 1 shared client", n)
	}
	if n := f.server.Forwarded(); n != 9 {
		t.Errorf("forwarded channels = %d, want 9", n)
	}
}

func TestDialTargetRefused(t *testing.T) {
	f := newFixture(t)
	tun := newTunnel(t, f.cfg, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	_, err = tun.Dial(t.Context(), "tcp", closed)
	want := "ssh tunnel: bastion " + f.server.Addr() + " could not connect to " + closed + " (connect failed: "
	if err == nil || !strings.HasPrefix(err.Error(), want) ||
		!strings.HasSuffix(err.Error(), "; check source.dsn's host and port, which are resolved and reached from the bastion, and that the bastion allows TCP forwarding") {
		t.Errorf("Dial to a closed port = %v\nwant %s...", err, want)
	}
	if _, err := tun.Dial(t.Context(), "unix", "/tmp/.s.PGSQL.5432"); err == nil ||
		err.Error() != "ssh tunnel: cannot forward a unix connection to /tmp/.s.PGSQL.5432; give source.dsn a host name and port" {
		t.Errorf("Dial unix = %v", err)
	}
}

func TestHostKeyRefused(t *testing.T) {
	target := echoServer(t)
	f := newFixture(t)
	other, _, err := sshtest.NewKey("")
	if err != nil {
		t.Fatal(err)
	}
	addr := f.server.Addr()
	offered := "ssh-ed25519 " + ssh.FingerprintSHA256(f.server.HostKey().PublicKey())
	tests := []struct {
		name  string
		known string
		want  string
	}{
		{"another key for the bastion", "# the bastion\n[" + f.server.Host() + "]:" + strconv.Itoa(f.server.Port()) + " " + string(ssh.MarshalAuthorizedKey(other.PublicKey())),
			"ssh: host key of " + addr + " (" + offered + ") does not match known_hosts_file KNOWN: possible man-in-the-middle; " +
				"if the bastion's key was changed on purpose, replace its line in known_hosts_file (ssh-keyscan -p " + strconv.Itoa(f.server.Port()) + " " + f.server.Host() + ", after checking the fingerprint)"},
		{"bastion not in the file", "other.example.com " + string(ssh.MarshalAuthorizedKey(other.PublicKey())),
			"ssh: " + addr + " is not in known_hosts_file KNOWN (it offered " + offered + "); add its line with ssh-keyscan -p " + strconv.Itoa(f.server.Port()) + " " + f.server.Host() + " >> KNOWN, after checking the fingerprint"},
		{"key revoked", "@revoked * " + string(ssh.MarshalAuthorizedKey(f.server.HostKey().PublicKey())) + f.server.KnownHostsLine() + "\n",
			"ssh: host key of " + addr + " (" + offered + ") is marked @revoked in known_hosts_file KNOWN: refusing to connect; the bastion must use another key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := f.cfg
			cfg.KnownHostsFile = writeFile(t, t.TempDir(), "known_hosts", tt.known)
			tun := newTunnel(t, cfg, nil)
			_, err := tun.Dial(t.Context(), "tcp", target)
			want := strings.ReplaceAll(tt.want, "KNOWN", cfg.KnownHostsFile)
			if err == nil || err.Error() != want {
				t.Errorf("Dial = %v\nwant %s", err, want)
			}
			var hk *HostKeyError
			if !errors.As(err, &hk) {
				t.Errorf("error %T is not a *HostKeyError", err)
			}
		})
	}
	if n := f.server.Forwarded(); n != 0 {
		t.Errorf("forwarded %d channels for refused clients", n)
	}
}

func TestInsecureIgnoreHostKey(t *testing.T) {
	target := echoServer(t)
	f := newFixture(t)
	cfg := f.cfg
	cfg.KnownHostsFile = ""
	cfg.InsecureIgnoreHostKey = true
	core, logs := observer.New(zapcore.InfoLevel)
	tun := newTunnel(t, cfg, zap.New(core))

	warnings := logs.FilterLevelExact(zapcore.WarnLevel).All()
	if len(warnings) != 1 || !strings.HasPrefix(warnings[0].Message, "source.ssh.insecure_ignore_host_key is true: the bastion's host key is not verified, so a man-in-the-middle could read and change the database traffic") {
		t.Errorf("warnings at New = %v, want the insecure_ignore_host_key warning", warnings)
	}
	c, err := tun.Dial(t.Context(), "tcp", target)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	echo(t, c, "insecure but working")
	accepted := logs.FilterMessage("ssh: accepted the bastion's host key without verification").All()
	if len(accepted) != 1 || accepted[0].ContextMap()["fingerprint"] != ssh.FingerprintSHA256(f.server.HostKey().PublicKey()) {
		t.Errorf("accepted-key log = %v, want one with the fingerprint", accepted)
	}

	// A second start warns again.
	newTunnel(t, cfg, zap.New(core))
	if n := len(logs.FilterLevelExact(zapcore.WarnLevel).All()); n != 2 {
		t.Errorf("%d warnings after two starts, want 2", n)
	}
}

func TestReconnectAfterBastionRestart(t *testing.T) {
	target := echoServer(t)
	f := newFixture(t)
	core, logs := observer.New(zapcore.InfoLevel)
	tun := newTunnel(t, f.cfg, zap.New(core))
	ctx := t.Context()

	c, err := tun.Dial(ctx, "tcp", target)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	echo(t, c, "before")

	// Kill the bastion: the open connection ends, and Dial fails while it
	// is down.
	addr, hostKey, authorized := f.server.Addr(), f.server.HostKey(), mustSigner(t, f.cfg.PrivateKeyFile).PublicKey()
	if err := f.server.Close(); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Errorf("Read after the bastion died = %v, want io.EOF", err)
	}
	c.Close()
	if _, err := tun.Dial(ctx, "tcp", target); err == nil {
		t.Fatal("Dial with the bastion down succeeded")
	}

	// Restart it on the same port: the next Dial reconnects.
	srv, err := sshtest.Start(sshtest.Options{Addr: addr, HostKey: hostKey, User: "tunnel", AuthorizedKey: authorized})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c, err = tun.Dial(ctx, "tcp", target)
	if err != nil {
		t.Fatalf("Dial after the restart: %v", err)
	}
	defer c.Close()
	echo(t, c, "after")
	if srv.Logins() != 1 || srv.Forwarded() != 1 {
		t.Errorf("restarted bastion: %d logins, %d forwarded; want 1, 1", srv.Logins(), srv.Forwarded())
	}
	if n := logs.FilterMessage("ssh tunnel: lost the connection to the bastion; the next database connection rebuilds it").Len(); n != 1 {
		t.Errorf("%d lost-connection warnings, want 1", n)
	}
}

// TestReconnectBeforeNoticed drops the client without the tunnel having
// seen it end: Dial must retry with a new client.
func TestReconnectBeforeNoticed(t *testing.T) {
	target := echoServer(t)
	f := newFixture(t)
	tun := newTunnel(t, f.cfg, nil)
	c, err := tun.Dial(t.Context(), "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	tun.mu.Lock()
	client := tun.client
	tun.mu.Unlock()
	// Close the underlying client directly; the watcher may or may not
	// have noticed by the time of the next Dial.
	_ = client.Close()
	c, err = tun.Dial(t.Context(), "tcp", target)
	if err != nil {
		t.Fatalf("Dial after the client died: %v", err)
	}
	defer c.Close()
	echo(t, c, "again")
}

func mustSigner(t *testing.T, file string) ssh.Signer {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestClose(t *testing.T) {
	target := echoServer(t)
	f := newFixture(t)
	tun, err := New(f.cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	c, err := tun.Dial(t.Context(), "tcp", target)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- tun.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close with an open connection did not return")
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("a connection outlived Close")
	}
	c.Close()
	if _, err := tun.Dial(t.Context(), "tcp", target); !errors.Is(err, ErrClosed) {
		t.Errorf("Dial after Close = %v, want ErrClosed", err)
	}
	if err := tun.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestDialContext(t *testing.T) {
	// A bastion that accepts TCP but never speaks SSH: Dial gives up with
	// its ctx, and the connection attempt ends at Close.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	f := newFixture(t)
	cfg := f.cfg
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	cfg.Host = host
	cfg.Port, _ = strconv.Atoi(port)
	cfg.KnownHostsFile, cfg.InsecureIgnoreHostKey = "", true
	tun := newTunnel(t, cfg, zap.NewNop())
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err = tun.Dial(ctx, "tcp", "db:5432")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.HasPrefix(err.Error(), "ssh tunnel: connect to bastion "+ln.Addr().String()+": ") {
		t.Errorf("Dial = %v, want the ctx's deadline", err)
	}
}

func TestKeys(t *testing.T) {
	const passphrase = "correct-horse-PASSPHRASE"
	signer, plainPEM, err := sshtest.NewKey("")
	if err != nil {
		t.Fatal(err)
	}
	encSigner, encPEM, err := sshtest.NewKey(passphrase)
	if err != nil {
		t.Fatal(err)
	}
	target := echoServer(t)
	dir := t.TempDir()
	for _, k := range []ssh.Signer{signer, encSigner} {
		srv, err := sshtest.Start(sshtest.Options{AuthorizedKey: k.PublicKey()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = srv.Close() })
		if k == signer {
			f := Config{Host: srv.Host(), Port: srv.Port(), User: "u", KnownHostsFile: writeFile(t, dir, "kh_plain", srv.KnownHostsLine()+"\n")}
			// The key from an environment variable, newlines escaped as
			// env files have them.
			t.Setenv("PGSIGNAL_TEST_SSH_KEY", strings.ReplaceAll(strings.TrimSpace(string(plainPEM)), "\n", `\n`))
			f.PrivateKeyEnv = "PGSIGNAL_TEST_SSH_KEY"
			tun := newTunnel(t, f, nil)
			c, err := tun.Dial(t.Context(), "tcp", target)
			if err != nil {
				t.Fatalf("Dial with the key from the environment: %v", err)
			}
			echo(t, c, "env key")
			c.Close()
			continue
		}
		keyFile := writeFile(t, dir, "id_encrypted", string(encPEM))
		base := Config{Host: srv.Host(), Port: srv.Port(), User: "u", PrivateKeyFile: keyFile,
			KnownHostsFile: writeFile(t, dir, "kh_enc", srv.KnownHostsLine()+"\n")}

		t.Setenv("PGSIGNAL_TEST_PASSPHRASE", passphrase)
		ok := base
		ok.PassphraseEnv = "PGSIGNAL_TEST_PASSPHRASE"
		tun := newTunnel(t, ok, nil)
		c, err := tun.Dial(t.Context(), "tcp", target)
		if err != nil {
			t.Fatalf("Dial with an encrypted key: %v", err)
		}
		echo(t, c, "encrypted key")
		c.Close()
	}

	t.Setenv("PGSIGNAL_TEST_WRONG_PASSPHRASE", "wrong-PASSPHRASE-value")
	t.Setenv("PGSIGNAL_TEST_EMPTY", "")
	t.Setenv("PGSIGNAL_TEST_GARBAGE", "not a key at all SECRETGARBAGE")
	encFile := filepath.Join(dir, "id_encrypted")
	known := filepath.Join(dir, "kh_enc")
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"encrypted key without passphrase_env", Config{PrivateKeyFile: encFile},
			"ssh tunnel: the private key in source.ssh.private_key_file " + encFile + " is encrypted; set source.ssh.passphrase_env to the name of an environment variable holding its passphrase"},
		{"wrong passphrase", Config{PrivateKeyFile: encFile, PassphraseEnv: "PGSIGNAL_TEST_WRONG_PASSPHRASE"},
			"ssh tunnel: the passphrase in $PGSIGNAL_TEST_WRONG_PASSPHRASE does not decrypt the private key in source.ssh.private_key_file " + encFile},
		{"passphrase variable empty", Config{PrivateKeyFile: encFile, PassphraseEnv: "PGSIGNAL_TEST_EMPTY"},
			"ssh tunnel: environment variable PGSIGNAL_TEST_EMPTY (source.ssh.passphrase_env) is not set; export it with the passphrase of the private key"},
		{"key variable empty", Config{PrivateKeyEnv: "PGSIGNAL_TEST_EMPTY"},
			"ssh tunnel: environment variable PGSIGNAL_TEST_EMPTY (source.ssh.private_key_env) is not set; export it with the private key"},
		{"not a key", Config{PrivateKeyEnv: "PGSIGNAL_TEST_GARBAGE"},
			"ssh tunnel: the private key in $PGSIGNAL_TEST_GARBAGE cannot be read: ssh: no key found; it must be an OpenSSH or PEM private key"},
		{"missing key file", Config{PrivateKeyFile: filepath.Join(dir, "nope")},
			"ssh tunnel: read the private key: open " + filepath.Join(dir, "nope") + ": no such file or directory"},
		{"missing known_hosts", Config{PrivateKeyFile: filepath.Join(dir, "id_plain"), KnownHostsFile: filepath.Join(dir, "nope")},
			"ssh tunnel: read known_hosts_file: open " + filepath.Join(dir, "nope") + ": no such file or directory"},
	}
	writeFile(t, dir, "id_plain", string(plainPEM))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Host, cfg.Port, cfg.User = "127.0.0.1", 22, "u"
			if cfg.KnownHostsFile == "" {
				cfg.KnownHostsFile = known
			}
			_, err := New(cfg, zap.NewNop())
			if err == nil || err.Error() != tt.want {
				t.Errorf("New = %v\nwant %s", err, tt.want)
			}
			for _, secret := range []string{passphrase, "wrong-PASSPHRASE-value", "SECRETGARBAGE", string(encPEM[40:80]), string(plainPEM[40:80])} {
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Errorf("error contains a secret: %v", err)
				}
			}
		})
	}
}

func TestKeyRefusedByBastion(t *testing.T) {
	target := echoServer(t)
	f := newFixture(t)
	cfg := f.cfg
	cfg.User = "intruder"
	tun := newTunnel(t, cfg, nil)
	_, err := tun.Dial(t.Context(), "tcp", target)
	want := `ssh tunnel: bastion ` + f.server.Addr() + ` refused the private key for user "intruder"; check source.ssh.user and that the key's public half is in that user's authorized_keys on the bastion: ssh: handshake failed: ssh: unable to authenticate`
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("Dial = %v\nwant %s...", err, want)
	}
}

// TestHostKeyTypeChanged: known_hosts_file has an ed25519 key for the
// bastion, which now offers only ECDSA: refused like a mismatch.
func TestHostKeyTypeChanged(t *testing.T) {
	target := echoServer(t)
	f := newFixture(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.NewSignerFromKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	addr := f.server.Addr()
	if err := f.server.Close(); err != nil {
		t.Fatal(err)
	}
	srv, err := sshtest.Start(sshtest.Options{Addr: addr, HostKey: hostKey, AuthorizedKey: mustSigner(t, f.cfg.PrivateKeyFile).PublicKey()})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tun := newTunnel(t, f.cfg, nil)
	_, err = tun.Dial(t.Context(), "tcp", target)
	want := "ssh: " + addr + " has no host key of the types known_hosts_file " + f.cfg.KnownHostsFile + " holds for it (ssh-ed25519; it offers ecdsa-sha2-nistp256): possible man-in-the-middle; " +
		"if the bastion's keys were changed on purpose, replace its lines in known_hosts_file (ssh-keyscan -p " + strconv.Itoa(srv.Port()) + " 127.0.0.1, after checking the fingerprints)"
	if err == nil || err.Error() != want {
		t.Errorf("Dial = %v\nwant %s", err, want)
	}
}
