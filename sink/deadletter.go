package sink

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/pgcat"
	"github.com/pgsignal/pgsignal/internal/store"
)

// DeadLetterStore durably records dead letters. Write returns only when they
// are durable (committed or fsynced); the sink retries a failed Write and
// does not count the events as handled until it succeeds. Writing the same
// event twice (a replay after a crash: same position and key) must not
// create a second letter where the store can prevent it; two events of one
// row (a transform's outputs: same position, other keys) are two letters.
//
// Write never fails because of what a letter holds: an event or row the
// store cannot hold as JSON is kept as bytes (see Kept). It fails only for
// the store itself (a lost connection, a full disk, a missing permission),
// which a retry can get past once fixed; an error wrapping ErrLetterRefused
// says that a retry cannot.
type DeadLetterStore interface {
	Write(ctx context.Context, letters []cdc.DeadLetter) error
}

// ErrLetterRefused is wrapped by a DeadLetterStore's error when the store
// refused a letter for a reason that writing it again cannot change.
var ErrLetterRefused = errors.New("the dead-letter store refused the letter")

// MaxKeptBytes is the most a dead letter keeps of an event or a source row:
// beyond it, only the first MaxKeptBytes bytes are kept, as bytes, with the
// size and SHA-256 of the whole (Kept). The row itself is still in its table.
const MaxKeptBytes = 64 << 20

// maxKept is MaxKeptBytes; tests lower it.
var maxKept = MaxKeptBytes

// Kept describes an event or source row that a dead letter keeps as bytes
// rather than as JSON: the store could not hold it as JSON (PostgreSQL's
// jsonb refuses \u0000 and lone surrogates, Go's encoder refuses JSON nested
// over 10,000 levels), or it is over MaxKeptBytes and truncated.
type Kept struct {
	// Why says what refused it.
	Why string `json:"why"`
	// Size is the whole's size in bytes and SHA256 its hash (hex).
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"`
	// Truncated is set when only the first MaxKeptBytes bytes are kept.
	Truncated bool `json:"truncated,omitempty"`
}

// Storage says which parts of a dead letter are kept as bytes; nil parts
// are kept as JSON.
type Storage struct {
	Event *Kept `json:"event,omitempty"`
	Row   *Kept `json:"row,omitempty"`
}

func (s *Storage) empty() bool { return s == nil || (s.Event == nil && s.Row == nil) }

// keep returns b as kept as bytes because of why: whole, or its first
// maxKept bytes when longer.
func keep(b []byte, why string) ([]byte, *Kept) {
	sum := sha256.Sum256(b)
	k := &Kept{Why: why, Size: len(b), SHA256: hex.EncodeToString(sum[:])}
	if len(b) > maxKept {
		k.Truncated = true
		k.Why = fmt.Sprintf("%d bytes, over the %d bytes a dead letter keeps: the first %d are kept", len(b), maxKept, maxKept)
		b = b[:maxKept]
	}
	return b, k
}

// tooBig is the Kept of a part over maxKept bytes, or nil.
func tooBig(b []byte) ([]byte, *Kept) {
	if len(b) <= maxKept {
		return b, nil
	}
	return keep(b, "")
}

// cleanText makes s storable as text anywhere: valid UTF-8 without NUL
// (a reason may quote what a server answered).
func cleanText(s string) string {
	s = strings.ToValidUTF8(s, "\ufffd")
	return strings.ReplaceAll(s, "\x00", "\\u0000")
}

// TableDeadLetters stores dead letters in <schema>.dead_letters (full mode).
// An event or row that jsonb cannot hold goes to event_bytes or
// source_row_bytes instead, described in storage.
type TableDeadLetters struct {
	Pool   *pgxpool.Pool
	Schema string
	Slot   string
}

var _ DeadLetterStore = (*TableDeadLetters)(nil)

// tableRow is one letter as inserted: each part as jsonb or as bytes.
type tableRow struct {
	l                cdc.DeadLetter
	event, row       []byte // as jsonb
	eventRaw, rowRaw []byte // as bytea
	storage          Storage
}

func (r *tableRow) asBytes(part string, why string) {
	switch part {
	case "event":
		r.eventRaw, r.storage.Event = keep(r.l.Event, why)
		r.event = nil
	case "row":
		r.rowRaw, r.storage.Row = keep(r.l.Row, why)
		r.row = nil
	}
}

// Write implements DeadLetterStore. The letters are inserted in one
// transaction; when PostgreSQL refuses a value (SQLSTATE class 22 or 54),
// each part is checked on its own and those jsonb cannot hold are inserted
// as bytes.
func (s *TableDeadLetters) Write(ctx context.Context, letters []cdc.DeadLetter) error {
	if len(letters) == 0 {
		return nil
	}
	rows := make([]tableRow, len(letters))
	for i, l := range letters {
		l.Reason, l.Table = cleanText(l.Reason), cleanText(l.Table)
		r := tableRow{l: l, event: l.Event, row: l.Row}
		if _, k := tooBig(l.Event); k != nil {
			r.asBytes("event", "")
		}
		if _, k := tooBig(l.Row); k != nil {
			r.asBytes("row", "")
		}
		rows[i] = r
	}
	err := s.insert(ctx, rows)
	if !pgcat.IsDataError(err) {
		return err
	}
	// Find the parts jsonb refuses, each on its own.
	for i := range rows {
		r := &rows[i]
		for _, part := range []struct {
			name string
			b    []byte
		}{{"event", r.event}, {"row", r.row}} {
			if len(part.b) == 0 {
				continue
			}
			var ok bool
			perr := s.Pool.QueryRow(ctx, `SELECT $1::text::jsonb IS NOT NULL`, string(part.b)).Scan(&ok)
			if pgcat.IsDataError(perr) {
				r.asBytes(part.name, "PostgreSQL's jsonb refused it: "+cleanText(perr.Error()))
			} else if perr != nil {
				return fmt.Errorf("write dead letters to %s: %w", s.table(), perr)
			}
		}
	}
	// And the texts the database encoding cannot hold (a LATIN1 database
	// refuses '€' with 22P05): those characters are escaped.
	for i := range rows {
		r := &rows[i]
		var err error
		if r.l.Reason, err = storableText(ctx, s.Pool, r.l.Reason); err != nil {
			return fmt.Errorf("write dead letters to %s: %w", s.table(), err)
		}
		if r.l.Table, err = storableText(ctx, s.Pool, r.l.Table); err != nil {
			return fmt.Errorf("write dead letters to %s: %w", s.table(), err)
		}
	}
	if err := s.insert(ctx, rows); err != nil {
		if pgcat.IsDataError(err) {
			return fmt.Errorf("write dead letters to %s: %w: %w", s.table(), ErrLetterRefused, err)
		}
		return err
	}
	return nil
}

func (s *TableDeadLetters) table() string { return store.DeadLettersTable(s.Schema) }

func (s *TableDeadLetters) insert(ctx context.Context, rows []tableRow) error {
	out := make([]store.DeadLetterRow, len(rows))
	for i, r := range rows {
		var storage *string
		if !r.storage.empty() {
			js, err := json.Marshal(r.storage)
			if err != nil {
				return fmt.Errorf("encode dead letter %s: %w", r.l.Pos, err)
			}
			storage = nullJSON(js)
		}
		out[i] = store.DeadLetterRow{Letter: r.l, Event: nullJSON(r.event), Row: nullJSON(r.row),
			EventBytes: r.eventRaw, RowBytes: r.rowRaw, Storage: storage}
	}
	return store.InsertDeadLetters(ctx, s.Pool, s.Schema, s.Slot, out)
}

// maxCheckedRunes bounds the characters storableText asks the database
// about; any other character outside ASCII is escaped.
const maxCheckedRunes = 32

// storableText returns s (cleaned by cleanText) as the database can store
// it in a text column: a character its encoding cannot hold (SQLSTATE
// 22P05, e.g. '€' in a LATIN1 database) is written as \uXXXX (\UXXXXXXXX
// above U+FFFF). s is returned as it is when the database takes it.
func storableText(ctx context.Context, q pgcat.Querier, s string) (string, error) {
	ascii := true
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return s, nil
	}
	takes := func(t string) (bool, error) {
		var ok bool
		err := q.QueryRow(ctx, `SELECT $1::text IS NOT NULL`, t).Scan(&ok)
		if pgcat.IsDataError(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("check text against the database encoding: %w", err)
		}
		return true, nil
	}
	if ok, err := takes(s); ok || err != nil {
		return s, err
	}
	refused := map[rune]bool{}
	var b strings.Builder
	for _, r := range s {
		if r < utf8.RuneSelf {
			b.WriteRune(r)
			continue
		}
		bad, seen := refused[r]
		if !seen {
			bad = true
			if len(refused) < maxCheckedRunes {
				ok, err := takes(string(r))
				if err != nil {
					return s, err
				}
				bad = !ok
			}
			refused[r] = bad
		}
		switch {
		case !bad:
			b.WriteRune(r)
		case r <= 0xFFFF:
			fmt.Fprintf(&b, "\\u%04x", r)
		default:
			fmt.Fprintf(&b, "\\U%08x", r)
		}
	}
	return b.String(), nil
}

func nullJSON(b []byte) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}

// FileRecord is one line of the read-only mode's dead-letter file. An event
// or row that is not JSON Go can encode (nested over 10,000 levels) or that
// is over MaxKeptBytes is in EventBase64 or RowBase64 instead, described in
// Storage. ID is the letter's id for `pgsignal dead-letters`, assigned when
// the line is appended (one more than the highest id or line number in the
// file) and kept when the file is rewritten, so that a discard or replay
// does not renumber the other letters; a line without one (written by an
// older version) has its line number, kept from its first rewrite on.
type FileRecord struct {
	ID             int64           `json:"id,omitempty"`
	CommitLSN      string          `json:"commit_lsn"`
	Ordinal        uint32          `json:"ordinal"`
	Table          string          `json:"table"`
	IdempotencyKey string          `json:"idempotency_key,omitempty"`
	Event          json.RawMessage `json:"event,omitempty"`
	Row            json.RawMessage `json:"row,omitempty"`
	EventBase64    []byte          `json:"event_base64,omitempty"`
	RowBase64      []byte          `json:"row_base64,omitempty"`
	Storage        *Storage        `json:"storage,omitempty"`
	Reason         string          `json:"reason"`
	Attempts       int             `json:"attempts"`
	FirstFailedAt  time.Time       `json:"first_failed_at"`
	LastFailedAt   time.Time       `json:"last_failed_at"`
}

// FileDeadLetters appends dead letters to a JSONL file (read-only mode) and
// fsyncs after each write. Each write holds an exclusive lock (flock) on the
// file, as do `pgsignal dead-letters replay|discard` while they rewrite it:
// a write waits for a command (and fails after writerLockWait, to be
// retried), and goes to the file now at Path, never to one a command
// replaced. Several pgsignal processes may share a file.
type FileDeadLetters struct {
	Path string
	mu   sync.Mutex
	f    *os.File
	// nextID is the id of the next letter appended to f while f's size is
	// end (nothing else wrote to it since); 0 when unknown.
	nextID, end int64
}

var _ DeadLetterStore = (*FileDeadLetters)(nil)

// How long a dead-letter writer and a dead-letters command wait for the
// file's lock before they give up (the writer is retried); tests lower them.
var (
	writerLockWait  = 2 * time.Second
	commandLockWait = 10 * time.Second
)

// Write implements DeadLetterStore. A failed write is undone (the file is
// truncated to its size before it), so that a retry leaves no torn line.
func (s *FileDeadLetters) Write(ctx context.Context, letters []cdc.DeadLetter) error {
	if len(letters) == 0 {
		return nil
	}
	recs := make([]FileRecord, len(letters))
	for i, l := range letters {
		recs[i] = FileRecord{
			CommitLSN: l.Pos.CommitLSN.String(), Ordinal: l.Pos.Ordinal, Table: l.Table,
			IdempotencyKey: l.IdempotencyKey, Event: l.Event, Row: l.Row, Reason: l.Reason,
			Attempts: l.Attempts, FirstFailedAt: l.FirstFailure.UTC(), LastFailedAt: l.LastFailure.UTC(),
		}
		if _, err := encodeRecord(recs[i]); err != nil {
			return fmt.Errorf("encode dead letter %s: %w: %w", l.Pos, ErrLetterRefused, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f, err := lockOpen(ctx, s.f, s.Path, os.O_CREATE|os.O_RDWR|os.O_APPEND, writerLockWait)
	fresh := f != s.f
	s.f = f
	if err != nil {
		return err
	}
	defer unlock(f) //nolint:errcheck // closing the file releases it too
	if fresh {
		// The file may just have been created: its directory entry must
		// be as durable as the letters.
		if err := syncDir(filepath.Dir(s.Path)); err != nil {
			return fmt.Errorf("sync the directory of dead-letter file %s: %w", s.Path, err)
		}
	}
	if err := cutTornLine(f); err != nil {
		return fmt.Errorf("dead-letter file %s: %w", s.Path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("dead-letter file %s: %w", s.Path, err)
	}
	next := s.nextID
	if fresh || next == 0 || s.end != fi.Size() {
		// Another process appended or rewrote it (or it is new to us).
		if next, err = nextLetterID(f, fi.Size()); err != nil {
			return fmt.Errorf("read dead-letter file %s: %w", s.Path, err)
		}
	}
	s.nextID = 0
	var buf []byte
	for i := range recs {
		recs[i].ID = next + int64(i)
		line, err := encodeRecord(recs[i])
		if err != nil {
			return fmt.Errorf("encode dead letter %s#%d: %w: %w", recs[i].CommitLSN, recs[i].Ordinal, ErrLetterRefused, err)
		}
		buf = append(append(buf, line...), '\n')
	}
	if _, err := f.Write(buf); err != nil {
		s.undo(fi.Size())
		return fmt.Errorf("write dead-letter file %s: %w", s.Path, err)
	}
	if err := f.Sync(); err != nil {
		s.undo(fi.Size())
		return fmt.Errorf("sync dead-letter file %s: %w", s.Path, err)
	}
	s.nextID, s.end = next+int64(len(recs)), fi.Size()+int64(len(buf))
	return nil
}

// nextLetterID returns the id for a letter appended to f (size bytes, all
// whole lines): one more than the highest id in it, and than its number
// of lines (the ids of lines without one).
func nextLetterID(f *os.File, size int64) (int64, error) {
	rd := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 64<<10)
	var high, lines int64
	for {
		b, err := rd.ReadBytes('\n')
		if len(b) > 0 {
			lines++
			var r struct {
				ID int64 `json:"id"`
			}
			// A line that is not a record is reported by list; here it
			// only counts as a line.
			if json.Unmarshal(b, &r) == nil && r.ID > high {
				high = r.ID
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	return max(high, lines) + 1, nil
}

// undo truncates the file back to size after a failed write; if even that
// fails, the next Write cuts the torn line.
func (s *FileDeadLetters) undo(size int64) {
	_ = s.f.Truncate(size)
}

// lockOpen locks f, opening path when f is nil or is no longer the file at
// path (a rewrite renamed a new file over it, or it was removed), and
// returns the locked file. It waits up to wait while another process holds
// the lock, then fails with ErrFileInUse. On error, f is closed.
func lockOpen(ctx context.Context, f *os.File, path string, flag int, wait time.Duration) (*os.File, error) {
	deadline := time.Now().Add(wait)
	for {
		if f == nil {
			var err error
			if f, err = os.OpenFile(path, flag, 0o600); err != nil {
				return nil, fmt.Errorf("open dead-letter file: %w", err)
			}
		}
		busy, err := tryLock(f)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock dead-letter file %s: %w", path, err)
		}
		if !busy {
			same, err := samePath(f, path)
			if err == nil && same {
				return f, nil
			}
			f.Close()
			f = nil
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("dead-letter file %s: %w", path, err)
			}
			continue
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, fmt.Errorf("dead-letter file %s: %w", path, ErrFileInUse)
		}
		if err := sleep(ctx, 10*time.Millisecond); err != nil {
			f.Close()
			return nil, err
		}
	}
}

// cutTornLine truncates f after its last newline: a line left unfinished
// by a crash was never acknowledged (its events were not handled, and the
// next run writes it again).
func cutTornLine(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	end := fi.Size()
	if end == 0 {
		return nil
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, end-1); err != nil {
		return err
	}
	if last[0] == '\n' {
		return nil
	}
	buf := make([]byte, 64<<10)
	for off := end; off > 0; {
		n := min(int64(len(buf)), off)
		off -= n
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return f.Truncate(off + int64(i) + 1)
		}
	}
	return f.Truncate(0)
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

// encodeRecord encodes a dead-letter line. An event or row over maxKept
// bytes, or that Go's encoder refuses as JSON, goes base64 with its Storage.
func encodeRecord(r FileRecord) ([]byte, error) {
	st := Storage{}
	if r.Storage != nil {
		st = *r.Storage
	}
	if len(r.Event) > 0 && r.EventBase64 == nil {
		if why := unencodable(r.Event); why != "" {
			r.EventBase64, st.Event = keep(r.Event, why)
			r.Event = nil
		}
	}
	if len(r.Row) > 0 && r.RowBase64 == nil {
		if why := unencodable(r.Row); why != "" {
			r.RowBase64, st.Row = keep(r.Row, why)
			r.Row = nil
		}
	}
	r.Storage = nil
	if !st.empty() {
		r.Storage = &st
	}
	return marshalRecord(r)
}

// unencodable says why b cannot be a json.RawMessage of a line ("" when it
// can).
func unencodable(b []byte) string {
	if len(b) > maxKept {
		return "over MaxKeptBytes" // keep says it
	}
	if !utf8.Valid(b) {
		return "not valid UTF-8"
	}
	if json.Valid(b) {
		return ""
	}
	var scratch bytes.Buffer
	if err := json.Compact(&scratch, b); err != nil {
		return "Go's JSON encoder refused it: " + err.Error()
	}
	return "Go's JSON encoder refused it"
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
