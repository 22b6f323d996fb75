package sink

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/cdc"
)

// A file written by an older version (lines without an id) keeps working:
// its letters have their line numbers, a letter appended after them gets a
// higher id, and a discard keeps every other letter's id (written into the
// lines from then on).
func TestFileLettersStableIDsOnAnOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	l1, l2, l3, l4 := deadLetter(1, "a", "r1"), deadLetter(2, "b", "r2"), deadLetter(3, "c", "r3"), deadLetter(4, "d", "r4")
	writeLetters(t, path, []cdc.DeadLetter{l1, l2, l3})
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	old := regexp.MustCompile(`"id":\d+,`).ReplaceAll(data, nil)
	if err := os.WriteFile(path, old, 0o600); err != nil {
		t.Fatal(err)
	}
	equalLetters(t, listAll(t, path), []Letter{asLetter(1, l1), asLetter(2, l2), asLetter(3, l3)})
	writeLetters(t, path, []cdc.DeadLetter{l4})
	if err := (&FileLetters{Path: path}).Resolve(context.Background(), []int64{1}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	equalLetters(t, listAll(t, path), []Letter{asLetter(2, l2), asLetter(3, l3), asLetter(4, l4)})
	if err := (&FileLetters{Path: path}).Resolve(context.Background(), []int64{2}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	equalLetters(t, listAll(t, path), []Letter{asLetter(3, l3), asLetter(4, l4)})
	// Appended after a rewrite (the writer had the file open before it).
	l5 := deadLetter(5, "e", "r5")
	writeLetters(t, path, []cdc.DeadLetter{l5})
	equalLetters(t, listAll(t, path), []Letter{asLetter(3, l3), asLetter(4, l4), asLetter(5, l5)})
}

// A writer that keeps the file open learns of another writer's appends
// and of a rewrite: ids are never given twice.
func TestFileDeadLettersIDsWithTwoWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dl.jsonl")
	a, b := &FileDeadLetters{Path: path}, &FileDeadLetters{Path: path}
	defer a.Close()
	defer b.Close()
	ls := []cdc.DeadLetter{deadLetter(1, "a", "r"), deadLetter(2, "b", "r"), deadLetter(3, "c", "r"), deadLetter(4, "d", "r")}
	ctx := context.Background()
	for i, w := range []*FileDeadLetters{a, b, a} {
		if err := w.Write(ctx, ls[i:i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := (&FileLetters{Path: path}).Resolve(ctx, []int64{3}, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := b.Write(ctx, ls[3:]); err != nil {
		t.Fatal(err)
	}
	// 3 was discarded: the next id is one more than the highest left (or
	// the line count), so the highest id, once discarded, is given again.
	equalLetters(t, listAll(t, path), []Letter{asLetter(1, ls[0]), asLetter(2, ls[1]), asLetter(3, ls[3])})
}
