package app

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/replication"
)

// testCA is a certificate authority made by a test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string // its certificate, PEM
}

// serialNumber returns a random certificate serial number.
func serialNumber(t *testing.T) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// newTestCA makes a CA named cn and writes its certificate into dir.
func newTestCA(t *testing.T, dir, cn string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serialNumber(t),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.ReplaceAll(cn, " ", "_")
	return &testCA{cert: cert, key: key, file: writePEM(t, dir, name+".crt", "CERTIFICATE", der)}
}

// issue makes a certificate for cn and the DNS names signed by ca, for a
// server or a client, and writes it and its key into dir.
func (ca *testCA) issue(t *testing.T, dir, cn string, dnsNames []string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serialNumber(t),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     dnsNames,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, cn+".crt", "CERTIFICATE", der), writePEM(t, dir, cn+".key", "PRIVATE KEY", keyDER)
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runError runs an App that must fail before streaming, and returns its
// error.
func runError(t *testing.T, opts Options) error {
	t.Helper()
	if err := opts.Config.Validate(); err != nil {
		t.Fatalf("config: %v", err)
	}
	if opts.Logger == nil {
		opts.Logger = zaptest.NewLogger(t)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	opts.OnStreaming = func() { t.Error("the app started streaming") }
	_, err := New(opts).Run(ctx)
	if err == nil {
		t.Fatal("Run succeeded, want an error")
	}
	if ctx.Err() != nil {
		t.Fatalf("Run did not fail within 60s: %v", err)
	}
	return err
}

// TestTLS streams over verify-full TLS with a CA made by the test, and
// checks the explanations of TLS failures.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, dir, "pgsignal test CA")
	otherCA := newTestCA(t, dir, "other CA")
	// The server's certificate names localhost only, not 127.0.0.1.
	certFile, keyFile := ca.issue(t, dir, "server", []string{"localhost"}, x509.ExtKeyUsageServerAuth)
	clientCert, clientKey := ca.issue(t, dir, "cert_user", nil, x509.ExtKeyUsageClientAuth)
	h := newHarness(t, pgtest.Options{
		SSL: &pgtest.SSLFiles{CertFile: certFile, KeyFile: keyFile, CAFile: ca.file},
		HBA: []string{
			// tls_user and cert_user get in over TLS only; cert_user with
			// its client certificate.
			"hostnossl all tls_user 127.0.0.1/32 reject",
			"hostssl all cert_user 127.0.0.1/32 cert",
			"hostssl all all 127.0.0.1/32 trust",
			"hostssl replication all 127.0.0.1/32 trust",
		},
	})
	h.exec(seedTable)
	h.exec(`CREATE ROLE tls_user LOGIN SUPERUSER REPLICATION`)
	h.exec(`CREATE ROLE cert_user LOGIN REPLICATION`)
	port := h.pg.Port()

	// verifyFull is a config reaching the server as tls_user by host name
	// with sslmode=verify-full, the TLS settings as config keys.
	verifyFull := func(host, rootCert string) *config.Config {
		c := h.config()
		c.Source.DSN = fmt.Sprintf("postgres://tls_user@%s:%d/postgres", host, port)
		c.Source.SSLMode = "verify-full"
		c.Source.SSLRootCert = rootCert
		return c
	}

	t.Run("verify-full streams", func(t *testing.T) {
		cfg := verifyFull("localhost", ca.file)
		r := h.start(cfg)
		for i := range 3 {
			h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('purchase', $1, '{"tls": true}')`, fmt.Sprintf("u%d", i))
		}
		h.waitCount(3)
		// Every connection of tls_user, the walsender included, is TLS.
		var n int
		var allSSL bool
		if err := h.db.QueryRow(t.Context(), `SELECT count(*), coalesce(bool_and(s.ssl), false)
			FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) WHERE a.usename = 'tls_user'`).Scan(&n, &allSSL); err != nil {
			t.Fatal(err)
		}
		var walsenderSSL bool
		if err := h.db.QueryRow(t.Context(), `SELECT s.ssl FROM pg_stat_replication r JOIN pg_stat_ssl s USING (pid) WHERE r.usename = 'tls_user'`).Scan(&walsenderSSL); err != nil {
			t.Fatalf("walsender of tls_user: %v", err)
		}
		if n < 2 || !allSSL || !walsenderSSL {
			t.Errorf("tls_user has %d connections, all TLS: %v, walsender TLS: %v; want >= 2, true, true", n, allSSL, walsenderSSL)
		}
		if sum := r.stop(t); sum.Delivered != 3 {
			t.Errorf("delivered %d, want 3", sum.Delivered)
		}
	})

	t.Run("wrong CA", func(t *testing.T) {
		err := runError(t, Options{Config: verifyFull("localhost", otherCA.file)})
		want := `connect to source.dsn: TLS: the server's certificate (issued by "CN=pgsignal test CA") is not signed by a CA in source.sslrootcert (the system's CAs when it is unset or "system"); ` +
			"check sslrootcert: it must hold the CA certificate that signed the server's certificate: failed to connect to `user=tls_user database=postgres`:"
		if !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error:\n%v\nwant it to start with:\n%s", err, want)
		}
	})

	t.Run("wrong host name", func(t *testing.T) {
		err := runError(t, Options{Config: verifyFull("127.0.0.1", ca.file)})
		want := "connect to source.dsn: TLS: the server's certificate is not valid for host 127.0.0.1 (it is valid for localhost); " +
			"connect with a name in the certificate, or use sslmode=verify-ca to check only that a CA in sslrootcert signed it: failed to connect to `user=tls_user database=postgres`:"
		if !strings.HasPrefix(err.Error(), want) {
			t.Errorf("error:\n%v\nwant it to start with:\n%s", err, want)
		}
	})

	// The other cases connect once, as the app's first connection does.
	identify := func(cfg *config.Config) error {
		t.Helper()
		if err := cfg.Validate(); err != nil {
			t.Fatalf("config: %v", err)
		}
		conn, err := replication.ConnectReplication(t.Context(), replication.Source{DSN: cfg.Source.DSN})
		if err != nil {
			return err
		}
		return conn.Close(t.Context())
	}
	tests := []struct {
		name string
		cfg  func() *config.Config
		// want is the start of the error, "" for success.
		want string
	}{
		{"verify-ca ignores the host name", func() *config.Config {
			c := verifyFull("127.0.0.1", ca.file)
			c.Source.SSLMode = "verify-ca"
			return c
		}, ""},
		{"verify-ca with the wrong CA", func() *config.Config {
			c := verifyFull("127.0.0.1", otherCA.file)
			c.Source.SSLMode = "verify-ca"
			return c
		}, `connect for replication: TLS: the server's certificate (issued by "CN=pgsignal test CA") is not signed by a CA in source.sslrootcert`},
		{"TLS settings in the DSN", func() *config.Config {
			c := h.config()
			c.Source.DSN = fmt.Sprintf("host=localhost port=%d user=tls_user dbname=postgres sslmode=verify-full sslrootcert='%s'", port, ca.file)
			return c
		}, ""},
		{"no TLS where the server requires it", func() *config.Config {
			c := verifyFull("127.0.0.1", "")
			c.Source.SSLMode = "disable"
			return c
		}, "connect for replication: TLS: the server accepts this connection only over TLS (a hostssl line in pg_hba.conf); set source.sslmode to verify-full (or require): failed to connect to `user=tls_user database=postgres`:"},
		{"client certificate", func() *config.Config {
			c := verifyFull("localhost", ca.file)
			c.Source.DSN = strings.Replace(c.Source.DSN, "tls_user", "cert_user", 1)
			c.Source.SSLCert, c.Source.SSLKey = clientCert, clientKey
			return c
		}, ""},
		{"client certificate missing", func() *config.Config {
			c := verifyFull("localhost", ca.file)
			c.Source.DSN = strings.Replace(c.Source.DSN, "tls_user", "cert_user", 1)
			return c
		}, "connect for replication: TLS: the server requires a client certificate for this user; set source.sslcert and source.sslkey: failed to connect to `user=cert_user database=postgres`:"},
		{"client certificate for another user", func() *config.Config {
			c := verifyFull("localhost", ca.file)
			c.Source.DSN = strings.Replace(c.Source.DSN, "tls_user", "cert_user", 1)
			other, otherKey := ca.issue(t, dir, "someone_else", nil, x509.ExtKeyUsageClientAuth)
			c.Source.SSLCert, c.Source.SSLKey = other, otherKey
			return c
		}, "connect for replication: TLS: the server did not accept the client certificate for this user: its common name must be the user name (or map to it in pg_ident.conf); check source.sslcert: failed to connect to `user=cert_user database=postgres`:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := identify(tt.cfg())
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("connect: %v", err)
			case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)):
				t.Errorf("error:\n%v\nwant it to start with:\n%s", err, tt.want)
			}
		})
	}
}
