// Package defaults declares, once, the default values and fixed limits that
// both the configuration (internal/config, which documents and applies them)
// and the stages (sink, replication, mapper, mapper/transform, which fall
// back to them for a zero field) need. It is a leaf: it imports nothing, so
// a stage can name a default without importing the file format.
package defaults

import "time"

// Defaults of the sink (sink.*).
const (
	// BatchSize is the default number of events per OneSignal request
	// (sink.batch_size), and the most rows of SQL-transform tables
	// evaluated at once.
	BatchSize = 500
	// Linger is the least time between two partial batches of a lane
	// (sink.linger): an event that finds its lane idle, with no batch sent
	// in the last Linger, is sent at once; what arrives while a request is
	// in flight waits for it to end and at most Linger.
	Linger = 5 * time.Millisecond
	// Concurrency is the default number of sending lanes (sink.concurrency).
	Concurrency = 8
	// MaxPendingEvents bounds the events received but not yet handled
	// (sink.max_pending_events).
	MaxPendingEvents = 20000
	// MaxPendingBytes bounds their size (sink.max_pending_bytes).
	MaxPendingBytes = 64 << 20
	// MaxBackoff caps the wait between two attempts of a request
	// (sink.max_backoff).
	MaxBackoff = 60 * time.Second
)

// TransformTimeout is the default statement timeout of a SQL transform's
// evaluation (tables[].transform_timeout).
const TransformTimeout = 60 * time.Second

// MaxEventNameLen is OneSignal's limit on an event name, in characters.
const MaxEventNameLen = 128

// Values of sink.unknown_user.
const (
	// UnknownUserDeadLetter records an event for a user OneSignal does not
	// know as a dead letter (the default).
	UnknownUserDeadLetter = "dead-letter"
	// UnknownUserDrop silently drops such an event.
	UnknownUserDrop = "drop"
)

// Values of source.on_slot_lost.
const (
	// SlotLostError stops with an error that says what happened (default).
	SlotLostError = "error"
	// SlotLostRecreate recreates the slot, records the gap and goes on.
	SlotLostRecreate = "recreate"
)
