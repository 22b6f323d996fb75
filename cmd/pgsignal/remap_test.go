package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// Issue 13, "The trap: a typo loses rows": rows whose configured
// external_id column is NULL become dead letters without an event; once
// the config names the right column (alt_user), `dead-letters replay
// --all` maps their stored rows again and delivers them exactly once, with
// their original keys; a row that still cannot become an event stays, with
// the new reason; a second replay sends nothing.
func TestDeadLetterReplayRemapsFullMode(t *testing.T) {
	testReplayRemaps(t, "full")
}

// The same in read-only mode (the dead-letter file).
func TestDeadLetterReplayRemapsReadOnly(t *testing.T) {
	testReplayRemaps(t, "read-only")
}

func testReplayRemaps(t *testing.T, mode string) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.exec(`ALTER TABLE analytics.user_events ADD COLUMN alt_user text`)
	var cfg string
	if mode == "full" {
		cfg = e.writeConfig("full", "")
	} else {
		cfg = e.writeReadOnly("")
	}
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, alt_user, event_data) VALUES
  ('ok', 'user_1', 'alt_x', '{"n": 1}'), ('ok', 'user_2', NULL, '{"n": 2}')`)
	// event_timestamp NULL: the event takes the row's commit time.
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, alt_user, event_timestamp, event_data) VALUES
  ('late', NULL, 'alt_1', '2024-05-06 07:08:09.123+00', '{"n": 3, "s": "é\"x"}'),
  ('late', NULL, 'alt_2', NULL, '{"n": 4}'),
  ('late', '', 'alt_3', '2024-05-06 07:08:10+00', NULL),
  ('late', NULL, NULL, '2024-05-06 07:08:11+00', '{"n": 6}')`)
	lsn := e.walLSN()
	e.waitCount(2, 30*time.Second, p)
	e.waitConfirmedPast(lsn, 30*time.Second, p)
	p.term(t)

	type letter struct {
		ID             int64           `json:"id"`
		IdempotencyKey string          `json:"idempotency_key"`
		Reason         string          `json:"reason"`
		Attempts       int             `json:"attempts"`
		FirstFailedAt  time.Time       `json:"first_failed_at"`
		Row            json.RawMessage `json:"row"`
	}
	list := func() []letter {
		t.Helper()
		out, err := e.runCLIResult(cfg, "dead-letters", "list", "--json")
		if err != nil {
			t.Fatalf("list: %v\n%s", err, out)
		}
		var ls []letter
		if err := json.Unmarshal([]byte(out), &ls); err != nil {
			t.Fatalf("list: %v\n%s", err, out)
		}
		return ls
	}
	before := list()
	if len(before) != 4 {
		t.Fatalf("%d letters, want 4: %+v", len(before), before)
	}
	byAlt := map[string]letter{}
	for _, l := range before {
		if !strings.Contains(l.Reason, `external_id column "user_id" is`) {
			t.Fatalf("letter %d: reason %q", l.ID, l.Reason)
		}
		var row struct {
			AltUser *string `json:"alt_user"`
		}
		if err := json.Unmarshal(l.Row, &row); err != nil {
			t.Fatalf("letter %d row %s: %v", l.ID, l.Row, err)
		}
		alt := "<null>"
		if row.AltUser != nil {
			alt = *row.AltUser
		}
		byAlt[alt] = l
	}

	// Fix the config: the users are in alt_user.
	data, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(data), "external_id: user_id", "external_id: alt_user", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	out := e.runCLI(cfg, "dead-letters", "replay", "--all")
	t.Logf("replay:\n%s", out)
	still := byAlt["<null>"]
	for _, want := range []string{
		"replayed: 3 delivered, 0 failed again (kept), 1 skipped",
		"re-mapped with the current configuration: 3 letter(s) whose row never became an event became 3 event(s)",
		"1 still cannot become an event",
		"letter " + strconv.FormatInt(still.ID, 10) + `: mapped again with the current configuration: external_id column "alt_user" is NULL`,
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("replay output lacks %q:\n%s", want, out)
		}
	}
	if got := e.fake.Count(); got != 5 || e.fake.Duplicates() != 0 {
		t.Fatalf("%d accepted, %d duplicates; want 5, 0", got, e.fake.Duplicates())
	}
	want := map[string]struct{ ts, props string }{
		"alt_1": {"2024-05-06T07:08:09.123Z", `{"n":3,"s":"é\"x"}`},
		"alt_2": {byAlt["alt_2"].FirstFailedAt.UTC().Format("2006-01-02T15:04:05.000Z"), `{"n":4}`},
		"alt_3": {"2024-05-06T07:08:10.000Z", ""},
	}
	seen := 0
	for _, ev := range e.fake.Events() {
		w, ok := want[ev.ExternalID]
		if !ok {
			continue
		}
		seen++
		var props string
		if ev.Properties != nil {
			var m map[string]any
			if err := json.Unmarshal(ev.Properties, &m); err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(m)
			props = string(b)
			var wm map[string]any
			if err := json.Unmarshal([]byte(w.props), &wm); err != nil {
				t.Fatal(err)
			}
			wb, _ := json.Marshal(wm)
			w.props = string(wb)
		}
		if ev.Name != "late" || ev.IdempotencyKey != byAlt[ev.ExternalID].IdempotencyKey || ev.Timestamp != w.ts || props != w.props {
			t.Errorf("event %+v (properties %s); want key %s, timestamp %s, properties %s",
				ev, ev.Properties, byAlt[ev.ExternalID].IdempotencyKey, w.ts, w.props)
		}
	}
	if seen != 3 {
		t.Fatalf("%d re-mapped events arrived, want 3", seen)
	}
	after := list()
	if len(after) != 1 || after[0].IdempotencyKey != still.IdempotencyKey || after[0].Attempts != still.Attempts+1 ||
		after[0].Reason != `mapped again with the current configuration: external_id column "alt_user" is NULL` {
		t.Fatalf("letters left: %+v; want the one without alt_user, attempts %d, the new reason", after, still.Attempts+1)
	}

	// Twice: nothing is sent again.
	out = e.runCLI(cfg, "dead-letters", "replay", "--all")
	if !strings.Contains(out, "replayed: 0 delivered, 0 failed again (kept), 1 skipped") ||
		!strings.Contains(out, "re-mapped with the current configuration: 0 letter(s)") {
		t.Fatalf("second replay: %s", out)
	}
	if got := e.fake.Count(); got != 5 || e.fake.Duplicates() != 0 {
		t.Fatalf("after the second replay: %d accepted, %d duplicates; want 5, 0", got, e.fake.Duplicates())
	}
	if n := len(list()); n != 1 {
		t.Fatalf("%d letters after the second replay, want 1", n)
	}
}

// A transform that failed on a row (a runtime error) made a letter for the
// whole row; once the transform is fixed, replay evaluates it on the stored
// row and sends each event it returns with the key the stream gives a
// transformed row's events (derived from the row's key). A letter for one
// output of a row (its key is that output's, not the row's) is not
// re-mapped and keeps its reason. Full mode.
func TestDeadLetterReplayRemapsTransform(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	write := func(sql string) string {
		t.Helper()
		text := fmt.Sprintf(`source:
  dsn: %q
onesignal:
  app_id: %q
  api_key: "${TEST_ONESIGNAL_KEY}"
  url: %q
sink:
  linger: 5ms
  max_backoff: 2s
server:
  listen: "127.0.0.1:0"
log:
  format: json
tables:
  - table: analytics.user_events
    transform: |
%s
`, e.pg.DSN(""), e.fake.AppID(), e.fake.URL(), sql)
		path := filepath.Join(e.dir, "pgsignal.yaml")
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	cfg := write(`      SELECT event_name AS name, user_id || '_' || (10 / (event_data->>'d')::int)::text AS external_id FROM changes
      UNION ALL
      SELECT event_name, CASE WHEN user_id = 'half' THEN NULL ELSE user_id || '_b' END FROM changes`)
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('ev', 'fine', '{"d": 1}')`)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('ev', 'zero', '{"d": 0}')`)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('ev', 'half', '{"d": 2}')`)
	lsn := e.walLSN()
	e.waitCount(3, 30*time.Second, p) // fine_10, fine_b, half_5
	e.waitConfirmedPast(lsn, 30*time.Second, p)
	p.term(t)
	ls := e.listJSON(cfg)
	if len(ls) != 2 {
		t.Fatalf("%d letters, want 2", len(ls))
	}
	var whole, output map[string]json.RawMessage
	for _, l := range ls {
		switch r := jsonField(t, l, "reason"); {
		case strings.HasPrefix(r, "transform output: "):
			output = l
		case strings.Contains(r, "division by zero"):
			whole = l
		default:
			t.Fatalf("letter with reason %q", r)
		}
	}
	if whole == nil || output == nil {
		t.Fatalf("letters: %v", ls)
	}

	cfg = write(`      SELECT event_name AS name, user_id || '_a' AS external_id FROM changes
      UNION ALL
      SELECT event_name, user_id || '_b' FROM changes`)
	out := e.runCLI(cfg, "dead-letters", "replay", "--all")
	t.Logf("replay:\n%s", out)
	for _, want := range []string{
		"replayed: 1 delivered, 0 failed again (kept), 1 skipped",
		"re-mapped with the current configuration: 1 letter(s) whose row never became an event became 2 event(s)",
		"letter " + string(output["id"]) + ": one event of the several a transform made of its row",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("replay output lacks %q", want)
		}
	}
	rowKey := jsonField(t, whole, "idempotency_key")
	got := map[string]string{}
	for _, ev := range e.fake.Events() {
		if strings.HasPrefix(ev.ExternalID, "zero_") {
			got[ev.ExternalID] = ev.IdempotencyKey
		}
	}
	want := map[string]string{"zero_a": streamOutputKey(rowKey, "ev", "zero_a"), "zero_b": streamOutputKey(rowKey, "ev", "zero_b")}
	if len(got) != 2 || got["zero_a"] != want["zero_a"] || got["zero_b"] != want["zero_b"] || e.fake.Duplicates() != 0 {
		t.Fatalf("re-mapped events %v (%d duplicates), want %v", got, e.fake.Duplicates(), want)
	}
	left := e.listJSON(cfg)
	if len(left) != 1 || string(left[0]["reason"]) != string(output["reason"]) || string(left[0]["attempts"]) != string(output["attempts"]) {
		t.Fatalf("letters left %v; want the output letter unchanged", left)
	}
	out = e.runCLI(cfg, "dead-letters", "replay", "--all")
	if !strings.Contains(out, "replayed: 0 delivered, 0 failed again (kept), 1 skipped") || e.fake.Count() != 5 || e.fake.Duplicates() != 0 {
		t.Fatalf("second replay (%d accepted, %d duplicates): %s", e.fake.Count(), e.fake.Duplicates(), out)
	}
}

// streamOutputKey is the key the stream gives the only event named name for
// externalID of a transformed row whose key is rowKey (outputKey in
// mapper/transform, restated here so that the test states it).
func streamOutputKey(rowKey, name, externalID string) string {
	ns := [16]byte{0x2a, 0x7c, 0x91, 0x0e, 0x5d, 0x33, 0x4f, 0x86, 0xb1, 0x48, 0xc6, 0x0f, 0x7e, 0x25, 0xd9, 0x13}
	part := func(s string) string { return strconv.Itoa(len(s)) + ":" + s }
	return cdc.UUIDv5(ns, rowKey, "/", part(name), "/", part(externalID), "/", "0")
}
