//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package sink

import "os"

// tryLock does nothing: this platform has no flock, and `pgsignal
// dead-letters replay|discard` must not run while pgsignal runs on the same
// file.
func tryLock(*os.File) (busy bool, err error) { return false, nil }

// unlock does nothing.
func unlock(*os.File) error { return nil }

// syncDir does nothing on this platform.
func syncDir(string) error { return nil }
