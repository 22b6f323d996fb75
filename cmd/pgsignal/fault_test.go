package main

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// Fault 1: kill -9 pgsignal three times at random points while 100,000
// events stream; the fake ends with exactly 100,000 unique keys.
func TestFaultKill9ThreeTimes(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "")
	const total, per = 100000, 1000
	p := e.startProc(cfg)
	e.waitStreaming(p)
	inserted := make(chan struct{})
	go func() {
		defer close(inserted)
		for i := 0; i < total; i += per {
			e.insertRows(i, per)
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for k, at := range []int{10000, 40000, 70000} {
		at += rng.IntN(15000)
		e.waitCount(at, 3*time.Minute, p)
		p.kill9(t)
		t.Logf("kill -9 #%d after %d events accepted", k+1, e.fake.Count())
		p = e.startProc(cfg)
	}
	<-inserted
	e.waitCount(total, 3*time.Minute, p)
	p.term(t)
	e.checkExactlyOnce(total)
}

// Fault 2: PostgreSQL restarted (fast) in the middle of the stream; pgsignal
// reconnects with backoff and finishes.
func TestFaultPostgresRestart(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "")
	const total, per = 30000, 1000
	// A slow OneSignal keeps events in flight while PostgreSQL restarts.
	e.fake.SetFaults(onesignaltest.Faults{Latency: 100 * time.Millisecond})
	p := e.startProc(cfg)
	e.waitStreaming(p)
	for i := 0; i < total/2; i += per {
		e.insertRows(i, per)
	}
	e.waitCount(5000, time.Minute, p)
	if err := e.pg.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL restarted after %d events accepted", e.fake.Count())
	e.pool.Reset()
	for i := total / 2; i < total; i += per {
		e.insertRows(i, per)
	}
	e.waitCount(total, 3*time.Minute, p)
	p.term(t)
	e.checkExactlyOnce(total)
}
