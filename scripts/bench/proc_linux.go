package main

import "syscall"

// childProcAttr puts a child in its own process group and has the kernel
// kill it when the bench dies. (The parent-death signal follows the thread
// that forked the child; the bench never locks goroutines to threads, so the
// Go runtime keeps its threads for the life of the process.)
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
