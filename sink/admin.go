package sink

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/store"
)

// Letter is a stored dead letter, as listed and replayed by the operator.
type Letter struct {
	ID             int64           `json:"id"`
	CommitLSN      string          `json:"commit_lsn"`
	Ordinal        uint32          `json:"ordinal"`
	Table          string          `json:"table"`
	IdempotencyKey string          `json:"idempotency_key"`
	Event          json.RawMessage `json:"event"`
	Row            json.RawMessage `json:"row"`
	Reason         string          `json:"reason"`
	Attempts       int             `json:"attempts"`
	FirstFailedAt  time.Time       `json:"first_failed_at"`
	LastFailedAt   time.Time       `json:"last_failed_at"`
	// Storage is set when the event or the row is kept as bytes (Kept):
	// then Event or Row holds those bytes, which may not be JSON, or only
	// the first MaxKeptBytes of them.
	Storage *Storage `json:"storage,omitempty"`
}

// MarshalJSON encodes the letter with snake_case names, as status and check
// do; an Event or Row that is not valid JSON in UTF-8 is encoded as
// event_base64 or row_base64 instead.
func (l Letter) MarshalJSON() ([]byte, error) {
	type plain Letter // without this method
	out := struct {
		plain
		EventBase64 []byte `json:"event_base64,omitempty"`
		RowBase64   []byte `json:"row_base64,omitempty"`
	}{plain: plain(l)}
	if len(l.Event) > 0 && !(utf8.Valid(l.Event) && json.Valid(l.Event)) {
		out.EventBase64, out.Event = l.Event, nil
	}
	if len(l.Row) > 0 && !(utf8.Valid(l.Row) && json.Valid(l.Row)) {
		out.RowBase64, out.Row = l.Row, nil
	}
	return json.Marshal(out)
}

// key identifies the event a letter is for: a row a transform turned into
// several events has one position and several keys.
func (l Letter) key() string {
	return fmt.Sprintf("%s#%d#%s", l.CommitLSN, l.Ordinal, l.IdempotencyKey)
}

// Filter selects dead letters: by id, by a substring of the reason, or all.
type Filter struct {
	IDs    []int64
	Reason string
	All    bool
}

// Empty reports whether the filter selects nothing explicitly.
func (f Filter) Empty() bool { return len(f.IDs) == 0 && f.Reason == "" && !f.All }

func (f Filter) match(l Letter) bool {
	if len(f.IDs) > 0 && !slices.Contains(f.IDs, l.ID) {
		return false
	}
	if f.Reason != "" && !strings.Contains(strings.ToLower(l.Reason), strings.ToLower(f.Reason)) {
		return false
	}
	return true
}

// LetterStore lists and edits stored dead letters.
type LetterStore interface {
	List(ctx context.Context, f Filter) ([]Letter, error)
	// Resolve deletes the letters in done (delivered or discarded) and
	// records another failed attempt, with its new reason, for those in
	// failed. Ids are those of the last List.
	Resolve(ctx context.Context, done []int64, failed map[int64]string, at time.Time) error
}

// TableLetters is the LetterStore of <schema>.dead_letters (full mode).
type TableLetters struct {
	Pool   *pgxpool.Pool
	Schema string
	Slot   string
}

// List implements LetterStore.
func (s *TableLetters) List(ctx context.Context, f Filter) ([]Letter, error) {
	stored, err := store.ListDeadLetters(ctx, s.Pool, s.Schema, s.Slot, f.IDs, f.Reason)
	if err != nil {
		return nil, err
	}
	var out []Letter
	for _, r := range stored {
		l := Letter{ID: r.ID, CommitLSN: r.CommitLSN, Ordinal: uint32(r.Ordinal), Table: r.Table,
			IdempotencyKey: r.IdempotencyKey, Reason: r.Reason, Attempts: r.Attempts,
			FirstFailedAt: r.FirstFailedAt, LastFailedAt: r.LastFailedAt}
		switch {
		case r.Event != "":
			l.Event = compactJSON(r.Event)
		case r.EventBytes != nil:
			l.Event = r.EventBytes
		}
		switch {
		case r.Row != "":
			l.Row = json.RawMessage(r.Row)
		case r.RowBytes != nil:
			l.Row = r.RowBytes
		}
		if r.Storage != nil {
			l.Storage = new(Storage)
			if err := json.Unmarshal([]byte(*r.Storage), l.Storage); err != nil {
				return nil, fmt.Errorf("dead letter %d: storage: %w", l.ID, err)
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// compactJSON re-encodes jsonb text (which has spaces after colons) compactly
// so that a replayed event is the size it was.
func compactJSON(s string) json.RawMessage {
	var b bytes.Buffer
	if json.Compact(&b, []byte(s)) != nil {
		return json.RawMessage(s)
	}
	return b.Bytes()
}

// Resolve implements LetterStore.
func (s *TableLetters) Resolve(ctx context.Context, done []int64, failed map[int64]string, at time.Time) error {
	// A reason the database encoding cannot hold is stored escaped.
	reasons := make(map[int64]string, len(failed))
	for id, reason := range failed {
		r, err := storableText(ctx, s.Pool, cleanText(reason))
		if err != nil {
			return fmt.Errorf("update dead letter %d: %w", id, err)
		}
		reasons[id] = r
	}
	return store.ResolveDeadLetters(ctx, s.Pool, s.Schema, s.Slot, done, reasons, at)
}

// ErrFileInUse is returned (wrapped) when the dead-letter file stays locked
// by another process.
var ErrFileInUse = errors.New("the file stays locked by another process: a `pgsignal dead-letters replay` or `discard` is running on it; try again once it is done")

// FileLetters is the LetterStore of the read-only mode's JSONL file; a
// letter's id is the one in its line (FileRecord.ID), or its line number
// for a line without one, and a rewrite keeps each letter's id. It may be used while pgsignal runs on the
// file: listing reads what is there, and Resolve, which rewrites the file,
// holds the file's lock, which pgsignal takes for each write, so nothing is
// appended meanwhile and pgsignal writes to the new file afterwards. Lock
// holds it for longer (a replay: list, send, resolve).
type FileLetters struct {
	Path string
	held *os.File
}

// Lock takes the file's lock until Unlock, so that nothing is appended to
// the file between a List and the Resolve that follows it (a running
// pgsignal waits meanwhile). It waits for another holder for up to
// commandLockWait, then fails with ErrFileInUse. A missing file is not
// locked (there is nothing to resolve).
func (s *FileLetters) Lock() error {
	if s.held != nil {
		return nil
	}
	f, err := lockOpen(context.Background(), nil, s.Path, os.O_RDWR, commandLockWait)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	s.held = f
	return nil
}

// Unlock releases the lock taken by Lock.
func (s *FileLetters) Unlock() {
	if s.held != nil {
		s.held.Close()
		s.held = nil
	}
}

func (s *FileLetters) read() ([]Letter, error) {
	f, err := os.Open(s.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open dead-letter file: %w", err)
	}
	defer f.Close()
	var out []Letter
	// Lines have no length limit: a letter keeps up to MaxKeptBytes of its
	// event and of its row.
	rd := bufio.NewReaderSize(f, 64<<10)
	line := int64(0)
	for {
		b, err := rd.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read dead-letter file %s: %w", s.Path, err)
		}
		if len(b) == 0 {
			break
		}
		line++
		torn := b[len(b)-1] != '\n'
		if len(bytes.TrimSpace(b)) == 0 {
			continue
		}
		var r FileRecord
		if err := json.Unmarshal(b, &r); err != nil {
			if torn {
				// A line being written, or cut by a crash before it was
				// acknowledged (its events were not handled; the next
				// run writes it again).
				break
			}
			return nil, fmt.Errorf("dead-letter file %s line %d: %w", s.Path, line, err)
		}
		id := r.ID
		if id <= 0 {
			id = line // written by an older version
		}
		l := Letter{ID: id, CommitLSN: r.CommitLSN, Ordinal: r.Ordinal, Table: r.Table,
			IdempotencyKey: r.IdempotencyKey, Event: r.Event, Row: r.Row, Reason: r.Reason, Attempts: r.Attempts,
			FirstFailedAt: r.FirstFailedAt, LastFailedAt: r.LastFailedAt, Storage: r.Storage}
		if r.EventBase64 != nil {
			l.Event = r.EventBase64
		}
		if r.RowBase64 != nil {
			l.Row = r.RowBase64
		}
		out = append(out, l)
		if torn {
			break
		}
	}
	return out, nil
}

// List implements LetterStore. A letter written twice (a replay after a
// crash: same position and key) is listed once; the events of one row (a
// transform's outputs: same position, other keys) are a letter each.
func (s *FileLetters) List(_ context.Context, f Filter) ([]Letter, error) {
	all, err := s.read()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	var out []Letter
	for _, l := range all {
		if seen[l.key()] {
			continue
		}
		seen[l.key()] = true
		if f.match(l) {
			out = append(out, l)
		}
	}
	return out, nil
}

// Resolve implements LetterStore. The file is rewritten under its lock;
// each letter left keeps its id.
func (s *FileLetters) Resolve(_ context.Context, done []int64, failed map[int64]string, at time.Time) error {
	if s.held == nil {
		if err := s.Lock(); err != nil {
			return err
		}
		defer s.Unlock()
	}
	all, err := s.read()
	if err != nil {
		return err
	}
	drop := map[string]bool{}
	for _, l := range all {
		if slices.Contains(done, l.ID) {
			drop[l.key()] = true
		}
	}
	var buf []byte
	for _, l := range all {
		if drop[l.key()] {
			continue
		}
		if reason, ok := failed[l.ID]; ok {
			l.Attempts++
			l.Reason = reason
			l.LastFailedAt = at.UTC()
		}
		r := FileRecord{ID: l.ID, CommitLSN: l.CommitLSN, Ordinal: l.Ordinal, Table: l.Table,
			IdempotencyKey: l.IdempotencyKey, Event: l.Event, Row: l.Row, Reason: l.Reason, Attempts: l.Attempts,
			FirstFailedAt: l.FirstFailedAt, LastFailedAt: l.LastFailedAt}
		// What was kept as bytes stays so (and keeps its description).
		if l.Storage != nil {
			r.Storage = &Storage{Event: l.Storage.Event, Row: l.Storage.Row}
			if l.Storage.Event != nil {
				r.Event, r.EventBase64 = nil, nonNil(l.Event)
			}
			if l.Storage.Row != nil {
				r.Row, r.RowBase64 = nil, nonNil(l.Row)
			}
		}
		b, err := encodeRecord(r)
		if err != nil {
			return fmt.Errorf("encode dead letter: %w", err)
		}
		buf = append(append(buf, b...), '\n')
	}
	return writeFileAtomic(s.Path, buf)
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// samePath reports whether f is the file at path now.
func samePath(f *os.File, path string) (bool, error) {
	fi, err := f.Stat()
	if err != nil {
		return false, err
	}
	pi, err := os.Stat(path)
	if err != nil {
		return false, err
	}
	return os.SameFile(fi, pi), nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".dead-letters-*")
	if err != nil {
		return fmt.Errorf("rewrite dead-letter file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("rewrite dead-letter file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("rewrite dead-letter file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("rewrite dead-letter file: %w", err)
	}
	if err := os.Chmod(tmp.Name(), 0o600); err != nil {
		return fmt.Errorf("rewrite dead-letter file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("rewrite dead-letter file: %w", err)
	}
	// A running pgsignal appends to the new file next: the rename must
	// be durable before its letters are.
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("rewrite dead-letter file: sync directory: %w", err)
	}
	return nil
}

// ReplayResult counts what a replay did.
type ReplayResult struct {
	// Delivered and Failed count letters: sent and accepted (and removed),
	// sent and refused or not sent after retries (kept).
	Delivered, Failed int
	// Skipped letters hold a row that never became an event and that does
	// not become one now either: without a Remapper, every such letter;
	// with one, those ReplayRemap returns as Unmapped (kept). Fix the
	// configuration or the row.
	Skipped int
	// Remapped counts the letters whose row the Remapper turned into
	// events with the current configuration, and RemappedEvents those
	// events; they are among Delivered or Failed.
	Remapped, RemappedEvents int
	// Stale counts the letters sent whose event was older than
	// max_event_age when it was dead-lettered (IsStaleReason): a replay
	// sends them however old they are now.
	Stale int
}

// Unmapped is a dead letter whose row still cannot become an event.
type Unmapped struct {
	ID     int64
	Reason string
}

// Remapper maps the row of a dead letter whose event was never built again,
// with the current configuration.
type Remapper interface {
	// Remap returns the events (serialized, each with its idempotency
	// key) that the letter's row becomes now, or why it cannot become
	// them (reason set, no events). keep is set when the letter's stored
	// reason must not be replaced by reason (it records what the letter
	// is). err is a failure that is not the letter's (a lost connection):
	// the replay stops.
	Remap(ctx context.Context, l Letter) (events []json.RawMessage, reason string, keep bool, err error)
}

// Replay sends the selected dead letters again, with their original
// idempotency keys (the event JSON holds it), and deletes those OneSignal
// accepts. A letter that fails again stays, with its attempts and reason
// updated. 5xx, 429 and network errors are retried up to maxAttempts times.
// Letters whose row never became an event are skipped (see ReplayRemap).
func Replay(ctx context.Context, store LetterStore, client Sender, f Filter, maxAttempts int) (ReplayResult, error) {
	res, _, err := ReplayRemap(ctx, store, client, f, maxAttempts, nil)
	return res, err
}

// ReplayRemap is Replay that also maps the row of each letter whose event
// was never built again with rm (the current configuration), and sends the
// events it becomes like the others; a letter is removed once all of its
// events are accepted. A letter whose row still cannot become an event
// stays, with its attempts and reason updated (unless Remap says to keep
// the reason), and is returned in unmapped, with why. rm nil skips them.
func ReplayRemap(ctx context.Context, store LetterStore, client Sender, f Filter, maxAttempts int, rm Remapper) (res ReplayResult, unmapped []Unmapped, err error) {
	letters, err := store.List(ctx, f)
	if err != nil {
		return res, nil, err
	}
	var todo []Letter
	acc := &resolution{failed: map[int64]string{}}
	for _, l := range letters {
		if len(l.Event) == 0 && rm != nil {
			evs, reason, keep, err := rm.Remap(ctx, l)
			if err != nil {
				return res, nil, fmt.Errorf("dead letter %d: map its row again: %w", l.ID, err)
			}
			if reason != "" || len(evs) == 0 {
				if reason == "" {
					reason = "the current configuration makes no event of this row"
				}
				res.Skipped++
				unmapped = append(unmapped, Unmapped{ID: l.ID, Reason: reason})
				if !keep {
					acc.failed[l.ID] = reason
				}
				continue
			}
			res.Remapped++
			res.RemappedEvents += len(evs)
			for _, ev := range evs {
				// One item per event; the letter is done once all are.
				todo = append(todo, Letter{ID: l.ID, Event: ev})
			}
			continue
		}
		if len(l.Event) == 0 || (l.Storage != nil && l.Storage.Event != nil && l.Storage.Event.Truncated) {
			res.Skipped++
			continue
		}
		if IsStaleReason(l.Reason) {
			res.Stale++
		}
		todo = append(todo, l)
	}
	refused := len(acc.failed)
	for len(todo) > 0 {
		n, size := 0, bodyOverhead
		for n < len(todo) && n < 500 && size+len(todo[n].Event)+1 <= MaxBodyBytes {
			size += len(todo[n].Event) + 1
			n++
		}
		if n == 0 {
			n = 1
		}
		batch := todo[:n]
		todo = todo[n:]
		if err := replayBatch(ctx, client, batch, maxAttempts, acc); err != nil {
			return res, unmapped, err
		}
	}
	// A letter with several events is done when none of them failed.
	var done []int64
	seen := map[int64]bool{}
	for _, id := range acc.done {
		if _, bad := acc.failed[id]; !bad && !seen[id] {
			seen[id] = true
			done = append(done, id)
		}
	}
	res.Delivered, res.Failed = len(done), len(acc.failed)-refused
	if err := store.Resolve(ctx, done, acc.failed, time.Now()); err != nil {
		return res, unmapped, err
	}
	return res, unmapped, nil
}

type resolution struct {
	done   []int64
	failed map[int64]string
}

func replayBatch(ctx context.Context, client Sender, batch []Letter, maxAttempts int, acc *resolution) error {
	parts := make([][]byte, len(batch))
	for i, l := range batch {
		parts[i] = l.Event
	}
	body := AppendBody(nil, parts)
	var out Result
	var err error
	for attempt := 1; ; attempt++ {
		out, err = client.Send(ctx, body)
		if err == nil || Classify(err) != Retry || attempt >= maxAttempts {
			break
		}
		wait := time.Duration(attempt) * 500 * time.Millisecond
		if ra := RetryAfter(err); ra > wait {
			wait = ra
		}
		if err := sleep(ctx, wait); err != nil {
			return err
		}
	}
	switch {
	case err == nil:
		failed := map[string]EventError{}
		for _, e := range out.Failed {
			failed[e.ExternalID] = e
		}
		for _, l := range batch {
			var ev struct {
				ExternalID string `json:"external_id"`
			}
			_ = json.Unmarshal(l.Event, &ev)
			if e, bad := failed[ev.ExternalID]; bad {
				acc.failed[l.ID] = fmt.Sprintf("OneSignal: %s: %s", e.Code, e.Title)
				continue
			}
			acc.done = append(acc.done, l.ID)
		}
		return nil
	case Classify(err) == BadRequest && len(batch) > 1:
		for i := range batch {
			if err := replayBatch(ctx, client, batch[i:i+1], maxAttempts, acc); err != nil {
				return err
			}
		}
		return nil
	case Classify(err) == BadRequest:
		acc.failed[batch[0].ID] = "OneSignal rejected the event: " + err.Error()
		return nil
	case Classify(err) == Retry:
		for _, l := range batch {
			acc.failed[l.ID] = fmt.Sprintf("replay failed after %d attempts: %v", maxAttempts, err)
		}
		return nil
	default:
		return fmt.Errorf("replay: %w", err)
	}
}
