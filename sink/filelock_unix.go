//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package sink

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// lockPath opens path with flag and takes an exclusive flock on it without
// waiting. It returns ErrFileInUse when another open file holds the lock.
// The file at path may be replaced (a rewrite renames a new file over it)
// between the open and the lock: then the lock is taken again on the new one.
func lockPath(path string, flag int) (*os.File, error) {
	for {
		f, err := os.OpenFile(path, flag, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open dead-letter file: %w", err)
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("dead-letter file %s: %w", path, ErrFileInUse)
			}
			return nil, fmt.Errorf("lock dead-letter file %s: %w", path, err)
		}
		same, err := samePath(f, path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			f.Close()
			return nil, fmt.Errorf("dead-letter file %s: %w", path, err)
		}
		if same {
			return f, nil
		}
		f.Close()
	}
}
