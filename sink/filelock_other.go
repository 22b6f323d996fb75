//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sink

import (
	"fmt"
	"os"
)

// lockPath opens path with flag. This platform has no flock: the file is
// not locked, and `pgsignal dead-letters replay|discard` must not run while
// pgsignal runs on the same file.
func lockPath(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open dead-letter file: %w", err)
	}
	return f, nil
}
