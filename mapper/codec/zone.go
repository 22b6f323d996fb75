package codec

import "time"

// InZone returns the instant at which the wall clock of zone loc shows the
// date and clock of wall (read as they are, whatever wall's own location),
// as PostgreSQL's `timestamp AT TIME ZONE loc` does: a local time that a
// change of offset skips (spring forward) is read with the offset in force
// before the change, and a local time that it repeats (fall back) as the
// later of the two instants. Time zone rules alone cannot settle those
// times, and time.Date leaves them unspecified; following PostgreSQL makes
// an event's timestamp the instant the database itself sees (the backfill
// window, a query with AT TIME ZONE).
//
// The algorithm is PostgreSQL's DetermineTimeZoneOffset
// (src/backend/utils/adt/datetime.c): find the first offset change after
// the local time read as UTC less one day, compute the instant with the
// offset before and the one after that change, keep the one on its side
// of the change, and when both or neither are, keep the later one. Like
// PostgreSQL it works on whole seconds and adds the fraction afterwards.
func InZone(wall time.Time, loc *time.Location) time.Time {
	y, mo, d := wall.Date()
	h, mi, s := wall.Clock()
	ns := wall.Nanosecond()
	if loc == time.UTC || loc == nil {
		return time.Date(y, mo, d, h, mi, s, ns, time.UTC)
	}
	local := time.Date(y, mo, d, h, mi, s, 0, time.UTC).Unix()
	const day = 24 * 60 * 60
	prev := time.Unix(local-day, 0).In(loc)
	_, beforeOff := prev.Zone()
	_, end := prev.ZoneBounds()
	if end.IsZero() {
		// No change of offset after prev (a zone without DST).
		return time.Unix(local-int64(beforeOff), int64(ns)).In(loc)
	}
	_, afterOff := end.In(loc).Zone()
	boundary := end.Unix()
	before := local - int64(beforeOff)
	after := local - int64(afterOff)
	var at int64
	switch {
	case before < boundary && after < boundary:
		at = before
	case before > boundary && after >= boundary:
		at = after
	case before > after: // skipped: spring forward
		at = before
	default: // repeated: fall back
		at = after
	}
	return time.Unix(at, int64(ns)).In(loc)
}
