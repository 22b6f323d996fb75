package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/replication"
)

const teardownUsage = `Usage:
  pgsignal teardown [--config FILE]
  pgsignal teardown --apply [--admin-dsn DSN] [--config FILE]

Prints (or, with --apply, runs) the SQL that removes what pgsignal keeps in the
database: the replication slot (which otherwise retains WAL until the disk fills),
the publication — or only the configured tables, when it publishes other tables
too — and, in full mode, the bookkeeping schema with its dead letters and run
history. It refuses while the slot is in use: stop pgsignal first. Without
--admin-dsn, --apply connects with source.dsn.

Flags:
`

func cmdTeardown(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSetWithUsage("teardown", teardownUsage, stderr)
	path := fs.String("config", "pgsignal.yaml", "configuration file")
	apply := fs.Bool("apply", false, "run the SQL instead of printing it")
	adminDSN := fs.String("admin-dsn", "", "connection string of a user allowed to drop the objects (with --apply; default source.dsn)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !*apply && *adminDSN != "" {
		fmt.Fprintln(stderr, "pgsignal teardown: --admin-dsn is used only with --apply")
		return errUsage
	}
	cfg, err := config.LoadForDatabase(*path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var pool *pgxpool.Pool
	if *adminDSN != "" {
		pool, err = replication.NewPool(ctx, replication.Source{DSN: *adminDSN}, 2)
		if err != nil {
			return err
		}
		defer pool.Close()
	} else {
		p, closePool, err := openPool(ctx, cfg, 2)
		if err != nil {
			return err
		}
		defer closePool()
		pool = p
	}
	stmts, err := teardownSQL(ctx, pool, cfg)
	if err != nil {
		return err
	}
	if !*apply {
		fmt.Fprintln(stdout, "-- pgsignal teardown: run as a user allowed to drop these objects (or pgsignal teardown --apply)")
		for _, s := range stmts {
			fmt.Fprintln(stdout, s+";")
		}
		return nil
	}
	for _, s := range stmts {
		if _, err := pool.Exec(ctx, s); err != nil {
			return fmt.Errorf("teardown: %s: %w", s, err)
		}
		fmt.Fprintln(stdout, "done:", s)
	}
	fmt.Fprintln(stdout, "teardown done")
	return nil
}

// teardownSQL returns the statements that remove pgsignal's slot,
// publication (or its tables in it) and bookkeeping schema, as they exist
// now. It fails while the slot is active.
func teardownSQL(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config) ([]string, error) {
	var stmts []string
	si, err := pgcat.LookupSlot(ctx, pool, cfg.Source.Slot)
	switch {
	case err != nil:
		return nil, fmt.Errorf("read the slot %s: %w", cfg.Source.Slot, err)
	case !si.Exists:
	case si.Active:
		who := ""
		if si.ActivePID != 0 {
			who = fmt.Sprintf(" by process %d", si.ActivePID)
		}
		return nil, fmt.Errorf("the slot %s is in use%s: stop pgsignal (every instance) first, then run teardown again", cfg.Source.Slot, who)
	default:
		stmts = append(stmts, "SELECT pg_catalog.pg_drop_replication_slot("+pgcat.QuoteLiteral(cfg.Source.Slot)+")")
	}

	var allTables bool
	err = pool.QueryRow(ctx, `SELECT puballtables FROM pg_catalog.pg_publication WHERE pubname = $1`, cfg.Source.Publication).Scan(&allTables)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return nil, fmt.Errorf("read the publication %s: %w", cfg.Source.Publication, err)
	default:
		pub := pgcat.QuoteIdent(cfg.Source.Publication)
		others, mine, err := publicationMembers(ctx, pool, cfg)
		if err != nil {
			return nil, err
		}
		if allTables || others > 0 {
			// Shared with something pgsignal does not own: take out only
			// the configured tables.
			for _, t := range mine {
				stmts = append(stmts, "ALTER PUBLICATION "+pub+" DROP TABLE "+t)
			}
		} else {
			stmts = append(stmts, "DROP PUBLICATION "+pub)
		}
	}

	if cfg.Source.Mode != config.ModeReadOnly {
		var exists bool
		if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = $1)`, cfg.Source.Schema).Scan(&exists); err != nil {
			return nil, fmt.Errorf("read the schema %s: %w", cfg.Source.Schema, err)
		}
		if exists {
			stmts = append(stmts, "DROP SCHEMA "+pgcat.QuoteIdent(cfg.Source.Schema)+" CASCADE")
		}
	}
	if len(stmts) == 0 {
		stmts = append(stmts, "-- nothing to remove: no slot "+cfg.Source.Slot+", no publication "+cfg.Source.Publication)
	}
	return stmts, nil
}

// publicationMembers counts the publication's tables that are not
// configured (and whether it publishes whole schemas, counted as others),
// and lists the configured tables it holds, quoted.
func publicationMembers(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config) (others int, mine []string, err error) {
	configured := make([]string, len(cfg.Tables))
	for i, t := range cfg.Tables {
		configured[i] = pgcat.QualifiedName(t.Schema, t.Name)
	}
	rows, err := pool.Query(ctx, `SELECT schemaname::text, tablename::text FROM pg_catalog.pg_publication_tables WHERE pubname = $1`, cfg.Source.Publication)
	if err != nil {
		return 0, nil, fmt.Errorf("read the tables of the publication %s: %w", cfg.Source.Publication, err)
	}
	var schema, name string
	_, err = pgx.ForEachRow(rows, []any{&schema, &name}, func() error {
		q := pgcat.QualifiedName(schema, name)
		if slices.Contains(configured, q) {
			mine = append(mine, q)
		} else {
			others++
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("read the tables of the publication %s: %w", cfg.Source.Publication, err)
	}
	var schemas bool
	// pg_publication_namespace exists from PostgreSQL 15 on.
	err = pool.QueryRow(ctx, `SELECT to_regclass('pg_catalog.pg_publication_namespace') IS NOT NULL`).Scan(&schemas)
	if err == nil && schemas {
		var n int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_catalog.pg_publication_namespace pn JOIN pg_catalog.pg_publication p ON p.oid = pn.pnpubid WHERE p.pubname = $1`,
			cfg.Source.Publication).Scan(&n); err != nil {
			return 0, nil, fmt.Errorf("read the schemas of the publication %s: %w", cfg.Source.Publication, err)
		}
		others += n
	}
	return others, mine, nil
}
