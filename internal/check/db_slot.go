package check

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/internal/setupsql"
	"github.com/pgsignal/pgsignal/replication"
)

// slot checks the replication slot: kind, database, activity, WAL and lag.
func (r *runner) slot(ctx context.Context, d *db) {
	slotName := r.cfg.Source.Slot
	lit := pgcat.QuoteLiteral(slotName)
	// What `pgsignal run` decides about a lost slot, in its words.
	loss, err := replication.StoredSlotLoss(ctx, d.pool, r.cfg.Source.Schema, slotName, r.cfg.Source.Mode != config.ModeReadOnly)
	if err != nil {
		r.queryFailed(itemSlot, err)
		return
	}
	if loss != nil {
		r.slotLost(*loss)
		return
	}
	si, err := pgcat.LookupSlot(ctx, d.conn, slotName)
	typ, plugin, database, confirmed, status := si.SlotType, si.Plugin, si.Database, si.ConfirmedFlushLSN, si.WALStatus
	active, lag := si.Active, si.LagBytes
	if err == nil && !si.Exists {
		if !d.logical {
			r.skip(itemSlot, fmt.Sprintf("slot %q does not exist and cannot be created while wal_level is not logical", slotName))
			return
		}
		detail := fmt.Sprintf("slot %q does not exist yet; pgsignal creates it at its first start", slotName)
		if r.cfg.Source.Mode == config.ModeReadOnly {
			detail += " (to stream the inserts made before then, create it now: " + setupsql.SlotSQL(slotName) + ")"
		}
		r.pass(itemSlot, detail)
		return
	}
	if err != nil {
		r.queryFailed(itemSlot, err)
		return
	}
	drop := "SELECT pg_drop_replication_slot(" + lit + ");"
	switch {
	case typ != "logical" || plugin != "pgoutput":
		r.fail(itemSlot, fmt.Sprintf("slot %q is a %s slot with plugin %q; pgsignal needs a logical pgoutput slot", slotName, typ, plugin),
			"choose another source.slot, or drop this one if nothing uses it: "+drop)
		return
	case database != d.database:
		r.fail(itemSlot, fmt.Sprintf("slot %q belongs to database %q, not %q", slotName, database, d.database),
			"choose another source.slot (a slot belongs to one database)")
		return
	case status == "lost":
		r.fail(itemSlot, fmt.Sprintf("slot %q is invalidated (wal_status = lost): the WAL it needed was removed and events were lost", slotName),
			"drop and recreate it, then restart pgsignal: "+drop)
		return
	}
	parts := []string{fmt.Sprintf("slot %q exists (logical, pgoutput)", slotName)}
	if status != "" {
		parts = append(parts, "wal_status "+status)
	}
	if lag != nil {
		parts = append(parts, fmt.Sprintf("confirmed up to %s, %s behind", confirmed, bytesText(*lag)))
	}
	detail := strings.Join(parts, ", ")
	switch {
	case active:
		p := "?"
		if si.ActivePID != 0 {
			p = strconv.Itoa(int(si.ActivePID))
		}
		r.warn(itemSlot, detail+"; it is active (pid "+p+"): another client reads it, and pgsignal waits until it stops", "")
	case status == "unreserved":
		r.warn(itemSlot, detail+"; it is about to lose WAL it needs (past max_slot_wal_keep_size): start pgsignal soon", "")
	default:
		r.pass(itemSlot, detail+", inactive")
	}
}

// slotLost reports a lost slot as `pgsignal run` treats it: it refuses to
// start, unless source.on_slot_lost is recreate.
func (r *runner) slotLost(loss replication.SlotLoss) {
	if r.cfg.Source.OnSlotLost == config.SlotLostRecreate {
		r.warn(itemSlot, loss.Problem()+"; pgsignal run recreates the slot and goes on from now (source.on_slot_lost: recreate)", "")
		return
	}
	r.fail(itemSlot, loss.Problem()+"; pgsignal run refuses to start", loss.Fix())
}

// keepSize gives advice on max_slot_wal_keep_size.
func (r *runner) keepSize(ctx context.Context, d *db) {
	if d.version < 130000 {
		r.skip(itemKeepSize, "PostgreSQL < 13 has no max_slot_wal_keep_size: watch the disk while pgsignal is down")
		return
	}
	var v string
	if err := d.conn.QueryRow(ctx, `SELECT current_setting('max_slot_wal_keep_size')`).Scan(&v); err != nil {
		r.queryFailed(itemKeepSize, err)
		return
	}
	if v == "-1" {
		fix := "ALTER SYSTEM SET max_slot_wal_keep_size = '50GB'; SELECT pg_reload_conf();"
		switch d.platform {
		case setupsql.RDS:
			fix = "set max_slot_wal_keep_size in the DB parameter group (in MB)"
		case setupsql.Azure, setupsql.CloudSQL:
			fix = "set the max_slot_wal_keep_size server parameter (flag)"
		}
		r.warn(itemKeepSize, "-1 (no limit): while pgsignal is stopped, its slot keeps WAL until the disk fills",
			fix+"  -- more than the WAL written while pgsignal may be down; a slot further behind is invalidated (its events lost)")
		return
	}
	r.pass(itemKeepSize, v+": a slot further behind is invalidated rather than filling the disk")
}

// bytesText formats a byte count.
func bytesText(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	f, suffix := float64(n), ""
	for _, s := range []string{"kB", "MB", "GB", "TB"} {
		f /= unit
		suffix = s
		if f < unit {
			break
		}
	}
	return fmt.Sprintf("%.1f %s (%d bytes)", f, suffix, n)
}
