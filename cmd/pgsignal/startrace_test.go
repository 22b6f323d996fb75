package main

import (
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// Two instances started at the same instant on a database pgsignal never
// ran on (the README's high-availability setup, deployed at once): both
// create the bookkeeping schema, the publication and the slot. Neither may
// die: one streams, the other waits to take over. Repeated, each time from
// scratch, because the race is won or lost by microseconds.
func TestStartTwoInstancesAtOnce(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "")
	const rounds = 6
	failures := 0
	for round := range rounds {
		if round > 0 {
			// From scratch: no schema, publication or slot.
			e.exec(`DROP SCHEMA IF EXISTS census CASCADE`)
			e.exec(`DROP PUBLICATION IF EXISTS pgsignal`)
			e.exec(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'pgsignal'`)
		}
		a := e.startProc(cfg)
		b := e.startProc(cfg)
		var streaming, waiting *proc
		deadline := time.Now().Add(60 * time.Second)
		for (streaming == nil || waiting == nil) && time.Now().Before(deadline) {
			for _, p := range []*proc{a, b} {
				select {
				case <-p.done:
					t.Errorf("round %d: an instance exited at start-up: %v\n%s", round, p.err, p.tail())
					failures++
					goto next
				default:
				}
				log := readFile(t, p.log)
				switch {
				case strings.Contains(log, `"msg":"streaming"`) && streaming == nil:
					streaming = p
				case strings.Contains(log, "waiting to take over") && waiting == nil:
					waiting = p
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
		if streaming == nil || waiting == nil {
			t.Fatalf("round %d: want one instance streaming and one waiting\na:\n%s\nb:\n%s", round, a.tail(), b.tail())
		}
		for _, p := range []*proc{a, b} {
			p.term(t)
		}
		continue
	next:
		for _, p := range []*proc{a, b} {
			select {
			case <-p.done:
			default:
				p.kill9(t)
			}
		}
	}
	t.Logf("figures: %d rounds of two instances started at once, %d start-up failures", rounds, failures)
}
