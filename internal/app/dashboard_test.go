package app

import (
	"context"
	"net/http/httptest"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgsignal/pgsignal/internal/buildinfo"
	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// metricName matches the pgsignal metric names a PromQL expression or a
// dashboard names.
var metricName = regexp.MustCompile(`\bpgsignal_[a-z0-9_]+`)

// exposedNames returns the sample names in a /metrics page (a histogram's
// _bucket, _sum and _count each).
func exposedNames(page string) map[string]bool {
	names := map[string]bool{}
	for _, line := range strings.Split(page, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// Every metric docs/prometheus-alerts.yaml and docs/grafana-dashboard.json
// name is one a running pgsignal exports (the slot bounded by
// max_slot_wal_keep_size, so that its safe WAL size is exported too);
// pgsignal_build_info carries the version, revision and Go version, and the
// run's row in <schema>.runs the version.
func TestDashboardAndAlertMetricsExist(t *testing.T) {
	h := newHarness(t, pgtest.Options{Conf: map[string]string{"max_slot_wal_keep_size": "1GB"}})
	h.exec(seedTable)
	cfg := h.config()
	r := h.start(cfg)
	srv := httptest.NewServer(r.app.Handler())
	defer srv.Close()
	// One event delivered (request and latency histograms get samples),
	// one dead letter.
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data) VALUES
  ('signup', 'u1', now(), '{}'), ('signup', NULL, now(), '{}')`)
	h.waitCount(1)
	var names map[string]bool
	var page string
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, page = get(t, srv, "/metrics")
		names = exposedNames(page)
		if names["pgsignal_slot_safe_wal_size_bytes"] && strings.Contains(page, `pgsignal_events_dead_lettered_total{table="analytics.user_events"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the slot was not polled or the dead letter not counted:\n%s", page)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, file := range []string{"../../docs/prometheus-alerts.yaml", "../../docs/prometheus-alerts.test.yaml", "../../docs/grafana-dashboard.json"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		used := map[string]bool{}
		for _, n := range metricName.FindAllString(string(b), -1) {
			used[n] = true
		}
		if len(used) < 5 {
			t.Fatalf("%s names only %d metrics", file, len(used))
		}
		var missing []string
		for n := range used {
			if !names[n] {
				missing = append(missing, n)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("%s names metrics pgsignal does not export: %v", file, missing)
		}
	}

	bi := buildinfo.Get()
	want := `pgsignal_build_info{goversion="` + bi.GoVersion + `",revision="` + bi.Revision + `",version="` + bi.Version + `"} 1`
	if !strings.Contains(page, want) {
		t.Errorf("metrics lack %s", want)
	}
	var version string
	if err := h.db.QueryRow(context.Background(), `SELECT version FROM `+pgx.Identifier{cfg.Source.Schema, "runs"}.Sanitize()+` ORDER BY id DESC LIMIT 1`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version != bi.Version || version == "" {
		t.Errorf("runs.version = %q, want %q", version, bi.Version)
	}
	r.stop(t)
}
