package cdc

// LegacyKeys marks the commits whose events keep the idempotency keys that
// pgsignal versions before timeline-aware and output-independent keys gave
// them: those committed before this version first ran for the slot
// (Before, the server's WAL position then) on the timeline it ran on then
// (Timeline) or an ancestor. An event of such a commit may have been
// accepted by OneSignal and not confirmed by the earlier version when it
// was upgraded; it is sent again under the key it had, so OneSignal drops
// it. Later commits, and commits at the same LSNs on a timeline that
// branched off later (a point-in-time restore), get the current keys.
// The zero value covers no commit.
type LegacyKeys struct {
	Before   LSN
	Timeline uint32
}

// Covers reports whether the commit at lsn, written by timeline, keeps
// its legacy keys.
func (l LegacyKeys) Covers(lsn LSN, timeline uint32) bool {
	return lsn < l.Before && timeline <= max(l.Timeline, 1)
}

// KeyTimeline returns the timeline that goes into the idempotency key of
// the commit at lsn written by timeline: 1 (no timeline in the key, as
// earlier versions made it) when l covers the commit.
func (l LegacyKeys) KeyTimeline(lsn LSN, timeline uint32) uint32 {
	if l.Covers(lsn, timeline) {
		return 1
	}
	return timeline
}
