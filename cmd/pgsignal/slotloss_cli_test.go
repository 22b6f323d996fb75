package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// A slot dropped after a run: `run` refuses to start because events were
// lost, and `check` and `status` say the same thing in the same words (they
// said "pgsignal run creates it"). Following the fix they print lets run
// start again.
func TestDroppedSlotSameEverywhere(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.insertRows(0, 10)
	e.waitCount(10, time.Minute, p)
	p.term(t)
	e.exec(`SELECT pg_drop_replication_slot('pgsignal')`)
	e.insertRows(10, 5) // lost with the slot

	key := []string{"TEST_ONESIGNAL_KEY=" + e.fake.APIKey()}
	const problem = `replication slot "pgsignal" was dropped: changes committed between `
	from := regexp.MustCompile(regexp.QuoteMeta(problem) + `([0-9A-F]+/[0-9A-F]+) and`)
	fix := `DELETE FROM "census".sync_state WHERE slot = 'pgsignal';`

	out, errOut, code := runCheckCLI(t, key, "run", "--config", cfg)
	t.Logf("run (exit %d):\n%s", code, errOut)
	if code == 0 || !strings.Contains(errOut, problem) || !strings.Contains(errOut, fix) {
		t.Fatalf("run: exit %d, want a failure naming the lost slot and the fix\n%s%s", code, out, errOut)
	}
	runFrom := from.FindStringSubmatch(errOut)

	out, errOut, code = runCheckCLI(t, key, "check", "--config", cfg)
	t.Logf("check (exit %d):\n%s", code, out)
	if code != 1 {
		t.Fatalf("check: exit %d, want 1\n%s%s", code, out, errOut)
	}
	assertLines(t, out, "✗ slot: "+problem, "pgsignal run refuses to start", fix, "source.on_slot_lost: recreate")
	checkFrom := from.FindStringSubmatch(out)

	out, _, code = runCheckCLI(t, key, "status", "--config", cfg)
	t.Logf("status:\n%s", out)
	if code != 0 {
		t.Fatalf("status: exit %d\n%s", code, out)
	}
	assertLines(t, out, "slot pgsignal: LOST: "+problem, "pgsignal run refuses to start", fix)
	if strings.Contains(out, "pgsignal run creates it") {
		t.Fatalf("status still says the slot is harmless:\n%s", out)
	}
	statusFrom := from.FindStringSubmatch(out)
	js, _, _ := runCheckCLI(t, key, "status", "--config", cfg, "--json")
	var rep statusReport
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	if !strings.HasPrefix(rep.Slot.Lost, problem) || !strings.Contains(rep.Slot.Fix, fix) {
		t.Fatalf("status --json: %s", js)
	}
	if runFrom == nil || checkFrom == nil || statusFrom == nil || runFrom[1] != checkFrom[1] || runFrom[1] != statusFrom[1] {
		t.Fatalf("the lost range starts at %v (run), %v (check), %v (status); want one position", runFrom, checkFrom, statusFrom)
	}

	// With on_slot_lost: recreate, check and status say that run goes on.
	rcfg := e.writeCheckConfig("recreate", e.pg.DSN(""), "full\n  on_slot_lost: recreate", defaultTables)
	out, _, _ = runCheckCLI(t, key, "check", "--config", rcfg)
	assertLines(t, out, "! slot: "+problem, "pgsignal run recreates the slot")
	out, _, _ = runCheckCLI(t, key, "status", "--config", rcfg)
	assertLines(t, out, "slot pgsignal: LOST: "+problem, "pgsignal run recreates the slot")

	// The printed fix works.
	e.exec(`DELETE FROM "census".sync_state WHERE slot = 'pgsignal';`)
	out, _, _ = runCheckCLI(t, key, "check", "--config", cfg)
	assertLines(t, out, `✓ slot: slot "pgsignal" does not exist yet`)
	p = e.startProc(cfg)
	e.waitStreaming(p)
	p.term(t)
}
