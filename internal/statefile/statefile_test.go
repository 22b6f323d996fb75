package statefile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPutGetReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]int
	if ok, err := f.Get("ledger", &got); ok || err != nil {
		t.Fatalf("Get on an empty state = %v, %v", ok, err)
	}
	if err := f.Put(map[string]any{"ledger": map[string]int{"a": 1}, "query": []int{7}}); err != nil {
		t.Fatal(err)
	}
	if err := f.Put(map[string]any{"query": nil}); err != nil {
		t.Fatal(err)
	}
	g, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := g.Get("ledger", &got); !ok || err != nil || got["a"] != 1 {
		t.Fatalf("reopened ledger = %v (%v, %v)", got, ok, err)
	}
	var q []int
	if ok, _ := g.Get("query", &q); ok {
		t.Fatalf("removed section still there: %v", q)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestOpenRefusesAForeignFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	os.WriteFile(path, []byte("not json"), 0o600)
	_, err := Open(path)
	if err == nil || !strings.Contains(err.Error(), "is not pgsignal's state") {
		t.Fatalf("Open = %v", err)
	}
	os.WriteFile(path, []byte(`{"version":99,"sections":{}}`), 0o600)
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), "format version 99") {
		t.Fatalf("Open = %v", err)
	}
}

func TestPutIntoMissingDirectoryLeavesStateUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gone", "state.json")
	f, _ := Open(path)
	if err := f.Put(map[string]any{"a": 1}); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Put = %v, want an error naming %s", err, path)
	}
	var v int
	if ok, _ := f.Get("a", &v); ok {
		t.Fatal("a failed Put changed the state in memory")
	}
}

// Two owners of sections in one process, each with its own File, keep each
// other's sections.
func TestTwoFilesOnOnePathKeepEachOthersSections(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	a, _ := Open(path)
	b, _ := Open(path)
	if err := a.Put(map[string]any{"ledger": 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.Put(map[string]any{"query": 2}); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(map[string]any{"ledger": 3}); err != nil {
		t.Fatal(err)
	}
	c, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var l, q int
	if ok, _ := c.Get("ledger", &l); !ok || l != 3 {
		t.Errorf("ledger = %d (%v), want 3", l, ok)
	}
	if ok, _ := c.Get("query", &q); !ok || q != 2 {
		t.Errorf("query = %d (%v), want 2", q, ok)
	}
}
