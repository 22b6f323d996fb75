package pgtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// sweepOnce makes the first Start of a process sweep stale directories.
var sweepOnce sync.Once

// ownerLine identifies this process for the owner file: "PID STARTTIME".
func ownerLine() string {
	pid := os.Getpid()
	st, _ := procStartTime(pid)
	return fmt.Sprintf("%d %d\n", pid, st)
}

// sweepStale removes the directories of clusters whose owning process died
// without Stop (a killed or timed-out test binary). The parent-death signal
// already stopped their servers. A directory is removed only when its owner
// file names a process that no longer exists (pid and start time), and no
// process, postmaster or backend, runs in its data directory. Anything
// unclear is left alone.
func sweepStale(logf func(string, ...any)) {
	if _, err := procStartTime(os.Getpid()); err != nil {
		return // cannot tell live owners from dead ones
	}
	bases := []string{os.TempDir()}
	if bases[0] != "/tmp" {
		bases = append(bases, "/tmp")
	}
	for _, base := range bases {
		roots, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*"))
		for _, root := range roots {
			if !stale(root) {
				continue
			}
			if err := os.RemoveAll(root); err != nil {
				logf("pgtest: remove stale %s: %v", root, err)
				continue
			}
			logf("pgtest: removed stale %s left by a process that died", root)
		}
	}
}

// stale reports whether root belongs to a dead process and nothing runs in
// it.
func stale(root string) bool {
	b, err := os.ReadFile(filepath.Join(root, ownerName))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return false
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 || start == 0 {
		return false
	}
	if cur, err := procStartTime(pid); err == nil && cur == start {
		return false // owner alive
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return false
	}
	// The postmaster and every backend run in the data directory.
	return len(procsInDir(filepath.Join(root, "data"))) == 0
}
