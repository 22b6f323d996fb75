package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

// DeadLetterStore durably records dead letters. Write returns only when they
// are durable (committed or fsynced); the sink retries a failed Write and
// does not count the events as handled until it succeeds. Writing the same
// event twice (a replay after a crash: same position and key) must not
// create a second letter where the store can prevent it; two events of one
// row (a transform's outputs: same position, other keys) are two letters.
type DeadLetterStore interface {
	Write(ctx context.Context, letters []cdc.DeadLetter) error
}

// TableDeadLetters stores dead letters in <schema>.dead_letters (full mode).
type TableDeadLetters struct {
	Pool   *pgxpool.Pool
	Schema string
	Slot   string
}

var _ DeadLetterStore = (*TableDeadLetters)(nil)

// Write implements DeadLetterStore.
func (s *TableDeadLetters) Write(ctx context.Context, letters []cdc.DeadLetter) error {
	if len(letters) == 0 {
		return nil
	}
	q := `INSERT INTO ` + pgx.Identifier{s.Schema, "dead_letters"}.Sanitize() + `
  (slot, commit_lsn, ordinal, table_name, idempotency_key, event, source_row, reason, attempts, first_failed_at, last_failed_at)
VALUES ($1, $2::pg_lsn, $3, $4, $5::uuid, $6::jsonb, $7::jsonb, $8, $9, $10, $11)
ON CONFLICT (slot, commit_lsn, ordinal, ` + cdc.DeadLetterKeySQL + `) DO NOTHING`
	b := &pgx.Batch{}
	for _, l := range letters {
		var key *string
		if l.IdempotencyKey != "" {
			key = &l.IdempotencyKey
		}
		b.Queue(q, s.Slot, l.Pos.CommitLSN.String(), int64(l.Pos.Ordinal), l.Table, key,
			nullJSON(l.Event), nullJSON(l.Row), l.Reason, l.Attempts, l.FirstFailure, l.LastFailure)
	}
	tx, err := s.Pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("write dead letters: %w", err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // after Commit it is a no-op
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write dead letters: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit dead letters: %w", err)
	}
	return nil
}

func nullJSON(b []byte) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}

// FileRecord is one line of the read-only mode's dead-letter file.
type FileRecord struct {
	CommitLSN      string          `json:"commit_lsn"`
	Ordinal        uint32          `json:"ordinal"`
	Table          string          `json:"table"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Event          json.RawMessage `json:"event,omitempty"`
	Row            json.RawMessage `json:"row,omitempty"`
	Reason         string          `json:"reason"`
	Attempts       int             `json:"attempts"`
	FirstFailedAt  time.Time       `json:"first_failed_at"`
	LastFailedAt   time.Time       `json:"last_failed_at"`
}

// FileDeadLetters appends dead letters to a JSONL file (read-only mode) and
// fsyncs after each write.
type FileDeadLetters struct {
	Path string
	mu   sync.Mutex
	f    *os.File
}

var _ DeadLetterStore = (*FileDeadLetters)(nil)

// Write implements DeadLetterStore.
func (s *FileDeadLetters) Write(ctx context.Context, letters []cdc.DeadLetter) error {
	if len(letters) == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		f, err := os.OpenFile(s.Path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("open dead-letter file: %w", err)
		}
		s.f = f
	}
	var buf []byte
	for _, l := range letters {
		rec := FileRecord{
			CommitLSN: l.Pos.CommitLSN.String(), Ordinal: l.Pos.Ordinal, Table: l.Table,
			IdempotencyKey: l.IdempotencyKey, Event: l.Event, Row: l.Row, Reason: l.Reason,
			Attempts: l.Attempts, FirstFailedAt: l.FirstFailure.UTC(), LastFailedAt: l.LastFailure.UTC(),
		}
		line, err := marshalRecord(rec)
		if err != nil {
			return fmt.Errorf("encode dead letter %s: %w", l.Pos, err)
		}
		buf = append(append(buf, line...), '\n')
	}
	if _, err := s.f.Write(buf); err != nil {
		return fmt.Errorf("write dead-letter file: %w", err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("sync dead-letter file: %w", err)
	}
	return nil
}

// Close closes the file.
func (s *FileDeadLetters) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	err := s.f.Close()
	s.f = nil
	return err
}

// marshalRecord encodes a dead-letter line without HTML escaping, so that
// the stored event keeps its exact bytes (and size).
func marshalRecord(r FileRecord) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
