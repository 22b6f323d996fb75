package replication

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgsignal/pgsignal/internal/pgcat"
)

// ExplainConnectError returns err, the failure of a connection to the
// database, wrapped with what went wrong and how to fix it when it is a TLS
// problem: a server certificate signed by a CA not in sslrootcert, a
// certificate that does not name the host, an expired certificate, a
// missing or refused client certificate, a server without TLS, or a server
// that accepts only TLS. Other errors, nil and errors already explained are
// returned unchanged. The wrapped error keeps err in its chain (errors.Is
// and errors.As still see it).
//
// The explanation names the connection settings to change, never their
// values, and quotes only what the server's certificate says.
func ExplainConnectError(err error) error {
	if err == nil {
		return nil
	}
	var done *explainedError
	if errors.As(err, &done) {
		return err
	}
	if msg := explainTLS(err); msg != "" {
		return &explainedError{msg: msg, err: err}
	}
	if msg := explainNoPassword(err); msg != "" {
		return &explainedError{msg: msg, err: err}
	}
	if pgconn.Timeout(err) {
		return &explainedError{msg: "the database did not answer within the connect timeout (connect_timeout in source.dsn, in seconds; default 10): check the dsn's host and port, and that no firewall or proxy swallows the connection", err: err}
	}
	return err
}

// explainNoPassword explains a refused password when none was supplied:
// the dsn had none, PGPASSWORD was unset and no .pgpass line matched.
func explainNoPassword(err error) string {
	var ce *pgconn.ConnectError
	var pgErr *pgconn.PgError
	if !errors.As(err, &ce) || ce.Config == nil || ce.Config.Password != "" || !errors.As(err, &pgErr) || pgErr.Code != pgcat.InvalidPassword {
		return ""
	}
	return "no password was supplied (source.dsn has none, PGPASSWORD is not set and no ~/.pgpass or PGPASSFILE line matches): " +
		"set PGPASSWORD, add a .pgpass line, or write the password in the dsn (percent-encoded in a URL)"
}

// explainedError is a connection error with its explanation in front.
type explainedError struct {
	msg string
	err error
}

func (e *explainedError) Error() string { return e.msg + ": " + e.err.Error() }
func (e *explainedError) Unwrap() error { return e.err }

// explainTLS returns the explanation of a TLS failure, or "".
func explainTLS(err error) string {
	var (
		hostErr      x509.HostnameError
		authErr      x509.UnknownAuthorityError
		invalidErr   x509.CertificateInvalidError
		verifyErr    *tls.CertificateVerificationError
		recordErr    tls.RecordHeaderError
		alertErr     tls.AlertError
		opErr        *net.OpError
		pgErr        *pgconn.PgError
		sslOffServer = "server refused TLS connection" // pgconn's errors.New text
	)
	switch {
	case errors.As(err, &hostErr):
		return fmt.Sprintf("TLS: the server's certificate is not valid for host %s (%s); connect with a name in the certificate, or use sslmode=verify-ca to check only that a CA in sslrootcert signed it",
			hostErr.Host, certNames(hostErr.Certificate))
	case errors.As(err, &authErr):
		issuer := ""
		if authErr.Cert != nil {
			issuer = fmt.Sprintf(" (issued by %q)", authErr.Cert.Issuer.String())
		}
		return fmt.Sprintf("TLS: the server's certificate%s is not signed by a CA in source.sslrootcert (the system's CAs when it is unset or \"system\"); check sslrootcert: it must hold the CA certificate that signed the server's certificate", issuer)
	case errors.As(err, &invalidErr):
		if invalidErr.Reason == x509.Expired {
			return "TLS: the server's certificate has expired or is not valid yet; renew it on the server, or check this machine's clock"
		}
		return "TLS: the server's certificate cannot be used to verify the server; check the server's certificate and source.sslrootcert"
	case errors.As(err, &verifyErr):
		return "TLS: the server's certificate could not be verified; check the server's certificate and source.sslrootcert"
	case errors.As(err, &alertErr), errors.As(err, &opErr) && opErr.Op == "remote error":
		return "TLS: the server refused the TLS handshake; if it asks for a client certificate, check source.sslcert and source.sslkey (the certificate must be signed by a CA in the server's ssl_ca_file and, for cert authentication, name the user)"
	case errors.As(err, &recordErr):
		return "TLS: the server did not answer in TLS; check that source.dsn's host and port are those of PostgreSQL"
	case errors.As(err, &pgErr) && pgErr.Code == pgcat.InvalidAuthorization && (strings.Contains(pgErr.Message, "no encryption") || strings.Contains(pgErr.Message, "SSL off")):
		return "TLS: the server accepts this connection only over TLS (a hostssl line in pg_hba.conf); set source.sslmode to verify-full (or require)"
	case errors.As(err, &pgErr) && pgErr.Code == pgcat.InvalidAuthorization && strings.Contains(pgErr.Message, "requires a valid client certificate"):
		return "TLS: the server requires a client certificate for this user; set source.sslcert and source.sslkey"
	case errors.As(err, &pgErr) && pgErr.Code == pgcat.InvalidAuthorization && strings.Contains(pgErr.Message, "certificate authentication failed"):
		return "TLS: the server did not accept the client certificate for this user: its common name must be the user name (or map to it in pg_ident.conf); check source.sslcert"
	case strings.Contains(err.Error(), sslOffServer):
		return "TLS: the server does not accept TLS (SSL is not enabled on the server); turn ssl on in postgresql.conf, or set source.sslmode to prefer or disable if the network is trusted"
	}
	return ""
}

// certNames describes the names a certificate is valid for.
func certNames(cert *x509.Certificate) string {
	if cert == nil {
		return "the certificate is missing"
	}
	var names []string
	names = append(names, cert.DNSNames...)
	for _, ip := range cert.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 {
		return "it names no host in its subject alternative names; PostgreSQL clients need them"
	}
	return "it is valid for " + strings.Join(names, ", ")
}

// slotCreateError explains why CREATE_REPLICATION_SLOT failed, with the
// fix for the common causes (SQLSTATE): wal_level not logical (55000), no
// free slot (53400), no REPLICATION attribute (42501). what names the
// attempt, e.g. `create replication slot "pgsignal"`.
func slotCreateError(what string, err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case pgcat.ObjectNotInPrerequisiteState:
			if strings.Contains(pgErr.Message, "wal_level") {
				return permanent("%s: logical decoding needs wal_level = logical: run ALTER SYSTEM SET wal_level = logical; as a superuser, then restart PostgreSQL (RDS: rds.logical_replication = 1 in the parameter group; Cloud SQL: the flag cloudsql.logical_decoding = on; pgsignal check names the fix for the platform): %w", what, err)
			}
		case pgcat.ConfigurationLimitExceeded:
			return permanent("%s: every replication slot is in use: raise max_replication_slots (then restart PostgreSQL) or drop an unused slot (SELECT slot_name, active FROM pg_replication_slots): %w", what, err)
		case pgcat.InsufficientPrivilege:
			return permanent("%s: the user lacks the REPLICATION attribute: ALTER ROLE ... WITH REPLICATION; as a superuser (rds_replication on RDS), or pgsignal setup --apply: %w", what, err)
		}
	}
	return permanent("%s (the user needs the REPLICATION attribute and a free slot in max_replication_slots): %w", what, err)
}
