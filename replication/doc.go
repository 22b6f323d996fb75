// Package replication is pgsignal's source: it connects to PostgreSQL,
// prepares the publication and the logical slot (setup.go, relwatch.go,
// slotloss.go), and runs the pgoutput stream (stream.go: the session and
// reconnect loop; dispatch.go: one message at a time). It decodes each
// change into a Change, hands it to a Mapper (or a BatchMapper, batch.go)
// and offers the resulting events to a Sink; it does not map, deliver or
// store anything itself. The connection is read through conn.go's reader:
// reads coalesced after a small one (coalesce.go), and over a Unix socket
// read ahead by a goroutine of its own into a bounded buffer (readahead.go).
//
// The main contract is the position invariant: each event gets a
// cdc.Position from a checkpoint.Tracker before it is offered, and the
// stream confirms to the slot only the LSN the tracker's checkpoint allows
// (checkpoint.RunCheckpointer calls SetFlushed), so the slot never passes a
// row that was not handled. Anything it cannot decode or stream safely
// stops it with an error that names the problem and the fix.
//
// It also reads the snapshot of a backfill (backfill.go) and keeps the
// relations a table was bound to (relwatch.go, resend.go). Its values go to
// the mapper in PostgreSQL's text form; mapper/codec reads them.
package replication
