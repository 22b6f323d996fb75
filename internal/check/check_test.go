package check

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// testConfig returns a valid configuration for dsn and the fake.
func testConfig(dsn string, fake *onesignaltest.Server) *config.Config {
	c := config.Defaults()
	c.Source.DSN = dsn
	c.OneSignal.AppID = onesignaltest.DefaultAppID
	c.OneSignal.APIKey = onesignaltest.DefaultAPIKey
	c.OneSignal.Timeout = 5 * time.Second
	if fake != nil {
		c.OneSignal.URL = fake.URL()
	}
	c.Tables = []config.Table{{Schema: "analytics", Name: "user_events", EventName: "event_name",
		ExternalID: "user_id", Timestamp: "event_timestamp", Properties: []string{"event_data"}}}
	return &c
}

func startFake(t *testing.T) *onesignaltest.Server {
	t.Helper()
	fake, err := onesignaltest.Start(onesignaltest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	return fake
}

func find(t *testing.T, rep *Report, name string) Item {
	t.Helper()
	for _, it := range rep.Items {
		if it.Name == name {
			return it
		}
	}
	t.Fatalf("no item %q in %+v", name, rep.Items)
	return Item{}
}

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// An unreachable database fails reachability with its fix and skips every
// other database item, in order; OneSignal is still checked. Neither the
// password nor the API key appears anywhere.
func TestUnreachable(t *testing.T) {
	fake := startFake(t)
	cfg := testConfig("postgres://census:hunter2-secret@"+closedPort(t)+"/db?sslmode=disable", fake)
	rep := Run(context.Background(), Options{Config: cfg, ConnectTimeout: 5 * time.Second})
	if rep.OK {
		t.Fatal("report is OK")
	}
	r := &runner{cfg: cfg}
	names := append(r.dbNames(), itemOneSignal)
	if len(rep.Items) != len(names) {
		t.Fatalf("%d items, want %d: %+v", len(rep.Items), len(names), rep.Items)
	}
	for i, it := range rep.Items {
		if it.Name != names[i] {
			t.Fatalf("item %d is %q, want %q", i, it.Name, names[i])
		}
		switch {
		case i == 0:
			if it.Status != Fail || !strings.Contains(it.Fix, "check host and port") {
				t.Fatalf("reachability: %+v", it)
			}
		case it.Name == itemOneSignal:
			if it.Status != Pass {
				t.Fatalf("onesignal: %+v", it)
			}
		default:
			if it.Status != Skip || it.Detail != "the database is not reachable" {
				t.Fatalf("item %q: %+v", it.Name, it)
			}
		}
	}
	var text, js bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{text.String(), js.String()} {
		if strings.Contains(out, "hunter2-secret") || strings.Contains(out, onesignaltest.DefaultAPIKey) {
			t.Fatalf("a secret in the output:\n%s", out)
		}
	}
	if !strings.Contains(text.String(), "✗ reachability: cannot connect to 127.0.0.1:") ||
		!strings.Contains(text.String(), "\n    fix: check host and port") ||
		!strings.Contains(text.String(), "- tls: the database is not reachable") ||
		!strings.Contains(text.String(), "FAILED: 1 of ") {
		t.Fatalf("text output:\n%s", text.String())
	}
}

func TestOneSignal(t *testing.T) {
	fake := startFake(t)
	cases := []struct {
		name   string
		mutate func(*config.Config)
		status Status
		want   string
		fix    string
	}{
		{"accepted", func(*config.Config) {}, Pass, "accepted the API key", ""},
		{"wrong key", func(c *config.Config) { c.OneSignal.APIKey = "os_v2_app_wrong-key" }, Fail, "API key refused: OneSignal answered 403", "set onesignal.api_key"},
		{"wrong app", func(c *config.Config) { c.OneSignal.AppID = "00000000-0000-4000-8000-000000000000" }, Fail, "OneSignal answered 400: app_id not found", "onesignal.app_id"},
		{"unreachable", func(c *config.Config) { c.OneSignal.URL = "http://" + closedPort(t) }, Fail, "cannot reach OneSignal", "check onesignal.url"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := testConfig("", fake)
			c.mutate(cfg)
			r := &runner{opts: Options{Config: cfg}, cfg: cfg, done: map[string]bool{}}
			r.oneSignal(context.Background())
			it := r.items[0]
			if it.Status != c.status || !strings.Contains(it.Detail, c.want) || !strings.Contains(it.Fix, c.fix) {
				t.Fatalf("%+v", it)
			}
			if strings.Contains(it.Detail+it.Fix, "wrong-key") {
				t.Fatalf("the key in the item: %+v", it)
			}
		})
	}
	if fake.Count() != 0 {
		t.Fatalf("the check created %d events", fake.Count())
	}
}

// The text form marks every status and indents fixes; the JSON form has
// the documented shape.
func TestOutput(t *testing.T) {
	rep := &Report{OK: false, Items: []Item{
		{Name: "a", Status: Pass, Detail: "fine"},
		{Name: "b", Status: Fail, Detail: "broken", Fix: "line 1\nline 2"},
		{Name: "c", Status: Warn, Detail: "hmm", Fix: "advice"},
		{Name: "d", Status: Skip, Detail: "b failed"},
	}}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	want := `✓ a: fine
✗ b: broken
    fix: line 1
         line 2
! c: hmm
    fix: advice
- d: b failed
FAILED: 1 of 4 checks failed, 1 warning(s); fix them and run pgsignal check again
`
	if text.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", text.String(), want)
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back struct {
		OK    *bool `json:"ok"`
		Items []map[string]string
	}
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.OK == nil || *back.OK || len(back.Items) != 4 {
		t.Fatalf("JSON %s: %v", js.String(), err)
	}
	for _, k := range []string{"name", "status", "detail", "fix"} {
		if _, ok := back.Items[0][k]; !ok {
			t.Fatalf("item lacks %q: %s", k, js.String())
		}
	}
	if back.Items[1]["status"] != "fail" || back.Items[1]["fix"] != "line 1\nline 2" {
		t.Fatalf("JSON item: %v", back.Items[1])
	}
}

func TestBytesText(t *testing.T) {
	for n, want := range map[int64]string{0: "0 bytes", 1023: "1023 bytes", 1536: "1.5 kB (1536 bytes)", 3 << 30: "3.0 GB (3221225472 bytes)"} {
		if got := bytesText(n); got != want {
			t.Errorf("bytesText(%d) = %q, want %q", n, got, want)
		}
	}
}
