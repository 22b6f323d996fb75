package check

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// writeCerts writes a CA and a server certificate for 127.0.0.1 signed by
// it, and returns their paths.
func writeCerts(t *testing.T) (caFile, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caKey, srvKey := newKey(), newKey()
	now := time.Now()
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "check test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srv := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	srvDER, err := x509.CreateCertificate(rand.Reader, srv, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.crt", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}

// The tls item reports what the session used, read from pg_stat_ssl: on
// and verified, on but unverified (a warning), off on loopback.
func TestTLSItem(t *testing.T) {
	caFile, certFile, keyFile := writeCerts(t)
	pg := pgtest.New(t, pgtest.Options{SSL: &pgtest.SSLFiles{CertFile: certFile, KeyFile: keyFile}})
	fake := startFake(t)
	base := strings.TrimSuffix(pg.DSN(""), "?sslmode=disable")
	cases := []struct {
		query  string
		status Status
		detail string
	}{
		{"?sslmode=verify-full&sslrootcert=" + caFile, Pass, "certificate and host name verified (sslmode=verify-full)"},
		{"?sslmode=verify-ca&sslrootcert=" + caFile, Pass, "certificate verified against sslrootcert, host name not checked"},
		{"?sslmode=require", Warn, "but the server's certificate is not verified"},
		{"?sslmode=disable", Pass, "off (a local connection)"},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			rep := Run(context.Background(), Options{Config: testConfig(base+c.query, fake)})
			it := find(t, rep, itemTLS)
			if it.Status != c.status || !strings.Contains(it.Detail, c.detail) {
				t.Fatalf("%+v", it)
			}
			if c.status != Pass || c.query == "?sslmode=disable" {
				return
			}
			if !strings.HasPrefix(it.Detail, "on (TLSv1.3, ") {
				t.Fatalf("detail %q", it.Detail)
			}
		})
	}

	// A certificate from another CA fails reachability with the TLS fix.
	otherCA, _, _ := writeCerts(t)
	rep := Run(context.Background(), Options{Config: testConfig(base+"?sslmode=verify-full&sslrootcert="+otherCA, fake)})
	it := find(t, rep, itemReach)
	if it.Status != Fail || !strings.Contains(it.Fix, "the server's TLS certificate was not accepted: set sslrootcert") {
		t.Fatalf("%+v", it)
	}
	if it := find(t, rep, itemTLS); it.Status != Skip {
		t.Fatalf("%+v", it)
	}
}
