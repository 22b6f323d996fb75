package check

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/internal/setupsql"
	"github.com/pgsignal/pgsignal/replication"
)

// restartFix returns how to change a setting that needs a restart, on the
// platform.
func restartFix(p setupsql.Platform, setting, value string) string {
	switch p {
	case setupsql.RDS:
		if setting == "wal_level" {
			return "set rds.logical_replication = 1 in the DB parameter group, then reboot the instance"
		}
		return fmt.Sprintf("set %s = %s in the DB parameter group, then reboot the instance", setting, value)
	case setupsql.Azure:
		return fmt.Sprintf("set the server parameter %s = %s (Azure portal or az postgres flexible-server parameter set), then restart the server", setting, value)
	case setupsql.CloudSQL:
		if setting == "wal_level" {
			return "set the database flag cloudsql.logical_decoding = on (the instance restarts)"
		}
		return fmt.Sprintf("set the database flag %s = %s (the instance restarts)", setting, value)
	}
	return fmt.Sprintf("ALTER SYSTEM SET %s = %s;  -- as a superuser, then restart PostgreSQL", setting, value)
}

// standby reports whether the server is a primary or a standby, and what
// that allows.
func (r *runner) standby(ctx context.Context, d *db) {
	if !d.standby {
		r.pass(itemRole, "primary")
		return
	}
	switch {
	case d.version < versionStandby:
		r.fail(itemRole, "a standby of PostgreSQL < 16, which cannot decode logical replication",
			"point source.dsn at the primary, or upgrade to PostgreSQL 16 or later")
	case r.cfg.Source.Mode != config.ModeReadOnly:
		r.fail(itemRole, "a standby: full mode writes its bookkeeping schema and cannot on a standby",
			"set source.mode: read-only (and create the publication on the primary with pgsignal setup), or point source.dsn at the primary")
	default:
		var feedback string
		if err := d.conn.QueryRow(ctx, `SELECT current_setting('hot_standby_feedback')`).Scan(&feedback); err != nil {
			r.queryFailed(itemRole, err)
			return
		}
		if feedback != "on" {
			r.warn(itemRole, "a standby (PostgreSQL 16+ decodes on a standby), but hot_standby_feedback is off: "+
				"the primary may remove rows the slot needs, which invalidates it",
				"on the standby: ALTER SYSTEM SET hot_standby_feedback = on; SELECT pg_reload_conf();  (and use a physical slot: primary_slot_name)")
			return
		}
		r.pass(itemRole, "a standby (PostgreSQL 16+ decodes on a standby; read-only mode)")
	}
}

// walLevel checks wal_level = logical.
func (r *runner) walLevel(ctx context.Context, d *db) {
	if d.logical {
		r.pass(itemWALLevel, "logical")
		return
	}
	var level string
	if err := d.conn.QueryRow(ctx, `SELECT current_setting('wal_level')`).Scan(&level); err != nil {
		r.queryFailed(itemWALLevel, err)
		return
	}
	fix := restartFix(d.platform, "wal_level", "logical")
	if d.standby {
		fix += "  (on the primary and on this standby)"
	}
	r.fail(itemWALLevel, level+"; logical decoding needs wal_level = logical", fix)
}

// slotCapacity checks that a replication slot is free (or ours exists).
func (r *runner) slotCapacity(ctx context.Context, d *db) {
	var used, max int
	var ours bool
	var inactive []string
	err := d.conn.QueryRow(ctx, `SELECT count(*), current_setting('max_replication_slots')::int,
  COALESCE(bool_or(slot_name = $1), false),
  COALESCE(array_agg(slot_name::text ORDER BY slot_name) FILTER (WHERE NOT active), '{}')
FROM pg_catalog.pg_replication_slots`, r.cfg.Source.Slot).Scan(&used, &max, &ours, &inactive)
	if err != nil {
		r.queryFailed(itemSlots, err)
		return
	}
	detail := fmt.Sprintf("%d of max_replication_slots = %d used", used, max)
	switch {
	case ours:
		r.pass(itemSlots, detail+fmt.Sprintf("; slot %q exists", r.cfg.Source.Slot))
	case used < max:
		r.pass(itemSlots, detail+fmt.Sprintf("; %d free", max-used))
	default:
		fix := restartFix(d.platform, "max_replication_slots", strconv.Itoa(max+1))
		if len(inactive) > 0 {
			fix += "\nor drop a slot nobody reads (inactive: " + strings.Join(inactive, ", ") + "): SELECT pg_drop_replication_slot('<name>');"
		}
		r.fail(itemSlots, detail+"; none is free for slot "+strconv.Quote(r.cfg.Source.Slot), fix)
	}
}

// walSenders checks that a WAL sender is free.
func (r *runner) walSenders(ctx context.Context, d *db) {
	var used, max int
	err := d.conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM pg_catalog.pg_stat_replication),
  current_setting('max_wal_senders')::int`).Scan(&used, &max)
	if err != nil {
		r.queryFailed(itemSenders, err)
		return
	}
	detail := fmt.Sprintf("%d of max_wal_senders = %d in use", used, max)
	if used >= max {
		r.fail(itemSenders, detail+"; none is free for pgsignal's stream", restartFix(d.platform, "max_wal_senders", strconv.Itoa(max+2)))
		return
	}
	r.pass(itemSenders, fmt.Sprintf("%s; %d free", detail, max-used))
}

// replicationPrivilege checks the REPLICATION attribute (or RDS's
// rds_replication role).
func (r *runner) replicationPrivilege(ctx context.Context, d *db) bool {
	var repl, rds bool
	err := d.conn.QueryRow(ctx, `SELECT rolreplication,
  COALESCE((SELECT pg_catalog.pg_has_role(current_user, oid, 'MEMBER') FROM pg_catalog.pg_roles WHERE rolname = 'rds_replication'), false)
FROM pg_catalog.pg_roles WHERE rolname = current_user`).Scan(&repl, &rds)
	if err != nil {
		r.queryFailed(itemReplPriv, err)
		return false
	}
	switch {
	case d.super:
		r.pass(itemReplPriv, "a superuser")
	case repl:
		r.pass(itemReplPriv, "the REPLICATION attribute")
	case rds:
		r.pass(itemReplPriv, "a member of rds_replication")
	default:
		user := pgcat.QuoteIdent(d.user)
		fix := "ALTER ROLE " + user + " WITH REPLICATION;  -- as a superuser (or pgsignal setup --apply)"
		if d.platform == setupsql.RDS {
			fix = "GRANT rds_replication TO " + user + ";  -- as the master user (or pgsignal setup --apply)"
		}
		r.fail(itemReplPriv, user+" has neither the REPLICATION attribute nor rds_replication", fix)
		return false
	}
	return true
}

// replicationConnection opens a replication connection, the way pgsignal
// streams, and identifies the system.
func (r *runner) replicationConnection(ctx context.Context, d *db) {
	cctx, cancel := context.WithTimeout(ctx, r.opts.ConnectTimeout)
	defer cancel()
	conn, err := replication.ConnectReplication(cctx, r.opts.Source)
	if err == nil {
		defer conn.Close(context.WithoutCancel(ctx))
		var sys pglogrepl.IdentifySystemResult
		sys, err = pglogrepl.IdentifySystem(cctx, conn)
		if err == nil {
			r.pass(itemReplConn, fmt.Sprintf("system identifier %s, timeline %d", sys.SystemID, sys.Timeline))
			return
		}
	}
	fix := "check that pg_hba.conf lets this user connect to this database from here, and that max_wal_senders has room"
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == pgcat.TooManyConnections {
		fix = restartFix(d.platform, "max_wal_senders", "<more>")
	}
	r.fail(itemReplConn, "cannot open a replication connection: "+err.Error(), fix)
}
