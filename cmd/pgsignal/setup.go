package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/internal/setupsql"
	"github.com/pgsignal/pgsignal/replication"
)

const setupUsage = `Usage:
  pgsignal setup [--config FILE] [--user NAME] [--password-env VAR] [--platform P] [--schema-grants]
  pgsignal setup --apply --admin-dsn DSN [--config FILE] [--user NAME] [--password-env VAR] [--platform P] [--schema-grants]

Prints (or, with --apply, runs as the admin user of --admin-dsn, one statement at a
time) the idempotent SQL that prepares the database for pgsignal: the user, its
REPLICATION right, the bookkeeping schema (full mode), SELECT on the configured tables
(with --schema-grants: on everything in their schemas, now and later) and the publication.
With source.method: query only CONNECT, SELECT and the bookkeeping schema (full mode). Without --password-env a password is
generated and shown once. --platform is rds, azure, cloudsql or postgres (default
postgres; detected from the server with --apply). The admin DSN may leave its
password to PGPASSWORD or ~/.pgpass.

Flags:
`

// setupPlaceholder stands for an unset environment variable in the parts of
// the configuration setup does not use (onesignal.*, source.dsn): a valid
// UUID, so that it also passes as onesignal.app_id.
const setupPlaceholder = "00000000-0000-4000-8000-000000000000"

func cmdSetup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSetWithUsage("setup", setupUsage, stderr)
	path := fs.String("config", "pgsignal.yaml", "configuration file")
	user := fs.String("user", "", "the user pgsignal logs in as (default: source.dsn's user, else census)")
	passwordEnv := fs.String("password-env", "", "environment variable holding the user's password (default: generate one)")
	platformFlag := fs.String("platform", "", "rds, azure, cloudsql or postgres")
	apply := fs.Bool("apply", false, "run the SQL with --admin-dsn instead of printing it")
	adminDSN := fs.String("admin-dsn", "", "connection string of an admin user (with --apply)")
	schemaGrants := fs.Bool("schema-grants", false, "grant SELECT on every table and EXECUTE on every function of the tables' schemas, now and later (default: SELECT on the configured tables)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *apply && *adminDSN == "":
		fmt.Fprintln(stderr, "pgsignal setup: --apply needs --admin-dsn (a superuser, or the platform's admin user)")
		return errUsage
	case !*apply && *adminDSN != "":
		fmt.Fprintln(stderr, "pgsignal setup: --admin-dsn is used only with --apply")
		return errUsage
	case len(*user) > config.MaxIdentifierLen:
		fmt.Fprintf(stderr, "pgsignal setup: --user must be 1 to %d bytes long\n", config.MaxIdentifierLen)
		return errUsage
	}
	var platform setupsql.Platform
	if *platformFlag != "" {
		p, err := setupsql.ParsePlatform(*platformFlag)
		if err != nil {
			fmt.Fprintf(stderr, "pgsignal setup: --platform: %v\n", err)
			return errUsage
		}
		platform = p
	}
	password, fromEnv := "", *passwordEnv != ""
	if fromEnv {
		password = os.Getenv(*passwordEnv)
		if password == "" {
			fmt.Fprintf(stderr, "pgsignal setup: --password-env: the environment variable %s is not set or empty\n", *passwordEnv)
			return errUsage
		}
	}
	cfg, err := loadSetupConfig(*path, stderr)
	if err != nil {
		return err
	}
	if *user == "" {
		if *user = dsnNamedUser(cfg.Source.DSN); *user == "" {
			*user = "census"
		}
	}
	opts := setupsql.Options{
		User:          *user,
		Password:      password,
		ResetPassword: fromEnv,
		Platform:      platform,
		ReadOnly:      cfg.Source.Mode == config.ModeReadOnly,
		Schema:        cfg.Source.Schema,
		Publication:   cfg.Source.Publication,
		Slot:          cfg.Source.Slot,
		SchemaGrants:  *schemaGrants,
		Query:         cfg.Source.Method == config.MethodQuery,
	}
	for _, t := range cfg.Tables {
		opts.Tables = append(opts.Tables, setupsql.Table{Schema: t.Schema, Name: t.Name, Where: t.Where, Updates: t.EmitsUpdates(), Transform: t.Transform != ""})
	}
	if dsnUser, _ := dsnUserDB(cfg.Source.DSN); dsnUser != "" && dsnUser != *user {
		fmt.Fprintf(stderr, "pgsignal setup: note: source.dsn logs in as %s, not %s: pass --user %s or change source.dsn\n",
			pgcat.QuoteIdent(dsnUser), pgcat.QuoteIdent(*user), dsnUser)
	}
	if !*apply {
		script, err := generateScript(&opts, !fromEnv)
		if err != nil {
			return err
		}
		_, err = io.WriteString(stdout, script.SQL())
		return err
	}
	return applySetup(ctx, *adminDSN, cfg, opts, stdout)
}

// applySetup runs the setup as the admin user of dsn and reports each
// statement on stdout.
func applySetup(ctx context.Context, dsn string, cfg *config.Config, opts setupsql.Options, stdout io.Writer) error {
	pcfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// The message quotes the connection string, password included
		// when it is malformed: keep only what follows it.
		msg, ok := pgcat.RedactParseError(err)
		if !ok {
			return fmt.Errorf("parse --admin-dsn: %w", err)
		}
		return errors.New("parse --admin-dsn: " + msg)
	}
	replication.PrepareAdminConfig(&pcfg.Config)
	conn, err := pgx.ConnectConfig(ctx, pcfg)
	if err != nil {
		return fmt.Errorf("connect with --admin-dsn: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var admin, database string
	if err := conn.QueryRow(ctx, `SELECT current_user, current_database()`).Scan(&admin, &database); err != nil {
		return fmt.Errorf("read the admin session: %w", err)
	}
	if _, sourceDB := dsnUserDB(cfg.Source.DSN); sourceDB != "" && sourceDB != database {
		return fmt.Errorf("--admin-dsn connects to database %s but source.dsn to %s: grants and publications belong to one database; connect --admin-dsn to %s",
			pgcat.QuoteIdent(database), pgcat.QuoteIdent(sourceDB), pgcat.QuoteIdent(sourceDB))
	}
	how := "from --platform"
	if opts.Platform == "" {
		if opts.Platform, err = setupsql.DetectPlatform(ctx, conn); err != nil {
			return err
		}
		how = "detected"
	}
	exists, err := setupsql.RoleExists(ctx, conn, opts.User)
	if err != nil {
		return err
	}
	script, err := generateScript(&opts, opts.Password == "" && !exists)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "applying as %s to database %s (platform %s, %s)\n",
		pgcat.QuoteIdent(admin), pgcat.QuoteIdent(database), opts.Platform, how)
	applied, err := setupsql.Apply(ctx, conn, script, stdout)
	if opts.PasswordGenerated && applied > 0 {
		fmt.Fprintf(stdout, "password of %s (generated, shown only this once; store it now, e.g. as PGPASSWORD for pgsignal): %s\n",
			pgcat.QuoteIdent(opts.User), opts.Password)
	} else if exists && opts.Password == "" {
		fmt.Fprintf(stdout, "%s existed: its password is unchanged (set one with --password-env VAR)\n", pgcat.QuoteIdent(opts.User))
	}
	if len(script.Notes) > 0 {
		fmt.Fprintln(stdout, "note:")
		for _, n := range script.Notes {
			fmt.Fprintln(stdout, "  "+n)
		}
	}
	if errors.Is(err, setupsql.ErrFailed) {
		fmt.Fprintln(stdout, "setup stopped; fix the problem above and run it again (every statement is idempotent)")
		return errReported
	}
	if err != nil {
		return err
	}
	var walLevel string
	if err := conn.QueryRow(ctx, `SELECT current_setting('wal_level')`).Scan(&walLevel); err == nil && walLevel != "logical" && !opts.Query {
		fmt.Fprintf(stdout, "warning: wal_level is %s; logical decoding needs wal_level = logical, which takes a restart: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL (pgsignal check names the platform's way)\n", walLevel)
	}
	fmt.Fprintln(stdout, "setup done; check it with: pgsignal check --config FILE")
	return nil
}

// loadSetupConfig loads the configuration. Setup does not use the
// onesignal section nor source.dsn's secrets, so when the only problems are
// unset environment variables there, it loads the file again with a
// placeholder for them.
func loadSetupConfig(path string, stderr io.Writer) (*config.Config, error) {
	cfg, err := config.Load(path)
	if err == nil {
		return cfg, nil
	}
	var ve *config.ValidationError
	if !errors.As(err, &ve) {
		return nil, err
	}
	for _, p := range ve.Problems {
		if !strings.HasPrefix(p.Path, "onesignal.") && p.Path != "source.dsn" {
			return nil, err
		}
	}
	data, rerr := os.ReadFile(path)
	if rerr != nil {
		return nil, err
	}
	cfg2, rerr := config.ParseLookup(data, func(name string) (string, bool) {
		if v, ok := os.LookupEnv(name); ok {
			return v, true
		}
		return setupPlaceholder, true
	})
	if rerr != nil {
		return nil, err
	}
	used := []string{cfg2.Source.Mode, cfg2.Source.Slot, cfg2.Source.Publication, cfg2.Source.Schema}
	for _, t := range cfg2.Tables {
		used = append(used, t.Schema, t.Name)
	}
	for _, u := range used {
		if strings.Contains(u, setupPlaceholder) {
			return nil, err
		}
	}
	if strings.Contains(cfg2.Source.DSN, setupPlaceholder) {
		cfg2.Source.DSN = ""
	}
	fmt.Fprintln(stderr, "pgsignal setup: note: the onesignal settings (and source.dsn) are not used by setup and were not checked: "+
		"run pgsignal check once they are set")
	return cfg2, nil
}

// dsnUserDB returns the user and database a DSN names ("" when it cannot
// be parsed).
func dsnUserDB(dsn string) (user, database string) {
	if dsn == "" {
		return "", ""
	}
	c, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "", ""
	}
	return c.User, c.Database
}

// generatePassword returns 32 characters from 24 random bytes (URL-safe
// base64: no quote, backslash or dollar sign).
func generatePassword() (string, error) {
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate a password: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// kvUserRE finds user=... in a key=value connection string.
var kvUserRE = regexp.MustCompile(`(?:^|\s)user\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']+)`)

// dsnNamedUser returns the user a connection string names itself (URL user
// info, ?user= or user=...), "" when it leaves it to the environment.
func dsnNamedUser(dsn string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return ""
		}
		if u.User != nil && u.User.Username() != "" {
			return u.User.Username()
		}
		return u.Query().Get("user")
	}
	m := kvUserRE.FindStringSubmatch(dsn)
	if m == nil {
		return ""
	}
	v := m[1]
	if strings.HasPrefix(v, "'") {
		v = strings.NewReplacer(`\'`, "'", `\\`, `\`).Replace(v[1 : len(v)-1])
	}
	return v
}

// generateScript generates the setup script, with a new password for the
// user when newPassword is set (recorded in opts).
func generateScript(opts *setupsql.Options, newPassword bool) (*setupsql.Script, error) {
	if newPassword {
		pw, err := generatePassword()
		if err != nil {
			return nil, err
		}
		opts.Password, opts.PasswordGenerated = pw, true
	}
	return setupsql.Generate(*opts)
}
