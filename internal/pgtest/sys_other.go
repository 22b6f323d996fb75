//go:build unix && !linux

package pgtest

import (
	"errors"
	"os/exec"
	"syscall"
)

// sysProcAttr returns the attributes for initdb and postgres: run as cred
// (nil: as ourselves). There is no parent-death signal outside Linux.
func sysProcAttr(cred *syscall.Credential, _ syscall.Signal) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred}
}

var spawn spawner

// spawner starts child processes; outside Linux there is no parent-death
// signal to protect, so it starts them directly.
type spawner struct{}

func (spawner) start(cmd *exec.Cmd) error { return cmd.Start() }

func (spawner) done() {}

// procsInDir is not supported outside Linux.
func procsInDir(string) []int { return nil }

// procStartTime is not supported outside Linux.
func procStartTime(int) (uint64, error) { return 0, errors.ErrUnsupported }
