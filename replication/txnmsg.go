package replication

import (
	"encoding/binary"
	"time"
)

// pgEpochMicros is 2000-01-01 00:00:00 UTC, PostgreSQL's epoch, in
// microseconds since the Unix epoch.
const pgEpochMicros = 946684800 * 1_000_000

// pgTime converts a PostgreSQL timestamp (microseconds since 2000-01-01) as
// pglogrepl does.
func pgTime(micros int64) time.Time { return time.Unix(0, (pgEpochMicros+micros)*1000) }

// parseBegin decodes a pgoutput Begin message ('B', final LSN, commit time,
// xid) without the allocations of pglogrepl.Parse: one per transaction.
func parseBegin(wal []byte) (finalLSN uint64, commitTime time.Time, xid uint32, err error) {
	if len(wal) < 21 {
		return 0, time.Time{}, 0, errShortMessage
	}
	return binary.BigEndian.Uint64(wal[1:9]), pgTime(int64(binary.BigEndian.Uint64(wal[9:17]))),
		binary.BigEndian.Uint32(wal[17:21]), nil
}

// parseCommit decodes a pgoutput Commit message ('C', flags, commit LSN, end
// LSN, commit time) without allocating.
func parseCommit(wal []byte) (commitLSN, endLSN uint64, err error) {
	if len(wal) < 26 {
		return 0, 0, errShortMessage
	}
	return binary.BigEndian.Uint64(wal[2:10]), binary.BigEndian.Uint64(wal[10:18]), nil
}
