package tunnel

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"
	"golang.org/x/crypto/ssh"
)

// Timeouts of the connection to the bastion.
const (
	// connectTimeout bounds the TCP connection and SSH handshake.
	connectTimeout = 30 * time.Second
	// keepaliveInterval is how often an idle client asks the bastion for a
	// reply; one unanswered for keepaliveInterval drops the client.
	keepaliveInterval = 15 * time.Second
)

// ErrClosed is returned by Dial after Close.
var ErrClosed = errors.New("ssh tunnel: closed")

// Tunnel dials database connections through an SSH bastion. Its methods are
// safe for concurrent use.
type Tunnel struct {
	addr      string // the bastion's host:port
	user      string
	known     string // known_hosts_file; "" when host keys are not checked
	config    *ssh.ClientConfig
	log       *zap.Logger
	keepalive time.Duration

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	closed  bool
	client  *ssh.Client
	pending *pendingClient
	conns   map[net.Conn]struct{} // the tunnel ends of open connections
}

// pendingClient is a connection to the bastion in progress, shared by the
// Dials waiting for it.
type pendingClient struct {
	done   chan struct{}
	client *ssh.Client
	err    error
}

// Config is the bastion every database connection is tunnelled through
// (the configuration's source.ssh). It holds no secret, only where to find
// them.
type Config struct {
	// Host is the bastion's host name or IP address.
	Host string
	// Port is the bastion's SSH port (22 unless the configuration says otherwise).
	Port int
	// User is the user to log in to the bastion as.
	User string
	// PrivateKeyFile is the file holding the private key (OpenSSH or PEM).
	// Exactly one of PrivateKeyFile and PrivateKeyEnv is set.
	PrivateKeyFile string
	// PrivateKeyEnv is the name of the environment variable holding the
	// private key.
	PrivateKeyEnv string
	// PassphraseEnv, when set, is the name of the environment variable
	// holding the passphrase of an encrypted private key.
	PassphraseEnv string
	// KnownHostsFile is an OpenSSH known_hosts file holding the bastion's
	// host key. Required unless InsecureIgnoreHostKey is set.
	KnownHostsFile string
	// InsecureIgnoreHostKey skips the verification of the bastion's host
	// key, which lets a man-in-the-middle read the database traffic.
	InsecureIgnoreHostKey bool
}

// Address returns the bastion's "host:port".
func (s Config) Address() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

var _ pgconn.DialFunc = (*Tunnel)(nil).Dial

// New returns a Tunnel through the bastion of cfg, which must have passed
// config validation. It reads the private key and the known_hosts file but
// does not connect; the first Dial does. With cfg.InsecureIgnoreHostKey it
// logs a warning. Its errors never contain the key or the passphrase.
func New(cfg Config, log *zap.Logger) (*Tunnel, error) {
	if log == nil {
		log = zap.NewNop()
	}
	signer, err := loadSigner(cfg)
	if err != nil {
		return nil, err
	}
	addr := cfg.Address()
	cc := &ssh.ClientConfig{User: cfg.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}}
	if cfg.InsecureIgnoreHostKey {
		log.Warn("source.ssh.insecure_ignore_host_key is true: the bastion's host key is not verified, so a man-in-the-middle could read and change the database traffic; set known_hosts_file instead",
			zap.String("bastion", addr))
		cc.HostKeyCallback = insecureCallback(log)
	} else {
		cb, algos, err := knownHostsCallback(cfg.KnownHostsFile, addr)
		if err != nil {
			return nil, fmt.Errorf("ssh tunnel: %w", err)
		}
		cc.HostKeyCallback, cc.HostKeyAlgorithms = cb, algos
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Tunnel{
		addr: addr, user: cfg.User, known: cfg.KnownHostsFile, config: cc, log: log, keepalive: keepaliveInterval,
		ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{},
	}, nil
}

// loadSigner reads and parses the private key of cfg.
func loadSigner(cfg Config) (ssh.Signer, error) {
	var pem []byte
	var from string
	switch {
	case cfg.PrivateKeyFile != "":
		from = "source.ssh.private_key_file " + cfg.PrivateKeyFile
		b, err := os.ReadFile(cfg.PrivateKeyFile)
		if err != nil {
			// os errors name the file, never its content.
			return nil, fmt.Errorf("ssh tunnel: read the private key: %w", err)
		}
		pem = b
	case cfg.PrivateKeyEnv != "":
		from = "$" + cfg.PrivateKeyEnv
		v := os.Getenv(cfg.PrivateKeyEnv)
		if v == "" {
			return nil, fmt.Errorf("ssh tunnel: environment variable %s (source.ssh.private_key_env) is not set; export it with the private key", cfg.PrivateKeyEnv)
		}
		if !strings.Contains(v, "\n") && strings.Contains(v, `\n`) {
			// A key squeezed onto one line, as env files often have it.
			v = strings.ReplaceAll(v, `\n`, "\n")
		}
		pem = []byte(v)
	default:
		return nil, errors.New("ssh tunnel: no private key: set source.ssh.private_key_file or private_key_env")
	}
	signer, err := ssh.ParsePrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	switch {
	case err == nil:
		return signer, nil
	case errors.As(err, &missing):
		if cfg.PassphraseEnv == "" {
			return nil, fmt.Errorf("ssh tunnel: the private key in %s is encrypted; set source.ssh.passphrase_env to the name of an environment variable holding its passphrase", from)
		}
		pass := os.Getenv(cfg.PassphraseEnv)
		if pass == "" {
			return nil, fmt.Errorf("ssh tunnel: environment variable %s (source.ssh.passphrase_env) is not set; export it with the passphrase of the private key", cfg.PassphraseEnv)
		}
		signer, err = ssh.ParsePrivateKeyWithPassphrase(pem, []byte(pass))
		if errors.Is(err, x509.IncorrectPasswordError) {
			return nil, fmt.Errorf("ssh tunnel: the passphrase in $%s does not decrypt the private key in %s", cfg.PassphraseEnv, from)
		}
		if err != nil {
			return nil, fmt.Errorf("ssh tunnel: the private key in %s cannot be decrypted: %s", from, keyError(err))
		}
		return signer, nil
	default:
		return nil, fmt.Errorf("ssh tunnel: the private key in %s cannot be read: %s; it must be an OpenSSH or PEM private key", from, keyError(err))
	}
}

// keyError describes a key parsing error. The library's messages name the
// problem, never the key; anything else is replaced, to be sure.
func keyError(err error) string {
	msg := err.Error()
	if strings.HasPrefix(msg, "ssh: ") || strings.HasPrefix(msg, "x509: ") || strings.HasPrefix(msg, "asn1: ") {
		return msg
	}
	return "unrecognised key format"
}

// Dial opens a connection to addr ("host:port", resolved by the bastion)
// through the bastion. It is a pgconn.DialFunc. It connects to the bastion
// first when there is no client, or when the client has dropped; Dials at
// the same time share that connection. ctx bounds the wait; once Dial has
// returned, ctx no longer matters.
func (t *Tunnel) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("ssh tunnel: cannot forward a %s connection to %s; give source.dsn a host name and port", network, addr)
	}
	for attempt := 1; ; attempt++ {
		c, err := t.sshClient(ctx)
		if err != nil {
			return nil, err
		}
		ch, err := c.DialContext(ctx, "tcp", addr)
		if err == nil {
			return t.bridge(ch, addr)
		}
		var rejected *ssh.OpenChannelError
		if errors.As(err, &rejected) {
			return nil, fmt.Errorf("ssh tunnel: bastion %s could not connect to %s (%s); check source.dsn's host and port, which are resolved and reached from the bastion, and that the bastion allows TCP forwarding",
				t.addr, addr, rejected.Message)
		}
		if ctx.Err() != nil || attempt == 2 {
			return nil, fmt.Errorf("ssh tunnel: open a channel to %s through %s: %w", addr, t.addr, err)
		}
		// The client is broken though it has not noticed yet: start over
		// with a new one.
		t.drop(c, err)
	}
}

// sshClient returns the current client, connecting when there is none.
func (t *Tunnel) sshClient(ctx context.Context) (*ssh.Client, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil, ErrClosed
	}
	if t.client != nil {
		c := t.client
		t.mu.Unlock()
		return c, nil
	}
	p := t.pending
	if p == nil {
		p = &pendingClient{done: make(chan struct{})}
		t.pending = p
		t.wg.Add(1)
		go t.connect(p)
	}
	t.mu.Unlock()
	select {
	case <-p.done:
		return p.client, p.err
	case <-ctx.Done():
		return nil, fmt.Errorf("ssh tunnel: connect to bastion %s: %w", t.addr, ctx.Err())
	}
}

// connect connects to the bastion for p, in the background so that no
// single Dial's ctx decides for the others.
func (t *Tunnel) connect(p *pendingClient) {
	defer t.wg.Done()
	ctx, cancel := context.WithTimeout(t.ctx, connectTimeout)
	defer cancel()
	c, err := t.handshake(ctx)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pending = nil
	if err == nil && t.closed {
		_ = c.Close()
		c, err = nil, ErrClosed
	}
	if err == nil {
		t.client = c
		t.wg.Add(1)
		go t.watch(c)
		t.log.Info("ssh tunnel: connected to the bastion", zap.String("bastion", t.addr), zap.String("user", t.user))
	}
	p.client, p.err = c, err
	close(p.done)
}

// handshake opens a TCP connection to the bastion and logs in.
func (t *Tunnel) handshake(ctx context.Context) (*ssh.Client, error) {
	d := net.Dialer{KeepAlive: keepaliveInterval}
	conn, err := d.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, fmt.Errorf("ssh tunnel: connect to bastion %s: %w", t.addr, err)
	}
	// The handshake does not take a ctx: close the connection to end it.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	sc, chans, reqs, err := ssh.NewClientConn(conn, t.addr, t.config)
	if err != nil {
		_ = conn.Close()
		return nil, t.explain(ctx, err)
	}
	if !stop() {
		_ = sc.Close()
		return nil, fmt.Errorf("ssh tunnel: connect to bastion %s: %w", t.addr, ctx.Err())
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

// explain turns a handshake failure into an error that says what to fix.
func (t *Tunnel) explain(ctx context.Context, err error) error {
	var hk *HostKeyError
	var neg *ssh.AlgorithmNegotiationError
	switch {
	case errors.As(err, &hk):
		return hk
	case errors.As(err, &neg) && neg.What == "host key" && t.known != "":
		// Only keys of the types in known_hosts_file were asked for.
		return fmt.Errorf("ssh: %s has no host key of the types known_hosts_file %s holds for it (%s; it offers %s): possible man-in-the-middle; "+
			"if the bastion's keys were changed on purpose, replace its lines in known_hosts_file (ssh-keyscan %s, after checking the fingerprints)",
			t.addr, t.known, strings.Join(neg.SupportedAlgorithms, ", "), strings.Join(neg.RequestedAlgorithms, ", "), keyscanArgs(t.addr))
	case ctx.Err() != nil:
		return fmt.Errorf("ssh tunnel: handshake with bastion %s: %w", t.addr, ctx.Err())
	case strings.Contains(err.Error(), "unable to authenticate"):
		// x/crypto/ssh has no error type for this.
		return fmt.Errorf("ssh tunnel: bastion %s refused the private key for user %q; check source.ssh.user and that the key's public half is in that user's authorized_keys on the bastion: %w", t.addr, t.user, err)
	}
	return fmt.Errorf("ssh tunnel: handshake with bastion %s: %w", t.addr, err)
}

// watch waits for client c to end, sending keepalives meanwhile, and then
// forgets it so that the next Dial connects again.
func (t *Tunnel) watch(c *ssh.Client) {
	defer t.wg.Done()
	ended := make(chan error, 1)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		ended <- c.Wait()
	}()
	tick := time.NewTicker(t.keepalive)
	defer tick.Stop()
	for {
		select {
		case err := <-ended:
			t.drop(c, err)
			return
		case <-tick.C:
			if !t.ping(c, ended) {
				t.log.Warn("ssh tunnel: the bastion did not answer a keepalive; dropping the connection", zap.String("bastion", t.addr))
				_ = c.Close()
			}
		}
	}
}

// ping sends a keepalive request and reports whether it was answered in
// time. A reply of any kind counts.
func (t *Tunnel) ping(c *ssh.Client, ended chan error) bool {
	replied := make(chan error, 1)
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		_, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
		replied <- err
	}()
	timer := time.NewTimer(t.keepalive)
	defer timer.Stop()
	select {
	case err := <-replied:
		return err == nil
	case err := <-ended:
		ended <- err // for watch
		return true
	case <-timer.C:
		return false
	}
}

// drop forgets c, which failed with err, if it is the current client, and
// closes it.
func (t *Tunnel) drop(c *ssh.Client, err error) {
	t.mu.Lock()
	current := t.client == c
	if current {
		t.client = nil
	}
	t.mu.Unlock()
	_ = c.Close()
	if current {
		t.log.Warn("ssh tunnel: lost the connection to the bastion; the next database connection rebuilds it",
			zap.String("bastion", t.addr), zap.Error(err))
	}
}

// Close closes the client and every connection opened through it, and
// waits for the tunnel's goroutines. Dial fails with ErrClosed afterwards.
func (t *Tunnel) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	c := t.client
	t.client = nil
	conns := make([]net.Conn, 0, len(t.conns))
	for conn := range t.conns {
		conns = append(conns, conn)
	}
	t.mu.Unlock()
	t.cancel()
	var err error
	if c != nil {
		if cerr := c.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("ssh tunnel: close: %w", cerr)
		}
	}
	for _, conn := range conns {
		_ = conn.Close()
	}
	t.wg.Wait()
	return err
}
