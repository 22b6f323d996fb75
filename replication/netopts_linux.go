package replication

import (
	"fmt"
	"syscall"
	"time"
)

// tcpUserTimeout is Linux's TCP_USER_TIMEOUT socket option (not in package
// syscall).
const tcpUserTimeout = 0x12

// setTCPUserTimeout sets TCP_USER_TIMEOUT on the socket fd.
func setTCPUserTimeout(fd uintptr, d time.Duration) error {
	if err := syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(d.Milliseconds())); err != nil {
		return fmt.Errorf("set TCP_USER_TIMEOUT: %w", err)
	}
	return nil
}
