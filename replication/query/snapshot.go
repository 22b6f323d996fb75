package query

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// snapshot is what a poll's REPEATABLE READ snapshot says about the
// transactions of the primary (a hot standby's snapshots hold the
// primary's transaction ids): every id below xmin has ended, every id at
// or above xmax had not ended when it was taken, and xip lists those in
// between that were still in progress.
type snapshot struct {
	xmin, xmax uint64
	xip        []uint64
	// at is the time of the snapshot on the primary's clock: now() on a
	// primary and on a standby that has replayed all the WAL it received,
	// else the commit time of the last replayed transaction (it does not
	// move while replay stands still).
	at time.Time
	// standby is set for a hot standby's snapshot, whose xip is always
	// empty (PostgreSQL keeps a standby's running transactions among the
	// subtransactions, which the snapshot functions do not show): only
	// xmin tells what still runs.
	standby bool
}

// parseSnapshot parses txid_current_snapshot()'s (and
// pg_current_snapshot()'s) text form, "xmin:xmax:xip,xip,...".
func parseSnapshot(s string) (snapshot, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return snapshot{}, fmt.Errorf("parse snapshot %q: want xmin:xmax:xip_list", s)
	}
	var sn snapshot
	var err error
	if sn.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return snapshot{}, fmt.Errorf("parse snapshot %q: xmin: %w", s, err)
	}
	if sn.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return snapshot{}, fmt.Errorf("parse snapshot %q: xmax: %w", s, err)
	}
	if parts[2] != "" {
		for _, x := range strings.Split(parts[2], ",") {
			id, err := strconv.ParseUint(x, 10, 64)
			if err != nil {
				return snapshot{}, fmt.Errorf("parse snapshot %q: xip: %w", s, err)
			}
			sn.xip = append(sn.xip, id)
		}
	}
	slices.Sort(sn.xip)
	return sn, nil
}

// running reports whether transaction x, which had an id before this
// snapshot's xmax, was still in progress.
func (sn snapshot) running(x uint64) bool {
	_, ok := slices.BinarySearch(sn.xip, x)
	return ok
}

// horizon is a point up to which a poll had read each table (upto: the
// highest cursor value seen), waiting to become final.
//
// A cursor value is allocated when a row is inserted and becomes visible
// when its transaction commits, so values up to upto that were not visible
// yet belong to transactions in progress at the poll (or rolled back).
// The horizon becomes final once every such transaction has ended. Those
// that had a transaction id at the poll are in the xip of a snapshot taken
// later (a transaction takes its cursor value in the statement that gives
// it an id, so its id is known at most a moment after the value); those
// whose id was above every finished transaction's at that snapshot appear
// in the xip of one more snapshot taken later still. The guard is both
// lists; the horizon is final when none of its transactions runs in the
// current snapshot, and the rows they committed have been read in it.
//
// On a hot standby the snapshots list no transaction ids, so the guard is
// the second snapshot's xmax instead: final once the current snapshot's
// xmin has passed it (every transaction that had an id by then ended),
// which a long transaction anywhere on the primary delays.
type horizon struct {
	upto  []int64 // by table
	at    time.Time
	stage int // 0: waits for the first later snapshot, 1: for the second, 2: guard complete
	qxmax uint64
	qat   time.Time
	guard []uint64
	// bound is the second snapshot's xmax; standby is set when either
	// guarding snapshot came from a standby (the guard list is empty).
	bound   uint64
	standby bool
}

// advance moves h's guard on with the snapshot c of a later poll; delay
// is how much later each of the two guarding snapshots must be.
func (h *horizon) advance(c snapshot, delay time.Duration) {
	switch {
	case h.stage == 0 && !c.at.Before(h.at.Add(delay)):
		h.guard = append([]uint64(nil), c.xip...)
		h.qxmax, h.qat, h.stage = c.xmax, c.at, 1
		h.standby = c.standby
	case h.stage == 1 && !c.at.Before(h.qat.Add(delay)):
		for _, x := range c.xip {
			if x >= h.qxmax {
				h.guard = append(h.guard, x)
			}
		}
		h.bound, h.stage = c.xmax, 2
		h.standby = h.standby || c.standby
	}
}

// final reports whether every transaction of h's guard has ended in c.
func (h *horizon) final(c snapshot) bool {
	if h.stage < 2 {
		return false
	}
	if h.standby || c.standby {
		return c.xmin >= h.bound
	}
	for _, x := range h.guard {
		if x >= c.xmin && (x >= c.xmax || c.running(x)) {
			return false
		}
	}
	return true
}
