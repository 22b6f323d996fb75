// Package statefile keeps read-only mode's state in one local JSON file:
// what full mode keeps in the bookkeeping schema (the delivery ledger, the
// query method's position). Each part of pgsignal owns a named section; Put
// replaces sections and writes the whole file atomically (a temporary file
// in the same directory, fsynced, renamed over the old one, and the
// directory fsynced), so a crash leaves either the old file or the new one,
// never a mix.
package statefile

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// Version is the format version written in the file.
const Version = 1

// File is an open state file. Its methods are safe for concurrent use.
type File struct {
	path     string
	mu       sync.Mutex
	sections map[string]json.RawMessage
}

type document struct {
	Version  int                        `json:"version"`
	Sections map[string]json.RawMessage `json:"sections"`
}

// Open reads the state file at path. A missing file is an empty state (it
// is created by the first Put); a file that is not a state file is an error
// that names it, never silently replaced.
func Open(path string) (*File, error) {
	f := &File{path: path, sections: map[string]json.RawMessage{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state file %s: %w", path, err)
	}
	var d document
	if err := json.Unmarshal(b, &d); err != nil {
		return nil, fmt.Errorf("state file %s is not pgsignal's state (%v): restore it from a backup, or move it away to start without the state it held", path, err)
	}
	if d.Version != Version {
		return nil, fmt.Errorf("state file %s has format version %d; this pgsignal reads version %d: use the pgsignal that wrote it", path, d.Version, Version)
	}
	for k, v := range d.Sections {
		f.sections[k] = v
	}
	return f, nil
}

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Get decodes the section named name into v. It reports whether the section
// exists.
func (f *File) Get(name string, v any) (bool, error) {
	f.mu.Lock()
	raw, ok := f.sections[name]
	f.mu.Unlock()
	if !ok {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("state file %s: section %q: %w", f.path, name, err)
	}
	return true, nil
}

// putMu serializes Put across every File of the process: two parts of
// pgsignal (the delivery ledger, the query method) may each open the same
// path, and each Put merges its sections into what is on disk.
var putMu sync.Mutex

// Put sets each named section to its value (nil removes it) and writes the
// file durably before returning. The other sections are those on disk at
// that moment (another File of the process may have written them), so
// several owners of sections can share one path. On error the file on disk
// is unchanged and so is f.
func (f *File) Put(sections map[string]any) error {
	putMu.Lock()
	defer putMu.Unlock()
	f.mu.Lock()
	defer f.mu.Unlock()
	next := map[string]json.RawMessage{}
	if cur, err := Open(f.path); err == nil {
		for k, v := range cur.sections {
			next[k] = v
		}
	} else {
		return fmt.Errorf("state file %s: read before writing: %w", f.path, err)
	}
	for k, v := range sections {
		if v == nil {
			delete(next, k)
			continue
		}
		b, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("state file %s: encode section %q: %w", f.path, k, err)
		}
		next[k] = b
	}
	b, err := json.Marshal(document{Version: Version, Sections: next})
	if err != nil {
		return fmt.Errorf("state file %s: encode: %w", f.path, err)
	}
	if err := writeAtomic(f.path, b); err != nil {
		return err
	}
	f.sections = next
	return nil
}

// writeAtomic replaces path with b: temporary file, fsync, rename, fsync of
// the directory.
func writeAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write state file %s: %w", path, err)
	}
	name := tmp.Name()
	fail := func(err error) error {
		tmp.Close()
		os.Remove(name)
		return fmt.Errorf("write state file %s: %w", path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		return fail(err)
	}
	if err := tmp.Sync(); err != nil {
		return fail(err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(name)
		return fmt.Errorf("write state file %s: %w", path, err)
	}
	if err := os.Rename(name, path); err != nil {
		os.Remove(name)
		return fmt.Errorf("write state file %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("write state file %s: open its directory: %w", path, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("write state file %s: sync its directory: %w", path, err)
	}
	return nil
}
