//go:build !linux

package main

import "syscall"

// childProcAttr puts a child in its own process group. The bench reads
// /proc and is meant for Linux; elsewhere it builds but its figures are
// incomplete.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
