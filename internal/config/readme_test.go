package config

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readmeSample returns the configuration sample of the README's
// Configuration section.
func readmeSample(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "\n## Configuration\n")
	if i < 0 {
		t.Fatal("README has no Configuration section")
	}
	s = s[i:]
	start := strings.Index(s, "```yaml\n")
	end := strings.Index(s[start+8:], "```")
	if start < 0 || end < 0 {
		t.Fatal("no yaml block in the Configuration section")
	}
	return s[start+8 : start+8+end]
}

// The README's configuration sample loads as it is, with only the API key
// in the environment: a reader can copy it.
func TestReadmeSampleLoads(t *testing.T) {
	sample := readmeSample(t)
	c, err := ParseLookup([]byte(sample), func(name string) (string, bool) {
		if name == "ONESIGNAL_API_KEY" {
			return "os_v2_app_sample", true
		}
		return "", false
	})
	if err != nil {
		t.Fatalf("the README's sample does not load: %v", err)
	}
	if len(c.Tables) < 2 {
		t.Fatalf("%d tables in the sample", len(c.Tables))
	}
}

// The README's table of defaults says what Defaults sets.
func TestReadmeDefaults(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		var key, def string
		if n, _ := fmt.Sscanf(line, "| `%s | `%s |", &key, &def); n == 2 {
			documented[strings.TrimSuffix(key, "`")] = strings.TrimSuffix(def, "`")
		}
	}
	d := Defaults()
	want := map[string]string{
		"source.mode": d.Source.Mode, "source.slot": d.Source.Slot, "source.publication": d.Source.Publication,
		"source.method": d.Source.Method, "source.poll_interval": d.Source.PollInterval.String(), "source.state_file": d.Source.StateFile,
		"sink.stale":    d.Sink.Stale,
		"source.schema": d.Source.Schema, "source.on_slot_lost": d.Source.OnSlotLost, "source.failover": strconv.FormatBool(d.Source.Failover),
		"onesignal.url": d.OneSignal.URL, "onesignal.timeout": d.OneSignal.Timeout.String(),
		"sink.batch_size": strconv.Itoa(d.Sink.BatchSize), "sink.linger": d.Sink.Linger.String(),
		"sink.concurrency": strconv.Itoa(d.Sink.Concurrency), "sink.max_pending_events": strconv.Itoa(d.Sink.MaxPendingEvents),
		"sink.max_pending_bytes": "64MiB", "sink.max_backoff": d.Sink.MaxBackoff.String(), "sink.unknown_user": d.Sink.UnknownUser,
		"sink.dead_letter_file": d.Sink.DeadLetterFile, "shutdown_timeout": d.ShutdownTimeout.String(), "stall_timeout": d.StallTimeout.String(),
		"server.listen": d.Server.Listen, "log.level": d.Log.Level, "log.format": d.Log.Format,
		"tables[].transform_timeout": DefaultTransformTimeout.String(),
	}
	if d.Sink.MaxPendingBytes != 64<<20 {
		t.Errorf("max_pending_bytes default %d is not the documented 64MiB", d.Sink.MaxPendingBytes)
	}
	for key, w := range want {
		got, ok := documented[key]
		if !ok {
			t.Errorf("README's defaults table lacks %s", key)
			continue
		}
		if dg, err := time.ParseDuration(got); err == nil {
			got = dg.String()
		}
		if got != w {
			t.Errorf("README says %s defaults to %s; it is %s", key, got, w)
		}
	}
}
