package app

import (
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink"
)

// Metrics an alert can use as they are: every retry reason exists at 0
// before the first retry; the last progress is a timestamp; the slot's
// safe_wal_size is absent (not -1) while it is unlimited and present once
// max_slot_wal_keep_size bounds it.
func TestMetricsForAlerts(t *testing.T) {
	for _, keep := range []string{"-1", "1GB"} {
		t.Run("max_slot_wal_keep_size="+keep, func(t *testing.T) {
			h := newHarness(t, pgtest.Options{Conf: map[string]string{"max_slot_wal_keep_size": keep}})
			h.exec(seedTable)
			r := h.start(h.config())
			srv := httptest.NewServer(r.app.Handler())
			defer srv.Close()
			var metrics string
			deadline := time.Now().Add(10 * time.Second)
			for {
				_, metrics = get(t, srv, "/metrics")
				if strings.Contains(metrics, "pgsignal_slot_wal_status{") {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("the slot was never polled:\n%s", metrics)
				}
				time.Sleep(100 * time.Millisecond)
			}
			for _, reason := range sink.RetryReasons {
				if want := `pgsignal_retries_total{reason="` + reason + `"} 0`; !strings.Contains(metrics, want) {
					t.Errorf("metrics lack %q", want)
				}
			}
			m := regexp.MustCompile(`(?m)^pgsignal_last_progress_timestamp_seconds (\S+)$`).FindStringSubmatch(metrics)
			if m == nil {
				t.Fatalf("no pgsignal_last_progress_timestamp_seconds:\n%s", metrics)
			}
			ts, err := strconv.ParseFloat(m[1], 64)
			if err != nil || time.Since(time.Unix(int64(ts), 0)) > time.Minute || time.Until(time.Unix(int64(ts), 0)) > time.Second {
				t.Errorf("last progress %s is not a recent Unix time", m[1])
			}
			if strings.Contains(metrics, "seconds_since_last_progress") {
				t.Error("the old pgsignal_seconds_since_last_progress is still exported")
			}
			safe := regexp.MustCompile(`(?m)^pgsignal_slot_safe_wal_size_bytes (\S+)$`).FindStringSubmatch(metrics)
			switch {
			case keep == "-1" && safe != nil:
				t.Errorf("safe_wal_size exported as %s while unlimited", safe[1])
			case keep != "-1" && (safe == nil || strings.HasPrefix(safe[1], "-")):
				t.Errorf("safe_wal_size = %v with max_slot_wal_keep_size = %s", safe, keep)
			}
			r.stop(t)
		})
	}
}
