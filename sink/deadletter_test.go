package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

var (
	firstFail = time.Date(2025, 10, 21, 19, 9, 32, 263e6, time.UTC)
	lastFail  = time.Date(2025, 10, 21, 19, 10, 0, 0, time.FixedZone("CEST", 2*3600))
)

// deadLetter is the dead letter of event seq for user (Event nil when
// user is "").
func deadLetter(seq uint64, user, reason string) cdc.DeadLetter {
	ev := newEvent(seq, user, 0)
	l := cdc.DeadLetter{Pos: ev.Pos, Table: ev.Table, IdempotencyKey: ev.IdempotencyKey, Reason: reason,
		Attempts: 1, FirstFailure: firstFail, LastFailure: lastFail}
	if user == "" {
		l.Row = []byte(fmt.Sprintf(`{"id":%d,"kind":null}`, seq))
		l.Attempts = 0
	} else {
		l.Event = ev.JSON
	}
	return l
}

// asLetter is what FileLetters lists for l written on line id.
func asLetter(id int64, l cdc.DeadLetter) Letter {
	return Letter{ID: id, CommitLSN: l.Pos.CommitLSN.String(), Ordinal: l.Pos.Ordinal, Table: l.Table,
		IdempotencyKey: l.IdempotencyKey, Event: l.Event, Row: l.Row, Reason: l.Reason, Attempts: l.Attempts,
		FirstFailedAt: l.FirstFailure.UTC(), LastFailedAt: l.LastFailure.UTC()}
}

func writeLetters(t *testing.T, path string, batches ...[]cdc.DeadLetter) {
	t.Helper()
	s := &FileDeadLetters{Path: path}
	for _, b := range batches {
		if err := s.Write(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func listAll(t *testing.T, path string) []Letter {
	t.Helper()
	ls, err := (&FileLetters{Path: path}).List(context.Background(), Filter{All: true})
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func checkMode(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", path, fi.Mode().Perm())
	}
}

func equalLetters(t *testing.T, got, want []Letter) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d letters, want %d:\n got %+v\nwant %+v", len(got), len(want), got, want)
	}
	for i := range got {
		g, w := got[i], want[i]
		if !g.FirstFailedAt.Equal(w.FirstFailedAt) || !g.LastFailedAt.Equal(w.LastFailedAt) {
			t.Errorf("letter %d: failed at %v..%v, want %v..%v", i, g.FirstFailedAt, g.LastFailedAt, w.FirstFailedAt, w.LastFailedAt)
		}
		g.FirstFailedAt, g.LastFailedAt, w.FirstFailedAt, w.LastFailedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
		if !bytes.Equal(g.Event, w.Event) || !bytes.Equal(g.Row, w.Row) {
			t.Errorf("letter %d: Event %s Row %s, want %s %s", i, g.Event, g.Row, w.Event, w.Row)
		}
		g.Event, g.Row, w.Event, w.Row = nil, nil, nil, nil
		if !reflect.DeepEqual(g, w) {
			t.Errorf("letter %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}

func TestFileDeadLettersWriteAndList(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dead-letters.jsonl")
	s := &FileDeadLetters{Path: path}
	if err := s.Write(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("writing no letters created the file (%v)", err)
	}
	l1 := deadLetter(1, "alive", "OneSignal: not found: failed to find a onesignal_id for user_id alive")
	l2 := deadLetter(2, "", `event name column "kind" is NULL`)
	l3 := deadLetter(3, "bob", "OneSignal rejected the event: OneSignal answered 400: events[0]: name is required")
	if err := s.Write(context.Background(), []cdc.DeadLetter{l1, l2}); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Close then Write again: the file is reopened and appended to.
	if err := s.Write(context.Background(), []cdc.DeadLetter{l3}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	if len(lines) != 4 || lines[3] != "" {
		t.Fatalf("file has lines %q, want 3 newline-terminated lines", lines)
	}
	want2 := `{"id":2,"commit_lsn":"0/1200","ordinal":2,"table":"public.events","idempotency_key":"` + l2.IdempotencyKey +
		`","row":{"id":2,"kind":null},"reason":"event name column \"kind\" is NULL","attempts":0,` +
		`"first_failed_at":"2025-10-21T19:09:32.263Z","last_failed_at":"2025-10-21T17:10:00Z"}`
	if lines[1] != want2 {
		t.Errorf("line 2 =\n  %s\nwant\n  %s", lines[1], want2)
	}
	equalLetters(t, listAll(t, path), []Letter{asLetter(1, l1), asLetter(2, l2), asLetter(3, l3)})
}

func TestFileLettersListsARewrittenPositionOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	l1 := deadLetter(1, "a", "first")
	l2 := deadLetter(2, "b", "second")
	again := l1
	again.Reason = "written again after a crash"
	writeLetters(t, path, []cdc.DeadLetter{l1, l2}, []cdc.DeadLetter{again})
	equalLetters(t, listAll(t, path), []Letter{asLetter(1, l1), asLetter(2, l2)})
}

func TestFileLettersFilter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	ls := []cdc.DeadLetter{
		deadLetter(1, "a", "OneSignal: not found: failed to find a onesignal_id for user_id a"),
		deadLetter(2, "", "timestamp column \"at\": cannot read \"infinity\" as a timestamp"),
		deadLetter(3, "c", "OneSignal: Not Found: user c"),
		deadLetter(4, "d", "OneSignal rejected the event: OneSignal answered 400: too big"),
	}
	writeLetters(t, path, ls)
	tests := []struct {
		name   string
		filter Filter
		ids    []int64
	}{
		{"all", Filter{All: true}, []int64{1, 2, 3, 4}},
		{"by id", Filter{IDs: []int64{4, 2}}, []int64{2, 4}},
		{"unknown id", Filter{IDs: []int64{99}}, nil},
		{"by reason, any case", Filter{Reason: "NOT FOUND"}, []int64{1, 3}},
		{"by id and reason", Filter{IDs: []int64{1, 2}, Reason: "not found"}, []int64{1}},
		{"reason matching nothing", Filter{Reason: "zzz"}, nil},
		{"empty filter lists all", Filter{}, []int64{1, 2, 3, 4}},
	}
	for _, tt := range tests {
		got, err := (&FileLetters{Path: path}).List(context.Background(), tt.filter)
		if err != nil {
			t.Fatal(err)
		}
		var ids []int64
		for _, l := range got {
			ids = append(ids, l.ID)
		}
		if !slices.Equal(ids, tt.ids) {
			t.Errorf("%s: ids %v, want %v", tt.name, ids, tt.ids)
		}
	}
}

func TestFilterEmpty(t *testing.T) {
	tests := []struct {
		f    Filter
		want bool
	}{
		{Filter{}, true},
		{Filter{All: true}, false},
		{Filter{IDs: []int64{1}}, false},
		{Filter{Reason: "x"}, false},
	}
	for _, tt := range tests {
		if got := tt.f.Empty(); got != tt.want {
			t.Errorf("%+v.Empty() = %v, want %v", tt.f, got, tt.want)
		}
	}
}

func TestFileLettersResolve(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "dl.jsonl")
	l1 := deadLetter(1, "a", "r1")
	l2 := deadLetter(2, "b", "r2")
	l3 := deadLetter(3, "", "r3")
	l4 := deadLetter(4, "d", "r4")
	dup := l2
	dup.Reason = "r2 again"
	writeLetters(t, path, []cdc.DeadLetter{l1, l2, l3}, []cdc.DeadLetter{dup, l4})
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("x", -3600))
	// IDs are assigned in order: 2 is l2 (its duplicate, 4, goes too), 5 is l4.
	if err := (&FileLetters{Path: path}).Resolve(context.Background(), []int64{2}, map[int64]string{5: "r4 again", 1: "r1 again"}, at); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)
	want1 := asLetter(1, l1)
	want1.Attempts, want1.Reason, want1.LastFailedAt = 2, "r1 again", at.UTC()
	want4 := asLetter(5, l4)
	want4.Attempts, want4.Reason, want4.LastFailedAt = 2, "r4 again", at.UTC()
	// The letters left keep their ids.
	equalLetters(t, listAll(t, path), []Letter{want1, asLetter(3, l3), want4})
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after Resolve, want only the file", len(entries))
	}
	// Resolving nothing keeps everything.
	if err := (&FileLetters{Path: path}).Resolve(context.Background(), nil, nil, at); err != nil {
		t.Fatal(err)
	}
	equalLetters(t, listAll(t, path), []Letter{want1, asLetter(3, l3), want4})
}

func TestFileLettersReadErrors(t *testing.T) {
	dir := t.TempDir()
	if ls, err := (&FileLetters{Path: filepath.Join(dir, "missing.jsonl")}).List(context.Background(), Filter{All: true}); err != nil || ls != nil {
		t.Errorf("missing file: %v, %v; want nothing and no error", ls, err)
	}

	path := filepath.Join(dir, "blank.jsonl")
	l := deadLetter(1, "a", "r")
	writeLetters(t, path, []cdc.DeadLetter{l})
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, append([]byte("\n  \n"), data...), 0o600); err != nil {
		t.Fatal(err)
	}
	// Blank lines are skipped; the letter keeps its id.
	equalLetters(t, listAll(t, path), []Letter{asLetter(1, l)})

	bad := filepath.Join(dir, "bad.jsonl")
	if err := os.WriteFile(bad, append(data, "{not json\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := (&FileLetters{Path: bad}).List(context.Background(), Filter{All: true})
	if want := "dead-letter file " + bad + " line 2: "; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("err = %v, want prefix %q", err, want)
	}
	if err := (&FileLetters{Path: bad}).Resolve(context.Background(), []int64{1}, nil, time.Now()); err == nil {
		t.Error("Resolve rewrote a file it cannot read")
	}
	if after, _ := os.ReadFile(bad); !bytes.Equal(after, append(data, "{not json\n"...)) {
		t.Error("a failed Resolve changed the file")
	}
}

func TestFileDeadLettersKeepEventBytes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	l := deadLetter(1, "a", "r")
	l.Event = []byte(`{"name":"click","external_id":"a","properties":{"url":"https://x.test/?a=1&b=<2>"}}`)
	writeLetters(t, path, []cdc.DeadLetter{l})
	if got := listAll(t, path)[0].Event; !bytes.Equal(got, l.Event) {
		t.Errorf("stored event\n  %s\nwant\n  %s", got, l.Event)
	}
}

// funcLetterStore is a LetterStore made of functions.
type funcLetterStore struct {
	list    func(ctx context.Context, f Filter) ([]Letter, error)
	resolve func(ctx context.Context, done []int64, failed map[int64]string, at time.Time) error
}

func (s funcLetterStore) List(ctx context.Context, f Filter) ([]Letter, error) { return s.list(ctx, f) }
func (s funcLetterStore) Resolve(ctx context.Context, done []int64, failed map[int64]string, at time.Time) error {
	return s.resolve(ctx, done, failed, at)
}

func TestReplayAgainstFake(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	srv.SetUnknownUsers("ghost")
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	delivered := deadLetter(1, "alive", "OneSignal: not found: failed to find a onesignal_id for user_id alive")
	ghost := deadLetter(2, "ghost", "OneSignal: not found: failed to find a onesignal_id for user_id ghost")
	rowOnly := deadLetter(3, "", `external_id column "user_id" is NULL`)
	invalid := deadLetter(4, "x", "earlier")
	invalid.Event = []byte(`{"name":"","external_id":"x"}`)
	writeLetters(t, path, []cdc.DeadLetter{delivered, ghost, rowOnly, invalid})

	before := time.Now()
	res, err := Replay(context.Background(), &FileLetters{Path: path}, client, Filter{All: true}, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := (ReplayResult{Delivered: 1, Failed: 2, Skipped: 1}); res != want {
		t.Errorf("Replay = %+v, want %+v", res, want)
	}
	evs := srv.Events()
	if len(evs) != 1 || evs[0].ExternalID != "alive" || evs[0].IdempotencyKey != delivered.IdempotencyKey {
		t.Fatalf("fake accepted %+v, want the letter's event with its original key", evs)
	}
	got := listAll(t, path)
	if len(got) != 3 {
		t.Fatalf("%d letters left, want 3: %+v", len(got), got)
	}
	wantGhost := asLetter(2, ghost)
	wantGhost.Attempts = 2
	wantInvalid := asLetter(4, invalid)
	wantInvalid.Attempts, wantInvalid.Reason = 2, "OneSignal rejected the event: OneSignal answered 400: events[0]: name is required"
	for _, l := range []*Letter{&got[0], &got[2]} {
		if l.LastFailedAt.Before(before.Truncate(time.Second)) || l.LastFailedAt.After(time.Now()) {
			t.Errorf("letter %d: LastFailedAt %v is not the replay's time", l.ID, l.LastFailedAt)
		}
	}
	wantGhost.LastFailedAt, wantInvalid.LastFailedAt = got[0].LastFailedAt, got[2].LastFailedAt
	equalLetters(t, got, []Letter{wantGhost, asLetter(3, rowOnly), wantInvalid})

	// Replaying an event OneSignal already has: it answers 202 and drops
	// the duplicate; the letter is done.
	path2 := filepath.Join(t.TempDir(), "dl2.jsonl")
	writeLetters(t, path2, []cdc.DeadLetter{delivered})
	res, err = Replay(context.Background(), &FileLetters{Path: path2}, client, Filter{All: true}, 1)
	if err != nil || res != (ReplayResult{Delivered: 1}) {
		t.Errorf("replaying a duplicate: %+v, %v", res, err)
	}
	if srv.Duplicates() != 1 || len(listAll(t, path2)) != 0 {
		t.Errorf("duplicates %d, letters left %d; want 1 and 0", srv.Duplicates(), len(listAll(t, path2)))
	}
}

func TestReplayRetriesThenRecordsTheFailure(t *testing.T) {
	srv, client := startFake(t, onesignaltest.Options{})
	srv.SetFaults(onesignaltest.Faults{Rate500: 1})
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	writeLetters(t, path, []cdc.DeadLetter{deadLetter(1, "a", "r")})
	start := time.Now()
	res, err := Replay(context.Background(), &FileLetters{Path: path}, client, Filter{All: true}, 2)
	if err != nil || res != (ReplayResult{Failed: 1}) {
		t.Fatalf("Replay = %+v, %v", res, err)
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Errorf("two attempts took %v, want a 500ms pause between them", d)
	}
	if srv.Requests() != 2 {
		t.Errorf("%d requests, want 2 (maxAttempts)", srv.Requests())
	}
	got := listAll(t, path)
	if want := "replay failed after 2 attempts: OneSignal answered 500: Internal server error (injected)"; len(got) != 1 || got[0].Reason != want || got[0].Attempts != 2 {
		t.Errorf("letters %+v, want one with reason %q and 2 attempts", got, want)
	}
}

func TestReplayStopsOnUnauthorized(t *testing.T) {
	srv, err := onesignaltest.Start(onesignaltest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	client := NewClient(ClientConfig{BaseURL: srv.URL(), AppID: srv.AppID(), APIKey: secretKey})
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	writeLetters(t, path, []cdc.DeadLetter{deadLetter(1, "a", "r"), deadLetter(2, "b", "r")})
	before, _ := os.ReadFile(path)
	_, err = Replay(context.Background(), &FileLetters{Path: path}, client, Filter{All: true}, 3)
	if err == nil || !strings.HasPrefix(err.Error(), "replay: OneSignal answered 403: Access denied.") || strings.Contains(err.Error(), secretKey) {
		t.Errorf("err = %v, want the 403 without the key", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("a failed replay changed the dead letters")
	}
	if srv.Requests() != 1 {
		t.Errorf("%d requests, want 1", srv.Requests())
	}
}

func TestReplayBatches(t *testing.T) {
	tests := []struct {
		name  string
		n     int
		size  int
		sizes []int
	}{
		{"500 events per request", 1200, 0, []int{500, 500, 200}},
		{"500 events of 2000 bytes fit in 1 MiB", 600, 2000, []int{500, 100}},
		{"1 MiB before 500 events", 300, 4000, []int{262, 38}}, // (1 MiB - 13) / 4001 = 262
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var letters []Letter
			for i := 1; i <= tt.n; i++ {
				letters = append(letters, Letter{ID: int64(i), Event: newEvent(uint64(i), "u", tt.size).JSON})
			}
			var sizes []int
			var maxBody int
			sender := funcSender{send: func(_ context.Context, body []byte) (Result, error) {
				var b struct {
					Events []json.RawMessage `json:"events"`
				}
				if err := json.Unmarshal(body, &b); err != nil {
					return Result{}, err
				}
				sizes = append(sizes, len(b.Events))
				maxBody = max(maxBody, len(body))
				return Result{}, nil
			}}
			var done []int64
			store := funcLetterStore{
				list: func(context.Context, Filter) ([]Letter, error) { return letters, nil },
				resolve: func(_ context.Context, d []int64, failed map[int64]string, _ time.Time) error {
					done = d
					if len(failed) != 0 {
						t.Errorf("failed %v", failed)
					}
					return nil
				},
			}
			res, err := Replay(context.Background(), store, sender, Filter{All: true}, 1)
			if err != nil || res != (ReplayResult{Delivered: tt.n}) {
				t.Fatalf("Replay = %+v, %v", res, err)
			}
			if !slices.Equal(sizes, tt.sizes) {
				t.Errorf("requests carried %v events, want %v", sizes, tt.sizes)
			}
			if maxBody > MaxBodyBytes {
				t.Errorf("a request of %d bytes", maxBody)
			}
			if len(done) != tt.n || !slices.IsSorted(done) {
				t.Errorf("resolved %d letters as done, want all %d in order", len(done), tt.n)
			}
		})
	}
}

func TestReplayResolveArguments(t *testing.T) {
	letters := []Letter{
		{ID: 10, Event: newEvent(1, "ok", 0).JSON},
		{ID: 11, Event: newEvent(2, "ghost", 0).JSON},
		{ID: 12, Row: []byte(`{"id":3}`)},
		{ID: 13, Event: newEvent(4, "ok2", 0).JSON},
	}
	sender := funcSender{send: func(context.Context, []byte) (Result, error) {
		return Result{Failed: []EventError{{ExternalID: "ghost", Code: "not found", Title: "no ghost"}}}, nil
	}}
	var gotDone []int64
	var gotFailed map[int64]string
	var gotAt time.Time
	store := funcLetterStore{
		list: func(_ context.Context, f Filter) ([]Letter, error) {
			if f.Reason != "not found" {
				t.Errorf("List got filter %+v", f)
			}
			return letters, nil
		},
		resolve: func(_ context.Context, done []int64, failed map[int64]string, at time.Time) error {
			gotDone, gotFailed, gotAt = done, failed, at
			return nil
		},
	}
	before := time.Now()
	res, err := Replay(context.Background(), store, sender, Filter{Reason: "not found"}, 1)
	if err != nil || res != (ReplayResult{Delivered: 2, Failed: 1, Skipped: 1}) {
		t.Fatalf("Replay = %+v, %v", res, err)
	}
	if !slices.Equal(gotDone, []int64{10, 13}) || !maps.Equal(gotFailed, map[int64]string{11: "OneSignal: not found: no ghost"}) {
		t.Errorf("Resolve(%v, %v)", gotDone, gotFailed)
	}
	if gotAt.Before(before) || gotAt.After(time.Now()) {
		t.Errorf("Resolve at %v, want now", gotAt)
	}

	// Store errors come back as they are.
	listErr := errors.New("list broke")
	_, err = Replay(context.Background(), funcLetterStore{list: func(context.Context, Filter) ([]Letter, error) { return nil, listErr }}, sender, Filter{All: true}, 1)
	if !errors.Is(err, listErr) {
		t.Errorf("err = %v, want the List error", err)
	}
	resolveErr := errors.New("resolve broke")
	store.resolve = func(context.Context, []int64, map[int64]string, time.Time) error { return resolveErr }
	res, err = Replay(context.Background(), store, sender, Filter{Reason: "not found"}, 1)
	if !errors.Is(err, resolveErr) || res.Delivered != 2 {
		t.Errorf("Replay = %+v, %v; want the counts and the Resolve error", res, err)
	}
}

func TestDeadLettersThroughTheSinkCanBeReplayed(t *testing.T) {
	// End to end in read-only mode: the sink writes not-found events to the
	// file, the user appears, the operator replays them.
	srv, client := startFake(t, onesignaltest.Options{})
	srv.SetUnknownUsers("late")
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	dl := &FileDeadLetters{Path: path}
	s, h := startSink(t, Config{BatchSize: 4, Linger: time.Second, Concurrency: 1}, client, dl)
	submit(t, s, newEvent(1, "late", 0), newEvent(2, "early", 0), newEvent(3, "late", 0), rejectEvent(4, "bad row"))
	exactlyOnce(t, h.wait(t, 4, 2*time.Second), seqRange(1, 4))
	if err := dl.Close(); err != nil {
		t.Fatal(err)
	}
	checkMode(t, path)
	if got := listAll(t, path); len(got) != 3 {
		t.Fatalf("%d letters, want 3", len(got))
	}
	srv.SetUnknownUsers()
	res, err := Replay(context.Background(), &FileLetters{Path: path}, client, Filter{Reason: "not found"}, 1)
	if err != nil || res != (ReplayResult{Delivered: 2}) {
		t.Fatalf("Replay = %+v, %v", res, err)
	}
	if got := arrivalSeqs(t, srv); !slices.Equal(got, []uint64{2, 1, 3}) {
		t.Errorf("accepted seqs %v, want [2 1 3]", got)
	}
	left := listAll(t, path)
	if len(left) != 1 || left[0].Reason != "bad row" {
		t.Errorf("letters left %+v, want the rejected row only", left)
	}
}
