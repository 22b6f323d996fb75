package pgtest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
)

// sysProcAttr returns the attributes for initdb and postgres: run as cred
// (nil: as ourselves) and receive deathSig when the spawning thread dies.
func sysProcAttr(cred *syscall.Credential, deathSig syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: deathSig}
}

// spawn is the process-wide spawner.
var spawn spawner

// spawner starts child processes from one goroutine locked to its OS thread.
// The kernel sends the parent-death signal when the thread that forked the
// child exits (https://go.dev/issue/27505), and the Go runtime ends a thread
// whenever a goroutine that locked it exits. Forking from a thread that lives
// as long as any of its children keeps an unrelated LockOSThread elsewhere in
// the test binary from killing a server. The goroutine exits once no child is
// alive, so tests that check for leaked goroutines see none after Stop.
type spawner struct {
	mu   sync.Mutex
	ch   chan func()
	live int
}

// start starts cmd on the spawner thread. Unless it returns an error, the
// caller must call done once cmd has exited.
func (sp *spawner) start(cmd *exec.Cmd) error {
	sp.mu.Lock()
	if sp.ch == nil {
		sp.ch = make(chan func())
		go spawnLoop(sp.ch)
	}
	sp.live++
	ch := sp.ch
	sp.mu.Unlock()

	errc := make(chan error, 1)
	ch <- func() { errc <- cmd.Start() }
	if err := <-errc; err != nil {
		sp.done()
		return err
	}
	return nil
}

// done records that a child started by start has exited.
func (sp *spawner) done() {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.live--
	if sp.live == 0 {
		close(sp.ch)
		sp.ch = nil
	}
}

func spawnLoop(ch chan func()) {
	// Never unlocked: the thread ends with the goroutine, after every child
	// it forked has exited.
	runtime.LockOSThread()
	for f := range ch {
		f()
	}
}

// procsInDir returns the processes, other than this one, whose working
// directory is dir. PostgreSQL's postmaster and all its children chdir into
// the data directory, so this finds a cluster's backends even after the
// postmaster died and they were reparented.
func procsInDir(dir string) []int {
	want, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cwd, err := os.Readlink("/proc/" + e.Name() + "/cwd")
		if err == nil && cwd == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

// procStartTime returns the start time of process pid in clock ticks since
// boot (field 22 of /proc/PID/stat), which with the pid identifies a process
// across pid reuse. A zombie counts as gone: the error wraps os.ErrNotExist.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	fields := bytes.Fields(b[i+1:])
	// fields[0] is field 3 (state), so field 22 is fields[19].
	if len(fields) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(fields))
	}
	if string(fields[0]) == "Z" {
		return 0, fmt.Errorf("process %d: zombie: %w", pid, os.ErrNotExist)
	}
	return strconv.ParseUint(string(fields[19]), 10, 64)
}
