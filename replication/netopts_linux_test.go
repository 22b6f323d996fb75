package replication

import (
	"syscall"
	"testing"
	"time"
)

func sockopt(t *testing.T, src Source, level, opt int) int {
	t.Helper()
	raw, err := dialSocket(t, src).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := raw.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), level, opt) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}

func TestSocketKeepaliveAndUserTimeout(t *testing.T) {
	if v := sockopt(t, Source{}, syscall.IPPROTO_TCP, tcpUserTimeout); v != int(DefaultTCPUserTimeout.Milliseconds()) {
		t.Errorf("TCP_USER_TIMEOUT %d ms, want %d", v, DefaultTCPUserTimeout.Milliseconds())
	}
	if v := sockopt(t, Source{ReceiveTimeout: 45 * time.Second}, syscall.IPPROTO_TCP, tcpUserTimeout); v != 45000 {
		t.Errorf("TCP_USER_TIMEOUT %d ms with receive_timeout 45s, want 45000", v)
	}
	if v := sockopt(t, Source{}, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); v != 1 {
		t.Errorf("SO_KEEPALIVE %d, want 1", v)
	}
	if v := sockopt(t, Source{}, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE); v != int(tcpKeepAliveIdle.Seconds()) {
		t.Errorf("TCP_KEEPIDLE %d s, want %v", v, tcpKeepAliveIdle)
	}
}
