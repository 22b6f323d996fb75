package replication

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

func (s *Stream) handleCopyData(ctx context.Context, conn *pgconn.PgConn, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("parse keepalive: %w", err)
		}
		s.walEnd.Store(uint64(ka.ServerWALEnd))
		if !s.inTxn {
			s.tracker.AdvanceIdle(cdc.LSN(ka.ServerWALEnd))
		}
		if ka.ReplyRequested {
			return s.sendStatus(conn)
		}
	case pglogrepl.XLogDataByteID:
		// XLogData header: 'w', start LSN, end LSN, send time (8 bytes each).
		if len(data) < 25 {
			return fmt.Errorf("parse XLogData: %w", errShortMessage)
		}
		s.walEnd.Store(binary.BigEndian.Uint64(data[9:17]))
		return s.handleWAL(ctx, conn, data[25:])
	}
	return nil
}

func (s *Stream) handleWAL(ctx context.Context, conn *pgconn.PgConn, wal []byte) error {
	if len(wal) == 0 {
		return nil
	}
	switch wal[0] {
	case 'I':
		relID, vals, err := parseInsert(wal, s.vals)
		s.vals = vals
		if err != nil {
			return fmt.Errorf("parse insert at %s: %w", s.commitLSN, err)
		}
		return s.handleChange(ctx, conn, relID, vals, false, -1)
	case 'U':
		var unchanged []int
		relID, vals, old, missing, err := parseUpdate(wal, s.vals, s.oldVals, &unchanged)
		s.vals, s.oldVals = vals, old
		if err != nil {
			return fmt.Errorf("parse update at %s: %w", s.commitLSN, err)
		}
		if missing >= 0 {
			missing = s.neededTOAST(relID, unchanged)
		}
		return s.handleChange(ctx, conn, relID, vals, true, missing)
	case 'D':
		// Deletes are never events; they keep ordinals stable should a
		// publication publish them.
		s.ordinal++
		return nil
	case 'B':
		finalLSN, commitTime, xid, err := parseBegin(wal)
		if err != nil {
			return fmt.Errorf("parse begin: %w", err)
		}
		s.inTxn = true
		s.commitLSN = cdc.LSN(finalLSN)
		s.commitTime = commitTime
		s.noteBacklog(time.Since(commitTime))
		s.xid = xid
		s.ordinal = 0
		s.tracker.Begin()
	case 'C':
		commitLSN, endLSN, err := parseCommit(wal)
		if err != nil {
			return fmt.Errorf("parse commit: %w", err)
		}
		if cdc.LSN(commitLSN) != s.commitLSN {
			return fmt.Errorf("commit LSN %s does not match begin's %s", cdc.LSN(commitLSN), s.commitLSN)
		}
		s.inTxn = false
		s.tracker.Commit(cdc.LSN(endLSN))
	case 'R':
		m, err := pglogrepl.Parse(wal)
		if err != nil {
			return fmt.Errorf("parse relation: %w", err)
		}
		r := m.(*pglogrepl.RelationMessage)
		cols := make([]Column, len(r.Columns))
		for i, c := range r.Columns {
			cols[i] = Column{Name: c.Name, TypeOID: c.DataType, TypeMod: c.TypeModifier, Key: c.Flags&1 != 0}
		}
		rel := s.cfg.Relations.Adopt(NewRelation(r.RelationID, r.Namespace, r.RelationName, cols))
		if old, ok := s.rels[r.RelationID]; ok && len(old.Columns) != len(cols) {
			s.log.Info("table definition changed", zap.String("table", rel.QualifiedName()), zap.Int("columns", len(cols)))
		}
		s.rels[r.RelationID] = rel
	case 'T':
		s.log.Debug("truncate ignored", zap.Stringer("commit_lsn", s.commitLSN))
	case 'M':
		return s.handleMessage(ctx, conn, wal)
	case 'Y', 'O':
		// Type and Origin messages carry nothing to deliver.
	default:
		s.log.Debug("unknown pgoutput message ignored", zap.String("type", string(wal[0])))
	}
	return nil
}

// ColumnUser is implemented by a Mapper or BatchMapper that can tell
// whether the events of rel's rows read the column at index col. An update
// that leaves an unchanged TOASTed column out (the server does not resend
// it) is then mapped when its events do not read that column; without it
// every such update is a dead letter.
type ColumnUser interface {
	UsesColumn(rel *Relation, col int) bool
}

// neededTOAST returns the first of the unchanged TOAST columns (indexes in
// rel relID) that the update's events read, or -1 when they read none.
func (s *Stream) neededTOAST(relID uint32, unchanged []int) int {
	rel := s.rels[relID]
	if rel == nil || len(unchanged) == 0 {
		return -1 // handleChange reports the unknown relation
	}
	var user ColumnUser
	if s.cfg.Batch != nil && s.cfg.Batch.Batched(rel, true) {
		user, _ = s.cfg.Batch.(ColumnUser)
	} else {
		user, _ = s.mapper.(ColumnUser)
	}
	for _, i := range unchanged {
		if user == nil || i >= len(rel.Columns) || user.UsesColumn(rel, i) {
			return i
		}
	}
	return -1
}

// UpdateMapper maps updates (tables with emit: [insert, update]); a Mapper
// that does not implement it emits no update events.
type UpdateMapper interface {
	MapUpdate(ch *Change) *cdc.Event
}

// handleChange turns an inserted (or updated) row into an event and hands it
// to the sink. missing >= 0 marks an update whose unchanged TOAST column
// could not be read.
func (s *Stream) handleChange(ctx context.Context, conn *pgconn.PgConn, relID uint32, vals [][]byte, update bool, missing int) error {
	if !s.inTxn {
		return errors.New("insert outside a transaction")
	}
	rel, ok := s.rels[relID]
	if !ok {
		return fmt.Errorf("insert for unknown relation %d (no Relation message)", relID)
	}
	if len(vals) != len(rel.Columns) {
		return fmt.Errorf("insert into %s has %d values for %d columns", rel.QualifiedName(), len(vals), len(rel.Columns))
	}
	pos := cdc.Position{CommitLSN: s.commitLSN, Ordinal: s.ordinal}
	s.ordinal++
	if !s.last.Less(pos) {
		return nil // handled before a restart or already in the pipeline
	}
	if s.cfg.Overlap != nil && !update && pos.CommitLSN < s.cfg.Overlap.Until() && (s.held == nil || s.held.Pos != pos) {
		covered, err := s.cfg.Overlap.Covered(ctx, s.change(rel, vals, pos), s.xid)
		if err != nil {
			return err
		}
		if covered {
			// Sent by the redone backfill: handled.
			s.received.Add(1)
			s.tracker.Done(s.tracker.Assign(pos))
			s.last = pos
			return nil
		}
	}
	if s.cfg.Batch != nil && (len(s.pending) > 0 || s.cfg.Batch.Batched(rel, update)) {
		return s.buffer(ctx, conn, rel, vals, pos, update, missing)
	}
	ev := s.held
	if ev != nil && ev.Pos == pos {
		s.log.Info("resubmitting the event held across a reconnect", zap.Stringer("position", pos))
	} else {
		s.received.Add(1)
		ev = s.mapChange(rel, vals, pos, update, missing)
		seq := s.tracker.Assign(pos)
		if ev == nil {
			s.tracker.Done(seq)
			s.last = pos
			return nil
		}
		ev.Seq, ev.Pos, ev.CommitTime = seq, pos, s.commitTime
	}
	s.held = ev
	if err := s.submit(ctx, conn, ev); err != nil {
		return err
	}
	s.held = nil
	s.last = pos
	return nil
}

// submit hands ev to the sink, waiting while the sink is full or too many
// events are outstanding, and keeps the walsender from timing out meanwhile
// (conn may be nil when disconnected).
func (s *Stream) submit(ctx context.Context, conn *pgconn.PgConn, ev *cdc.Event) error {
	ev.Timeline = s.timelines.At(ev.Pos.CommitLSN)
	if s.cfg.Ledger != nil && s.cfg.Ledger.Covers(ev) {
		s.tracker.Done(ev.Seq) // handled by an earlier run (delivery ledger)
		return nil
	}
	for first := true; s.tracker.Outstanding() > s.cfg.MaxOutstanding || !s.sink.TrySubmit(ev); first = false {
		if first {
			s.blocked.Store(true)
			defer s.blocked.Store(false)
		}
		wait := time.Until(s.lastStatus.Add(s.statusIvl))
		t := time.NewTimer(max(wait, time.Millisecond))
		select {
		case <-s.sink.Ready():
		case <-s.tracker.Room():
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
		t.Stop()
		// Blocked on a slow sink: keep the walsender from timing out.
		if conn != nil {
			if err := s.maybeSendStatus(conn); err != nil {
				return err
			}
		}
	}
	return nil
}

// change is the Change of the row at pos of the current transaction.
func (s *Stream) change(rel *Relation, vals [][]byte, pos cdc.Position) *Change {
	return &Change{Rel: rel, Values: vals, Pos: pos, CommitTime: s.commitTime,
		IdempotencyKey: cdc.TimelineIdempotencyKey(s.systemID, s.cfg.Slot, s.cfg.LegacyKeys.KeyTimeline(pos.CommitLSN, s.timelines.At(pos.CommitLSN)), pos)}
}

// mapChange maps one row with the Mapper (an update with MapUpdate).
func (s *Stream) mapChange(rel *Relation, vals [][]byte, pos cdc.Position, update bool, missing int) *cdc.Event {
	ch := s.change(rel, vals, pos)
	if !update {
		return s.mapper.Map(ch)
	}
	var ev *cdc.Event
	if um, ok := s.mapper.(UpdateMapper); ok {
		ev = um.MapUpdate(ch)
	}
	if ev != nil && ev.Reject == "" && missing >= 0 {
		rejectMissingTOAST(ev, rel, missing)
	}
	return ev
}

// rejectMissingTOAST turns ev into a dead letter for an update whose
// unchanged TOAST column was not sent.
func rejectMissingTOAST(ev *cdc.Event, rel *Relation, missing int) {
	ev.Reject = fmt.Sprintf("update of %s left column %q unchanged and the server did not resend its large (TOASTed) value; set REPLICA IDENTITY FULL on the table to receive it",
		rel.QualifiedName(), rel.Columns[missing].Name)
	ev.JSON = nil
}
