package cdc

import (
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// LSN is a PostgreSQL write-ahead log position.
type LSN uint64

// String formats the LSN the way PostgreSQL does (e.g. "16/B374D848").
func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l)) }

// ParseLSN parses PostgreSQL's "XXX/XXX" form.
func ParseLSN(s string) (LSN, error) {
	a, b, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("parse LSN %q: want XXX/XXX", s)
	}
	hi, err1 := strconv.ParseUint(a, 16, 32)
	lo, err2 := strconv.ParseUint(b, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse LSN %q: want two hexadecimal numbers XXX/XXX", s)
	}
	return LSN(hi<<32 | lo), nil
}

// Position identifies one row change in the stream: the commit LSN of its
// transaction and its ordinal (0-based) among the published changes of that
// transaction. Positions compare in commit order.
type Position struct {
	CommitLSN LSN
	Ordinal   uint32
}

// Less reports whether p comes before q.
func (p Position) Less(q Position) bool {
	if p.CommitLSN != q.CommitLSN {
		return p.CommitLSN < q.CommitLSN
	}
	return p.Ordinal < q.Ordinal
}

// String formats the position as "LSN#ordinal".
func (p Position) String() string { return fmt.Sprintf("%s#%d", p.CommitLSN, p.Ordinal) }

// Event is one OneSignal custom event, ready to send.
//
// JSON is the complete serialized event object exactly as it goes on the wire
// (name, external_id, timestamp, idempotency_key, properties). It is encoded
// once, by the mapper, so that the size limit is checked against the real
// bytes and the sink only concatenates.
type Event struct {
	// Seq is the process-local sequence number assigned by the checkpoint
	// tracker; it is what acknowledgements refer to.
	Seq uint64
	// Pos is the row's position in the stream.
	Pos Position
	// Table is the qualified source table ("schema.table").
	Table string
	// Name is the event name.
	Name string
	// ExternalID is the OneSignal external_id of the user.
	ExternalID string
	// IdempotencyKey is the deterministic UUID sent with the event.
	IdempotencyKey string
	// CommitTime is the commit time of the source transaction, used to
	// measure commit-to-accepted latency.
	CommitTime time.Time
	// Timeline is the timeline that wrote the event's commit, set by the
	// stream as it submits the event; 0 for an event that did not come from
	// the stream (a backfill). The delivery ledger keys what it records by it.
	Timeline uint32
	// JSON is the serialized event object.
	JSON []byte
	// Row is the source row as a JSON object, kept only to be written to a
	// dead letter; it may be nil.
	Row []byte
	// Reject, when not empty, says why the row could not become an event:
	// the sink writes it straight to the dead letters instead of sending it.
	Reject string
	// Backfill marks an event read by a backfill: history asked for
	// explicitly, which sink.max_event_age does not apply to.
	Backfill bool
}

// Size is the number of bytes the event accounts for in queues.
func (e *Event) Size() int { return len(e.JSON) + len(e.Row) + 128 }

// DeadLetter is an event (or a row that could not become one) that will not be
// delivered, with the reason.
type DeadLetter struct {
	Pos            Position
	Table          string
	IdempotencyKey string
	// Event is the serialized event, or nil when the row never became one.
	Event []byte
	// Row is the source row as a JSON object, when known.
	Row []byte
	// Reason says why the event was not delivered, in words a person can act on.
	Reason   string
	Attempts int
	// FirstFailure and LastFailure bound the delivery attempts.
	FirstFailure time.Time
	LastFailure  time.Time
}

// DeadLetterKeySQL is the last column of the unique index of the
// bookkeeping table dead_letters, (slot, commit_lsn, ordinal, key): one
// letter per event, and a row a transform turned into several events has
// one position and several keys.
const DeadLetterKeySQL = `coalesce(idempotency_key, '00000000-0000-0000-0000-000000000000'::uuid)`

// keyNamespace is the UUID namespace of pgsignal idempotency keys.
var keyNamespace = [16]byte{0x6b, 0x1f, 0x3c, 0x52, 0x8e, 0x4d, 0x4a, 0x0b, 0x9c, 0x1e, 0x57, 0x2d, 0x0f, 0x61, 0x93, 0xa4}

// IdempotencyKey returns the deterministic UUIDv5 of (system identifier, slot,
// commit LSN, ordinal) of a row committed on timeline 1:
// TimelineIdempotencyKey(systemID, slot, 1, pos).
func IdempotencyKey(systemID, slot string, pos Position) string {
	return TimelineIdempotencyKey(systemID, slot, 1, pos)
}

// TimelineIdempotencyKey returns the deterministic UUIDv5 of (system
// identifier, slot, timeline, commit LSN, ordinal), where timeline is the
// timeline that wrote the commit (not the server's current one): a replay
// of the same row always yields the same key, also after a promotion, while
// a point-in-time restore, which keeps the system identifier and writes new
// transactions at LSNs the old timeline used, gives them other keys.
//
// The timeline is part of the name only when it is above 1, so the keys of
// rows committed on timeline 1 are those of pgsignal versions that did not
// know timelines. The names cannot collide: slot names have no '/', so the
// four bytes of the timeline cannot be mistaken for part of another name.
func TimelineIdempotencyKey(systemID, slot string, timeline uint32, pos Position) string {
	// The name is hashed from a stack buffer: this runs once per row.
	var arr [160]byte
	name := append(arr[:0], keyNamespace[:]...)
	name = append(name, systemID...)
	name = append(name, '/')
	name = append(name, slot...)
	name = append(name, '/')
	name = binary.BigEndian.AppendUint64(name, uint64(pos.CommitLSN))
	name = binary.BigEndian.AppendUint32(name, pos.Ordinal)
	if timeline > 1 {
		name = binary.BigEndian.AppendUint32(name, timeline)
	}
	sum := sha1.Sum(name)
	return formatUUID(sum[:16])
}

// UUIDv5 returns the RFC 9562 name-based (SHA-1) UUID of the concatenated
// parts in namespace ns, in its canonical text form.
func UUIDv5(ns [16]byte, parts ...string) string {
	h := sha1.New()
	h.Write(ns[:])
	for _, p := range parts {
		h.Write([]byte(p))
	}
	return formatUUID(h.Sum(nil)[:16])
}

// formatUUID sets the version (5) and variant bits of a SHA-1 prefix and
// formats it canonically.
func formatUUID(sum []byte) string {
	var u [16]byte
	copy(u[:], sum)
	u[6] = (u[6] & 0x0f) | 0x50
	u[8] = (u[8] & 0x3f) | 0x80
	const hex = "0123456789abcdef"
	var out [36]byte
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			out[j] = '-'
			j++
		}
		out[j] = hex[c>>4]
		out[j+1] = hex[c&0xf]
		j += 2
	}
	return string(out[:])
}

// backfillNamespace is the UUID namespace of backfilled events' keys.
var backfillNamespace = [16]byte{0x2c, 0x9a, 0x41, 0x07, 0xd3, 0x5e, 0x4f, 0x18, 0xa6, 0x0b, 0x7e, 0x93, 0x15, 0xc4, 0x68, 0xf2}

// BackfillKey returns the deterministic idempotency key of a backfilled row:
// a UUIDv5 of (system identifier, table, primary key values). A repeated
// backfill of the same row yields the same key, whatever the slot or the
// snapshot. Each part is length-prefixed, so no two keys' inputs collide.
func BackfillKey(systemID, table string, key [][]byte) string {
	h := sha1.New()
	h.Write(backfillNamespace[:])
	var n [4]byte
	part := func(b []byte, null bool) {
		l := uint32(len(b))
		if null {
			l = 0xffffffff
		}
		binary.BigEndian.PutUint32(n[:], l)
		h.Write(n[:])
		h.Write(b)
	}
	part([]byte(systemID), false)
	part([]byte(table), false)
	for _, v := range key {
		part(v, v == nil)
	}
	return formatUUID(h.Sum(nil)[:16])
}
