//go:build !linux

package replication

import "time"

// setTCPUserTimeout does nothing where TCP_USER_TIMEOUT does not exist; TCP
// keepalives and the receive timeout still apply.
func setTCPUserTimeout(uintptr, time.Duration) error { return nil }
