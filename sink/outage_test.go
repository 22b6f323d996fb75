package sink

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// An outage is logged once at its start (warn, the delay in seconds), then
// at most every outageRepeat with how long and how many, and once when a
// request succeeds again.
func TestOutageLogsFewLines(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	o := &outage{log: zap.New(core)}
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	o.succeeded(t0) // no outage: nothing logged
	for i := 0; i < 100; i++ {
		o.failed(t0.Add(time.Duration(i)*time.Second), 1500*time.Millisecond, false, zap.Int("lane", i%8))
	}
	o.succeeded(t0.Add(100 * time.Second))
	o.failed(t0.Add(200*time.Second), time.Second, true) // a new outage, not OneSignal's answer
	type line struct {
		level zapcore.Level
		msg   string
	}
	want := []line{
		{zap.WarnLevel, "OneSignal request failed; retrying"},
		{zap.WarnLevel, "OneSignal requests still failing; retrying"}, // at 30 s
		{zap.WarnLevel, "OneSignal requests still failing; retrying"}, // at 60 s
		{zap.WarnLevel, "OneSignal requests still failing; retrying"}, // at 90 s
		{zap.InfoLevel, "OneSignal delivery recovered"},
		{zap.ErrorLevel, "onesignal.url did not answer as OneSignal: these events are not confirmed; retrying"},
	}
	all := logs.All()
	if len(all) != len(want) {
		t.Fatalf("%d lines, want %d: %v", len(all), len(want), all)
	}
	for i, w := range want {
		if all[i].Level != w.level || all[i].Message != w.msg {
			t.Errorf("line %d: %s %q, want %s %q", i, all[i].Level, all[i].Message, w.level, w.msg)
		}
	}
	if f := all[0].ContextMap(); f["retry_in_seconds"] != 1.5 || f["in"] != nil {
		t.Errorf("first line fields %v: want retry_in_seconds 1.5", f)
	}
	if f := all[1].ContextMap(); f["failing_for_seconds"] != 30.0 || f["retried_requests"] != int64(31) || f["retries_since_last_line"] != int64(30) {
		t.Errorf("repeat line fields %v", f)
	}
	if f := all[4].ContextMap(); f["down_for_seconds"] != 100.0 || f["retried_requests"] != int64(100) {
		t.Errorf("recovery line fields %v", f)
	}
}
