package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// TestProcUnixSocketSilentWalsender: over the Unix socket the replication
// connection reads ahead on a goroutine whose reads have no deadline (the
// stream's reads of the buffer do). The walsender is stopped with SIGSTOP:
// the socket stays open and says nothing, as a hung server would. pgsignal
// declares the connection dead after source.receive_timeout; once the
// walsender runs again (SIGCONT) and lets go of the slot, pgsignal streams
// again, and every row inserted before, during and after is delivered
// exactly once.
func TestProcUnixSocketSilentWalsender(t *testing.T) {
	e := newEnv(t, pgtest.Options{Conf: map[string]string{"wal_sender_timeout": "5s"}}, onesignaltest.Options{})
	p := e.startProc(e.writeHangConfig(e.pg.SocketDSN(""), "  receive_timeout: 2s", "30s"))
	e.waitStreaming(p)
	metrics := p.metricsURL(t)
	e.insertRows(0, 10)
	e.waitCount(10, 60*time.Second, p)
	if log := p.logText(t); !strings.Contains(log, `"read_ahead":true`) {
		t.Fatalf("the Unix-socket connection does not read ahead:\n%s", p.tail())
	}

	pid := int(e.queryInt(`SELECT pid FROM pg_stat_replication WHERE application_name = 'pgsignal'`))
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	continued := false
	defer func() {
		if !continued {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
	}()
	e.insertRows(10, 10)
	for !strings.Contains(p.logText(t), "presumed dead") {
		if time.Since(stopped) > 30*time.Second {
			t.Fatalf("the silent connection was not declared dead in 30s:\n%s", p.tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	dead := time.Since(stopped)
	if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	continued = true
	e.waitCount(20, 90*time.Second, p)
	e.insertRows(20, 10)
	e.waitCount(30, 60*time.Second, p)
	reconnects := metric(t, metrics, "pgsignal_replication_reconnects_total")
	t.Logf("figures: declared dead %s after SIGSTOP (receive_timeout 2s), reconnects %v", dead.Round(10*time.Millisecond), reconnects)
	if reconnects < 1 {
		t.Fatalf("reconnects %v, want >= 1", reconnects)
	}
	p.term(t)
	e.checkExactlyOnce(30)
}
