package sink

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// Tests of issue 11, items 1 and 4, at the store level: what a dead letter
// holds never makes its write fail, every file stays readable, and the
// file's lock keeps the commands and the running process apart.

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// A row nested over 10,000 levels and an event that is not JSON (Go's
// encoder refuses both as raw JSON) are kept as bytes, exactly; the
// listing, a rewrite and the JSON listing keep them so.
func TestFileDeadLettersKeepUnencodableAsBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	deep := []byte(`{"event_data":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`)
	notJSON := []byte(`{"name":"x","bad":` + "\xff\x00" + `}`)
	a := deadLetter(1, "", "no user")
	a.Row = deep
	b := deadLetter(2, "u", "OneSignal rejected the event")
	b.Event = notJSON
	c := deadLetter(3, "", "no user")
	c.Row = []byte(`{"s":"caf` + "\xe9" + `"}`)
	writeLetters(t, path, []cdc.DeadLetter{a, b, c})

	check := func(ls []Letter) {
		t.Helper()
		if len(ls) != 3 {
			t.Fatalf("%d letters, want 3", len(ls))
		}
		if !bytes.Equal(ls[2].Row, c.Row) || ls[2].Storage == nil || ls[2].Storage.Row == nil || ls[2].Storage.Row.Why != "not valid UTF-8" {
			t.Errorf("letter 3: row %q, storage %+v", ls[2].Row, ls[2].Storage)
		}
		if !bytes.Equal(ls[0].Row, deep) || ls[0].Storage == nil || ls[0].Storage.Row == nil || ls[0].Storage.Event != nil {
			t.Fatalf("letter 1: row %.40s..., storage %+v", ls[0].Row, ls[0].Storage)
		}
		if k := ls[0].Storage.Row; !strings.Contains(k.Why, "exceeded max depth") || k.Size != len(deep) || k.SHA256 != sha(deep) || k.Truncated {
			t.Errorf("letter 1 kept as %+v", k)
		}
		if !bytes.Equal(ls[1].Event, notJSON) || ls[1].Storage == nil || ls[1].Storage.Event == nil || ls[1].Storage.Row != nil {
			t.Fatalf("letter 2: event %q, storage %+v", ls[1].Event, ls[1].Storage)
		}
	}
	check(listAll(t, path))
	// A rewrite (another failed attempt) keeps them.
	if err := (&FileLetters{Path: path}).Resolve(context.Background(), nil, map[int64]string{1: "again"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	ls := listAll(t, path)
	check(ls)
	if ls[0].Reason != "again" || ls[0].Attempts != 1 {
		t.Errorf("letter 1 after the rewrite: %q, %d attempts", ls[0].Reason, ls[0].Attempts)
	}
	// `dead-letters list --json` encodes what is not JSON as base64.
	out, err := json.Marshal(ls)
	if err != nil {
		t.Fatal(err)
	}
	var back []struct {
		Row         json.RawMessage `json:"row"`
		Event       json.RawMessage `json:"event"`
		RowBase64   []byte          `json:"row_base64"`
		EventBase64 []byte          `json:"event_base64"`
		Storage     *Storage        `json:"storage"`
	}
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back[0].RowBase64, deep) || string(back[0].Row) != "null" || !bytes.Equal(back[1].EventBase64, notJSON) ||
		back[0].Storage == nil || back[0].Storage.Row == nil {
		t.Errorf("JSON listing: %.300s", out)
	}
}

// Beyond the bound a dead letter keeps the first maxKept bytes, with the
// whole's size and hash; a truncated event is not replayed.
func TestFileDeadLettersTruncateBeyondBound(t *testing.T) {
	defer func(n int) { maxKept = n }(maxKept)
	maxKept = 300
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	a := deadLetter(1, "", "no user")
	a.Row = []byte(`{"big":"` + strings.Repeat("y", 400) + `"}`)
	b := deadLetter(2, "ghost", "OneSignal: not found")
	b.Event = []byte(`{"name":"n","external_id":"ghost","properties":{"p":"` + strings.Repeat("z", 400) + `"}}`)
	c := deadLetter(3, "ghost", "OneSignal: not found")
	writeLetters(t, path, []cdc.DeadLetter{a, b, c})
	ls := listAll(t, path)
	if len(ls) != 3 {
		t.Fatalf("%d letters", len(ls))
	}
	if k := ls[0].Storage.Row; k == nil || !k.Truncated || k.Size != len(a.Row) || k.SHA256 != sha(a.Row) || !bytes.Equal(ls[0].Row, a.Row[:300]) {
		t.Errorf("row kept as %+v: %s", k, ls[0].Row)
	}
	if k := ls[1].Storage.Event; k == nil || !k.Truncated || k.Size != len(b.Event) || !bytes.Equal(ls[1].Event, b.Event[:300]) {
		t.Errorf("event kept as %+v", k)
	}
	if ls[2].Storage != nil || !bytes.Equal(ls[2].Event, c.Event) {
		t.Errorf("a small letter kept as %+v", ls[2].Storage)
	}
	srv, client := startFake(t, onesignaltest.Options{})
	res, err := Replay(context.Background(), &FileLetters{Path: path}, client, Filter{All: true}, 1)
	if err != nil || res != (ReplayResult{Delivered: 1, Skipped: 2}) || srv.Count() != 1 {
		t.Fatalf("replay: %+v, %v; fake has %d", res, err, srv.Count())
	}
	if ls := listAll(t, path); len(ls) != 2 || ls[1].Storage.Event == nil || !ls[1].Storage.Event.Truncated {
		t.Fatalf("after replay: %+v", ls)
	}
}

// A line cut by a crash (never acknowledged) is not listed and is cut off
// by the next write, which appends whole lines after it.
func TestFileDeadLettersTornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	writeLetters(t, path, []cdc.DeadLetter{deadLetter(1, "a", "r1")})
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, append(bytes.Clone(good), `{"commit_lsn":"0/1","ordi`...), 0o600); err != nil {
		t.Fatal(err)
	}
	if ls := listAll(t, path); len(ls) != 1 || ls[0].Reason != "r1" {
		t.Fatalf("listed %+v", ls)
	}
	writeLetters(t, path, []cdc.DeadLetter{deadLetter(2, "b", "r2")})
	ls := listAll(t, path)
	if len(ls) != 2 || ls[1].Reason != "r2" || ls[1].ID != 2 {
		t.Fatalf("listed %+v", ls)
	}
	// A torn line in the middle is an error that names it.
	b, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append([]byte("{\"commit\n"), b...), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := (&FileLetters{Path: path}).List(context.Background(), Filter{}); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("List = %v", err)
	}
}

// A line of any length is read (the old reader stopped at 16 MB).
func TestFileLettersReadLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	a := deadLetter(1, "", "no user")
	a.Row = []byte(`{"big":"` + strings.Repeat("y", 17<<20) + `"}`)
	writeLetters(t, path, []cdc.DeadLetter{a, deadLetter(2, "u", "r2")})
	ls := listAll(t, path)
	if len(ls) != 2 || !bytes.Equal(ls[0].Row, a.Row) || ls[0].Storage != nil {
		t.Fatalf("%d letters", len(ls))
	}
}

// The commands that rewrite the file may run while a writer (pgsignal) has
// it open: the writer's next letters go to the new file, not to the one
// that was replaced. While a command holds the lock, a write waits, then
// fails (to be retried, not ErrLetterRefused), and a second command waits,
// then fails with ErrFileInUse. A file removed under the writer is created
// again.
func TestFileLockKeepsCommandsAndWriterApart(t *testing.T) {
	defer func(w, c time.Duration) { writerLockWait, commandLockWait = w, c }(writerLockWait, commandLockWait)
	writerLockWait, commandLockWait = 50*time.Millisecond, 50*time.Millisecond
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	w := &FileDeadLetters{Path: path}
	defer w.Close()
	ctx := context.Background()
	if err := w.Write(ctx, []cdc.DeadLetter{deadLetter(1, "a", "r1"), deadLetter(2, "b", "r2")}); err != nil {
		t.Fatal(err)
	}
	cmd := &FileLetters{Path: path}
	if err := cmd.Resolve(ctx, []int64{1}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, []cdc.DeadLetter{deadLetter(3, "c", "r3")}); err != nil {
		t.Fatal(err)
	}
	if ls := listAll(t, path); len(ls) != 2 || ls[0].Reason != "r2" || ls[1].Reason != "r3" {
		t.Fatalf("after a rewrite while the writer runs: %+v", ls)
	}

	if err := cmd.Lock(); err != nil {
		t.Fatal(err)
	}
	err := w.Write(ctx, []cdc.DeadLetter{deadLetter(4, "d", "r4")})
	if !errors.Is(err, ErrFileInUse) || errors.Is(err, ErrLetterRefused) {
		t.Fatalf("Write while a command holds the file = %v", err)
	}
	other := &FileLetters{Path: path}
	if err := other.Resolve(ctx, []int64{1}, nil, time.Now()); !errors.Is(err, ErrFileInUse) {
		t.Fatalf("a second command = %v, want ErrFileInUse", err)
	}
	if ls := listAll(t, path); len(ls) != 2 {
		t.Fatalf("listing while locked: %d letters", len(ls))
	}
	// Ids are stable: the first letter listed now is r2's.
	if err := cmd.Resolve(ctx, []int64{listAll(t, path)[0].ID}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	cmd.Unlock()
	if err := w.Write(ctx, []cdc.DeadLetter{deadLetter(4, "d", "r4")}); err != nil {
		t.Fatal(err)
	}
	if ls := listAll(t, path); len(ls) != 2 || ls[0].Reason != "r3" || ls[1].Reason != "r4" {
		t.Fatalf("after the second rewrite: %+v", ls)
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(ctx, []cdc.DeadLetter{deadLetter(5, "e", "r5")}); err != nil {
		t.Fatal(err)
	}
	if ls := listAll(t, path); len(ls) != 1 || ls[0].Reason != "r5" {
		t.Fatalf("after removal: %+v", ls)
	}
}

// A row a transform turned into two events (one position, two keys) is two
// letters: listed, resolved and replayed as two; a letter written twice
// (same position and key) is still one.
func TestFileLettersTwoEventsOfOneRow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	a := deadLetter(1, "ghost_a", "OneSignal: not found")
	b := a
	b.IdempotencyKey = cdc.UUIDv5([16]byte{1}, a.IdempotencyKey, "ghost_b")
	b.Event = bytes.Replace(a.Event, []byte(a.IdempotencyKey), []byte(b.IdempotencyKey), 1)
	b.Event = bytes.Replace(b.Event, []byte("ghost_a"), []byte("ghost_b"), 1)
	c := deadLetter(2, "ghost_c", "OneSignal: not found")
	writeLetters(t, path, []cdc.DeadLetter{a, b}, []cdc.DeadLetter{a, c})
	ls := listAll(t, path)
	if len(ls) != 3 || ls[0].ID != 1 || ls[1].ID != 2 || ls[2].ID != 4 {
		t.Fatalf("listed %+v", ls)
	}
	if err := (&FileLetters{Path: path}).Resolve(context.Background(), []int64{1}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	ls = listAll(t, path)
	if len(ls) != 2 || ls[0].IdempotencyKey != b.IdempotencyKey || ls[1].IdempotencyKey != c.IdempotencyKey {
		t.Fatalf("after discarding letter 1: %+v", ls)
	}
	srv, client := startFake(t, onesignaltest.Options{})
	res, err := Replay(context.Background(), &FileLetters{Path: path}, client, Filter{All: true}, 1)
	if err != nil || res != (ReplayResult{Delivered: 2}) || srv.Count() != 2 {
		t.Fatalf("replay: %+v, %v; fake has %d", res, err, srv.Count())
	}
	if ls := listAll(t, path); len(ls) != 0 {
		t.Fatalf("left %+v", ls)
	}
}

// A store that refuses letters for good stops the sink with the error;
// nothing is reported handled. A store that fails for now is retried and
// reported failing (for the stall message) until it works.
func TestSinkDeadLetterStoreRefusedOrFailing(t *testing.T) {
	_, client := startFake(t, onesignaltest.Options{})
	s, h := startSink(t, Config{Concurrency: 1, Linger: time.Millisecond}, client, funcLetters{write: func(context.Context, []cdc.DeadLetter) error {
		return errors.Join(ErrLetterRefused, errors.New("no"))
	}})
	submit(t, s, rejectEvent(1, "bad"))
	err := waitSignal(t, s.Err(), 5*time.Second, "sink error")
	if !errors.Is(err, ErrLetterRefused) || !strings.Contains(err.Error(), "nothing after the last handled event was confirmed") {
		t.Fatalf("Err = %v", err)
	}
	if seqs := h.get(); len(seqs) != 0 {
		t.Fatalf("handled %v", seqs)
	}

	var failing atomic.Bool
	failing.Store(true)
	s, h = startSink(t, Config{Concurrency: 2, Linger: time.Millisecond}, client, funcLetters{write: func(context.Context, []cdc.DeadLetter) error {
		if failing.Load() {
			return errors.New("connection refused")
		}
		return nil
	}})
	submit(t, s, rejectEvent(1, "bad"))
	eventually(t, 5*time.Second, "store reported failing", func() bool {
		st := s.Stats()
		return st.DeadLetterStoreFailing && st.DeadLetterWriteFailures >= 2
	})
	failing.Store(false)
	h.wait(t, 1, 5*time.Second)
	if st := s.Stats(); st.DeadLetterStoreFailing || st.DeadLettered != 1 {
		t.Fatalf("Stats = %+v", st)
	}
}

// A full disk is a failure of the store, retried: not ErrLetterRefused.
func TestFileDeadLettersDiskFullIsRetried(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	w := &FileDeadLetters{Path: "/dev/full"}
	defer w.Close()
	err := w.Write(context.Background(), []cdc.DeadLetter{deadLetter(1, "a", "r1")})
	if err == nil || errors.Is(err, ErrLetterRefused) || !strings.Contains(err.Error(), "no space left on device") {
		t.Fatalf("Write = %v", err)
	}
}
