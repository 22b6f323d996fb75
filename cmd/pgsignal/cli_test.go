package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// A config with a missing required key, or an unknown key, fails before
// connecting, naming the key, with a non-zero exit.
func TestRunConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, yaml string
		want       []string
	}{
		{"missing dsn and external_id", `source:
  mode: full
onesignal:
  app_id: "5eb5a37e-b458-11e3-ac11-000c2940e62c"
  api_key: secret-key-value
tables:
  - table: analytics.user_events
    name: event_name
`, []string{"source.dsn", "required", "tables[0].external_id"}},
		{"unknown key", `source:
  dsn: "postgres://127.0.0.1:1/x"
  slots: pgsignal
onesignal:
  app_id: "5eb5a37e-b458-11e3-ac11-000c2940e62c"
  api_key: k
tables:
  - table: analytics.user_events
    name: event_name
    external_id: user_id
`, []string{"source.slots (line 3): unknown key", "known keys: dsn, mode, slot, publication, schema, on_slot_lost"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_")+".yaml")
			if err := os.WriteFile(path, []byte(c.yaml), 0o600); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			out, err := exec.Command(binary, "run", "--config", path).CombinedOutput()
			var ee *exec.ExitError
			if !errorAs(err, &ee) || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v\n%s", err, out)
			}
			for _, w := range c.want {
				if !strings.Contains(string(out), w) {
					t.Fatalf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(string(out), "secret-key-value") {
				t.Fatalf("secret in output:\n%s", out)
			}
			if time.Since(start) > 5*time.Second {
				t.Fatalf("took %s: it must fail before connecting", time.Since(start))
			}
		})
	}
}

func errorAs(err error, target **exec.ExitError) bool {
	ee, ok := err.(*exec.ExitError)
	if ok {
		*target = ee
	}
	return ok
}

// OneSignal refusing the API key stops pgsignal with a non-zero exit and an
// error that says so; nothing past the handled prefix is confirmed, so a
// restart with a good key delivers everything exactly once.
func TestRunForbiddenStopsAndResumes(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "  batch_size: 100\n  concurrency: 2")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.fake.SetFaults(onesignaltest.Faults{ForbidAfter: 5, Latency: 5 * time.Millisecond})
	e.insertRows(0, 5000)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		t.Fatalf("pgsignal kept running after 403s:\n%s", p.tail())
	}
	log := readFile(t, p.log)
	var ee *exec.ExitError
	if !errorAs(p.err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit %v, want 1", p.err)
	}
	if !strings.Contains(log, "OneSignal refused the API key") || !strings.Contains(log, "onesignal.api_key") {
		t.Fatalf("log does not explain the refusal:\n%s", p.tail())
	}
	if strings.Contains(log, e.fake.APIKey()) {
		t.Fatal("the API key appears in the log")
	}
	accepted := e.fake.Count()
	t.Logf("stopped after %d events accepted", accepted)
	e.fake.SetFaults(onesignaltest.Faults{})
	p = e.startProc(cfg)
	e.waitCount(5000, time.Minute, p)
	p.term(t)
	e.checkExactlyOnce(5000)
}

// A second SIGTERM stops at once, and still nothing is lost: the
// unconfirmed part is sent again with the same keys.
func TestRunSecondSignalStopsAtOnce(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.fake.SetFaults(onesignaltest.Faults{Latency: 200 * time.Millisecond})
	cfg := e.writeConfig("full", "  batch_size: 50")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.insertRows(0, 20000)
	e.waitCount(500, time.Minute, p)
	p.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("second SIGTERM did not stop pgsignal:\n%s", p.tail())
	}
	t.Logf("stopped %s after the second signal with %d events accepted (exit %v)", time.Since(start).Round(time.Millisecond), e.fake.Count(), p.err)
	if e.fake.Count() >= 20000 {
		t.Fatal("everything was delivered before the stop; the test proves nothing")
	}
	e.fake.SetFaults(onesignaltest.Faults{})
	p = e.startProc(cfg)
	e.waitCount(20000, time.Minute, p)
	p.term(t)
	e.checkExactlyOnce(20000)
}

// `pgsignal status` shows the slot, the watermark, dead letters and runs.
func TestStatusCommand(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.insertRows(0, 100)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('x', NULL)`)
	e.waitCount(100, time.Minute, p)
	out := e.runCLI(cfg, "status")
	for _, want := range []string{"slot pgsignal: active (pid ", "wal_status reserved", "dead letters: ", "running"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status lacks %q:\n%s", want, out)
		}
	}
	p.term(t)
	js := e.runCLI(cfg, "status", "--json")
	var rep statusReport
	if err := json.Unmarshal([]byte(js), &rep); err != nil {
		t.Fatalf("%v\n%s", err, js)
	}
	if !rep.Slot.Exists || rep.Slot.Active || rep.DeadLetters != 1 || rep.Watermark == nil || len(rep.Runs) != 1 ||
		rep.Runs[0].EventsDelivered != 100 || rep.Runs[0].DeadLettered != 1 || rep.Runs[0].StopReason != "stopped" ||
		rep.Slot.LagBytes == nil {
		t.Fatalf("status: %s", js)
	}
	if rep.Slot.ConfirmedFlushLSN == "" || !strings.HasPrefix(rep.Watermark.Position, "0/") {
		t.Fatalf("positions: %s", js)
	}
}
