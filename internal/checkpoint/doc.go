// Package checkpoint is the one home of pgsignal's position bookkeeping in
// memory: the Tracker follows every event from the moment the stream
// assigns it a position until the sink reports it handled, and computes the
// checkpoint (the last position before which everything is handled) and the
// LSN that may be confirmed to the slot; RunCheckpointer hands that LSN to
// the slot (replication.Stream, through Slot) and, in full mode, saves the
// watermark through a Store (internal/store's TableStore) first. The rule
// it keeps: the slot is never confirmed past a row that was not handled.
package checkpoint
