package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// Tests of issue 11, items 1 and 4: a dead letter the store cannot hold as
// JSON, dead-letter files of any size, and the read-only commands racing the
// running process.

// runCLIResult runs a pgsignal command to completion and returns its output
// and error, without failing the test.
func (e *env) runCLIResult(config string, args ...string) (string, error) {
	e.t.Helper()
	all := append([]string{args[0], args[1], "--config", config}, args[2:]...)
	cmd := exec.Command(binary, all...)
	cmd.Env = append(os.Environ(), "TEST_ONESIGNAL_KEY="+e.fake.APIKey())
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// waitConfirmedPast waits until the slot is confirmed at or past lsn: every
// row committed before lsn was handled.
func (e *env) waitConfirmedPast(lsn string, timeout time.Duration, p *proc) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		var past bool
		err := e.pool.QueryRow(context.Background(), `SELECT coalesce(confirmed_flush_lsn >= $1::pg_lsn, false)
FROM pg_replication_slots WHERE slot_name = 'pgsignal'`, lsn).Scan(&past)
		if err == nil && past {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	var slot string
	_ = e.pool.QueryRow(context.Background(), `SELECT format('confirmed=%s', confirmed_flush_lsn) FROM pg_replication_slots WHERE slot_name = 'pgsignal'`).Scan(&slot)
	e.t.Fatalf("slot not confirmed past %s in %s (%s)\n%s", lsn, timeout, slot, p.tail())
}

// listJSON runs `dead-letters list --json` and decodes it.
func (e *env) listJSON(config string) []map[string]json.RawMessage {
	e.t.Helper()
	out, err := e.runCLIResult(config, "dead-letters", "list", "--json")
	if err != nil {
		e.t.Fatalf("dead-letters list --json: %v\n%s", err, out)
	}
	var ls []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(out), &ls); err != nil {
		e.t.Fatalf("dead-letters list --json: %v\n%.2000s", err, out)
	}
	// Undo the indentation of the listing in the event and the row.
	for _, l := range ls {
		for _, k := range []string{"event", "row"} {
			var b bytes.Buffer
			if err := json.Compact(&b, l[k]); err == nil {
				l[k] = b.Bytes()
			}
		}
	}
	return ls
}

// jsonField returns the string field k of l.
func jsonField(t *testing.T, l map[string]json.RawMessage, k string) string {
	t.Helper()
	var s string
	if raw, ok := l[k]; ok {
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("field %s: %v", k, err)
		}
	}
	return s
}

// Full mode: a json (not jsonb) column holding "\u0000" or a lone surrogate,
// on rows that become dead letters for every reason there is (a NULL user,
// an event over 2,024 bytes, an event OneSignal rejects with 400). jsonb
// cannot hold those values: the letters are kept byte for byte in the
// bytes columns, the lane goes on, and the checkpoint passes them. A replay
// of the rejected event sends its exact bytes.
func TestDeadLetterUnstorableJSONFullMode(t *testing.T) {
	var rejectPoison atomic.Bool
	rejectPoison.Store(true)
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{Reject: func(a onesignaltest.Accepted) string {
		if a.Name == "poison" && rejectPoison.Load() {
			return "events[0]: poison is not allowed"
		}
		return ""
	}})
	e.exec(`ALTER TABLE analytics.user_events ALTER COLUMN event_data TYPE json`)
	// One lane: the users behind a stuck dead letter wait on it.
	cfg := e.writeConfig("full", "  concurrency: 1")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.insertRows(0, 10)
	pad := strings.Repeat("x", 2100)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES
  ('ev', NULL, '{"a":"\u0000"}'),
  ('ev', NULL, '{"a":"\ud800"}'),
  ('ev', 'user_1', '{"a":"\u0000","pad":"` + pad + `"}'),
  ('poison', 'user_2', '{"a":"\u0000"}')`)
	e.insertRows(10, 10)
	lsn := e.walLSN()
	e.waitCount(20, 30*time.Second, p)
	e.waitConfirmedPast(lsn, 30*time.Second, p)
	if n := e.queryInt(`SELECT count(*) FROM census.dead_letters`); n != 4 {
		t.Fatalf("%d dead letters, want 4", n)
	}
	if n := e.queryInt(`SELECT count(*) FROM census.dead_letters WHERE event IS NULL AND source_row IS NULL AND (event_bytes IS NOT NULL OR source_row_bytes IS NOT NULL)`); n != 4 {
		t.Fatalf("%d dead letters kept as bytes, want 4", n)
	}
	p.term(t)

	ls := e.listJSON(cfg)
	if len(ls) != 4 {
		t.Fatalf("list: %d letters, want 4", len(ls))
	}
	wantRows := []string{`"event_data":{"a":"\u0000"}`, `"event_data":{"a":"\ud800"}`, `"event_data":{"a":"\u0000","pad":"` + pad + `"}`}
	for i, w := range wantRows {
		var row string
		if err := json.Unmarshal(ls[i]["row"], new(any)); err != nil {
			t.Fatalf("letter %d: row is not JSON: %v", i, err)
		}
		row = string(ls[i]["row"])
		if !strings.Contains(row, w) {
			t.Errorf("letter %d row %s lacks %s", i, row, w)
		}
	}
	if !strings.Contains(jsonField(t, ls[2], "reason"), "OneSignal accepts at most 2024 bytes") {
		t.Errorf("letter 2 reason %q", jsonField(t, ls[2], "reason"))
	}
	if ev := string(ls[3]["event"]); !strings.Contains(ev, `"properties":{"a":"\u0000"}`) || !strings.Contains(jsonField(t, ls[3], "reason"), "poison is not allowed") {
		t.Errorf("letter 3: event %s reason %q", ev, jsonField(t, ls[3], "reason"))
	}
	if out := e.runCLI(cfg, "dead-letters", "list"); !strings.Contains(out, "4 dead letter(s)") || strings.Count(out, "kept as bytes; see --json]") != 4 {
		t.Fatalf("list: %s", out)
	}
	// OneSignal takes it now: the replay sends the event's exact bytes.
	rejectPoison.Store(false)
	out := e.runCLI(cfg, "dead-letters", "replay", "--reason", "poison")
	if !strings.Contains(out, "replayed: 1 delivered, 0 failed again (kept), 0 skipped") {
		t.Fatalf("replay: %s", out)
	}
	var got []byte
	for _, a := range e.fake.Events() {
		if a.Name == "poison" {
			got = a.Properties
		}
	}
	if string(got) != `{"a":"\u0000"}` {
		t.Fatalf("replayed properties %q, want {\"a\":\"\\u0000\"}", got)
	}
	out = e.runCLI(cfg, "dead-letters", "discard", "--all")
	if !strings.Contains(out, "discarded 3 dead letter(s)") {
		t.Fatalf("discard: %s", out)
	}
}

// Full mode: a dead-letter store that fails for a reason the operator can
// fix (the table was renamed away) is retried, and the stall names the
// dead-letter store, not OneSignal. Once it is back, the letter is written
// and the stream goes on.
func TestDeadLetterStoreDownStallNamesIt(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeConfig("full", "  concurrency: 1\nstall_timeout: 2s")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.exec(`ALTER TABLE census.dead_letters RENAME TO dead_letters_away`)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('ev', NULL, '{"n": -1}')`)
	e.insertRows(0, 5)
	waitLog(t, p, "stalled: pending events make no progress", 30*time.Second)
	log := readFile(t, p.log)
	var stall map[string]any
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, "stalled: pending events make no progress") {
			if err := json.Unmarshal([]byte(line), &stall); err != nil {
				t.Fatal(err)
			}
		}
	}
	stuck, _ := stall["stuck"].(string)
	if !strings.Contains(stuck, "dead-letter store") || strings.Contains(stuck, "OneSignal requests") {
		t.Fatalf("stall blames %q, want the dead-letter store", stuck)
	}
	if !strings.Contains(log, `"writing dead letters failed; retrying"`) || !strings.Contains(log, "dead_letters") {
		t.Fatalf("no error naming the dead-letter store:\n%s", p.tail())
	}
	e.exec(`ALTER TABLE census.dead_letters_away RENAME TO dead_letters`)
	lsn := e.walLSN()
	e.waitCount(5, 30*time.Second, p)
	e.waitConfirmedPast(lsn, 30*time.Second, p)
	waitLog(t, p, "progress again after a stall", 30*time.Second)
	p.term(t)
	if n := e.queryInt(`SELECT count(*) FROM census.dead_letters`); n != 1 {
		t.Fatalf("%d dead letters, want 1", n)
	}
}

// writeReadOnly creates the publication read-only mode needs and writes the
// config.
func (e *env) writeReadOnly(sinkExtra string) string {
	e.t.Helper()
	e.exec(`CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WITH (publish = 'insert')`)
	return e.writeConfig("read-only", sinkExtra)
}

// deepJSON is a json array nested depth levels deep.
func deepJSON(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}

// Read-only mode: a json value nested 10,001 levels deep (Go's encoder
// refuses it) makes a dead letter kept as bytes; the stream goes on, and
// the commands list, replay (skipped: it never became an event) and
// discard it.
func TestDeadLetterDeepJSONReadOnly(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.exec(`ALTER TABLE analytics.user_events ALTER COLUMN event_data TYPE json`)
	cfg := e.writeReadOnly("  concurrency: 1")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	deep := deepJSON(10001)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('ev', NULL, $1::json)`, deep)
	e.insertRows(0, 5)
	lsn := e.walLSN()
	e.waitCount(5, 30*time.Second, p)
	e.waitConfirmedPast(lsn, 30*time.Second, p)
	p.term(t)
	ls := e.listJSON(cfg)
	if len(ls) != 1 {
		t.Fatalf("%d letters, want 1", len(ls))
	}
	var row []byte
	if err := json.Unmarshal(ls[0]["row_base64"], &row); err != nil {
		t.Fatalf("row_base64: %v (%s)", err, ls[0]["row_base64"])
	}
	if !bytes.Contains(row, []byte(`"event_data":`+deep+`}`)) {
		t.Fatalf("row kept as %.200s...", row)
	}
	out := e.runCLI(cfg, "dead-letters", "replay", "--all")
	if !strings.Contains(out, "replayed: 0 delivered, 0 failed again (kept), 1 skipped") {
		t.Fatalf("replay: %s", out)
	}
	out = e.runCLI(cfg, "dead-letters", "discard", "--id", "1")
	if !strings.Contains(out, "discarded 1 dead letter(s)") {
		t.Fatalf("discard: %s", out)
	}
}

// Read-only mode: a 17 MB row makes a 17 MB dead-letter line; the commands
// still read the file, for that letter and the others.
func TestDeadLetterHugeRowReadOnly(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.fake.SetUnknownUsers("ghost")
	cfg := e.writeReadOnly("")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	big := strings.Repeat("y", 17<<20)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('ev', NULL, jsonb_build_object('big', $1::text))`, big)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('ev', 'ghost', '{"n": 1}')`)
	e.insertRows(2, 3)
	lsn := e.walLSN()
	e.waitCount(3, time.Minute, p)
	e.waitConfirmedPast(lsn, time.Minute, p)
	p.term(t)
	if fi, err := os.Stat(filepath.Join(e.dir, "dead.jsonl")); err != nil || fi.Size() < 17<<20 {
		t.Fatalf("dead-letter file: %v, %v", fi, err)
	}
	out, err := e.runCLIResult(cfg, "dead-letters", "list")
	if err != nil || !strings.Contains(out, "2 dead letter(s)") {
		t.Fatalf("list: %v\n%.2000s", err, out)
	}
	ls := e.listJSON(cfg)
	rows := 0
	for _, l := range ls {
		if strings.Contains(string(l["row"]), `"event_data":{"big":"`+big+`"}`) {
			rows++
		}
	}
	if len(ls) != 2 || rows != 1 {
		t.Fatalf("list --json: %d letters, %d with the big row", len(ls), rows)
	}
	e.fake.SetUnknownUsers()
	out = e.runCLI(cfg, "dead-letters", "replay", "--all")
	if !strings.Contains(out, "replayed: 1 delivered, 0 failed again (kept), 1 skipped") {
		t.Fatalf("replay: %s", out)
	}
	out = e.runCLI(cfg, "dead-letters", "discard", "--all")
	if !strings.Contains(out, "discarded 1 dead letter(s)") {
		t.Fatalf("discard: %s", out)
	}
	if b := readFile(t, filepath.Join(e.dir, "dead.jsonl")); b != "" {
		t.Fatalf("file after discard: %.200s", b)
	}
}

// Read-only mode: `dead-letters discard` and `replay` while pgsignal runs
// (the file is rewritten and renamed) lose none of the letters pgsignal
// writes afterwards: they go to the new file, under the file's lock.
func TestDeadLetterCommandsWhileRunningReadOnly(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.fake.SetUnknownUsers("ghost")
	cfg := e.writeReadOnly("")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	rejects := func(from, n int) {
		e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data)
SELECT 'ev', NULL, jsonb_build_object('n', i) FROM generate_series($1::int, $2::int) AS i`, from, from+n-1)
	}
	rejects(0, 2)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('ev', 'ghost', '{"n": 100}')`)
	lsn := e.walLSN()
	e.waitConfirmedPast(lsn, 30*time.Second, p)
	if out := e.runCLI(cfg, "dead-letters", "list"); !strings.Contains(out, "3 dead letter(s)") {
		t.Fatalf("list while running: %s", out)
	}
	id := ""
	for _, l := range e.listJSON(cfg) {
		if strings.Contains(string(l["row"]), `"event_data":{"n":0}`) {
			id = string(l["id"])
		}
	}
	out := e.runCLI(cfg, "dead-letters", "discard", "--id", id)
	if !strings.Contains(out, "discarded 1 dead letter(s)") {
		t.Fatalf("discard while running: %s", out)
	}
	rejects(2, 3)
	lsn = e.walLSN()
	e.waitConfirmedPast(lsn, 30*time.Second, p)
	e.fake.SetUnknownUsers()
	out = e.runCLI(cfg, "dead-letters", "replay", "--reason", "not found")
	if !strings.Contains(out, "replayed: 1 delivered, 0 failed again (kept), 0 skipped") {
		t.Fatalf("replay while running: %s", out)
	}
	rejects(5, 2)
	lsn = e.walLSN()
	e.waitConfirmedPast(lsn, 30*time.Second, p)
	p.term(t)
	var left []string
	for _, l := range e.listJSON(cfg) {
		var row struct {
			EventData json.RawMessage `json:"event_data"`
		}
		if err := json.Unmarshal(l["row"], &row); err != nil {
			t.Fatal(err)
		}
		left = append(left, string(row.EventData))
	}
	if strings.Join(left, " ") != `{"n":1} {"n":2} {"n":3} {"n":4} {"n":5} {"n":6}` {
		t.Fatalf("letters left: %v", left)
	}
	if e.fake.Count() != 1 {
		t.Fatalf("fake has %d events, want the ghost's", e.fake.Count())
	}
}

// Read-only mode: a row a transform turned into two events, both refused
// by OneSignal ("not found"), is two dead letters: listed, replayed and
// discarded as two, as in full mode.
func TestDeadLetterTransformTwoLettersReadOnly(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.fake.SetUnknownUsers("ghost_a", "ghost_b", "ghost_c", "ghost_d")
	e.exec(`CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WITH (publish = 'insert')`)
	cfgText := fmt.Sprintf(`source:
  dsn: %q
  mode: read-only
onesignal:
  app_id: %q
  api_key: "${TEST_ONESIGNAL_KEY}"
  url: %q
sink:
  linger: 5ms
  max_backoff: 2s
  dead_letter_file: %q
server:
  listen: "127.0.0.1:0"
log:
  format: json
tables:
  - table: analytics.user_events
    transform: |
      SELECT event_name AS name, user_id || '_a' AS external_id, event_timestamp AS timestamp, event_data AS properties FROM changes
      UNION ALL
      SELECT event_name, user_id || '_b', event_timestamp, event_data FROM changes
`, e.pg.DSN(""), e.fake.AppID(), e.fake.URL(), filepath.Join(e.dir, "dead.jsonl"))
	cfg := filepath.Join(e.dir, "pgsignal.yaml")
	if err := os.WriteFile(cfg, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('ev', 'ghost', '{"n": 1}')`)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('ev', 'user', '{"n": 2}')`)
	lsn := e.walLSN()
	e.waitCount(2, 30*time.Second, p)
	e.waitConfirmedPast(lsn, 30*time.Second, p)
	p.term(t)
	out := e.runCLI(cfg, "dead-letters", "list")
	if !strings.Contains(out, "2 dead letter(s)") {
		t.Fatalf("list: %s", out)
	}
	// Discard one of the two: the other stays.
	out = e.runCLI(cfg, "dead-letters", "discard", "--id", "1")
	if !strings.Contains(out, "discarded 1 dead letter(s)") {
		t.Fatalf("discard: %s", out)
	}
	if out := e.runCLI(cfg, "dead-letters", "list"); !strings.Contains(out, "1 dead letter(s)") {
		t.Fatalf("list after discard: %s", out)
	}
	// Another such row, then replay both letters left once the users exist.
	p = e.startProc(cfg)
	e.waitStreaming(p)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('ev', 'ghost', '{"n": 3}')`)
	lsn = e.walLSN()
	e.waitConfirmedPast(lsn, 30*time.Second, p)
	p.term(t)
	if out := e.runCLI(cfg, "dead-letters", "list"); !strings.Contains(out, "3 dead letter(s)") {
		t.Fatalf("list: %s", out)
	}
	e.fake.SetUnknownUsers()
	out = e.runCLI(cfg, "dead-letters", "replay", "--all")
	if !strings.Contains(out, "replayed: 3 delivered, 0 failed again (kept), 0 skipped") {
		t.Fatalf("replay: %s", out)
	}
	ghosts := map[string]int{}
	for _, a := range e.fake.Events() {
		if strings.HasPrefix(a.ExternalID, "ghost") {
			ghosts[a.ExternalID+string(a.Properties)]++
		}
	}
	if len(ghosts) != 3 || e.fake.Duplicates() != 0 {
		t.Fatalf("ghost events %v (%d duplicates), want 3 distinct", ghosts, e.fake.Duplicates())
	}
	if out := e.runCLI(cfg, "dead-letters", "list"); !strings.Contains(out, "0 dead letter(s)") {
		t.Fatalf("list after replay: %s", out)
	}
}

// Read-only mode: a dead-letter file that cannot be written (here its path
// is a directory) is retried, with an error naming the file; the stall
// names the dead-letter store. Once the path is free, the letter is
// written and the stream goes on.
func TestDeadLetterFileUnwritableReadOnly(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	cfg := e.writeReadOnly("  concurrency: 1\nstall_timeout: 2s")
	path := filepath.Join(e.dir, "dead.jsonl")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	p := e.startProc(cfg)
	e.waitStreaming(p)
	e.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ('ev', NULL, '{"n": -1}')`)
	e.insertRows(0, 5)
	waitLog(t, p, "stalled: pending events make no progress", 30*time.Second)
	log := readFile(t, p.log)
	if !strings.Contains(log, `"stuck":"the dead-letter store`) || !strings.Contains(log, "dead.jsonl: is a directory") {
		t.Fatalf("stall or retry lines do not name the dead-letter file:\n%s", p.tail())
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	lsn := e.walLSN()
	e.waitCount(5, 30*time.Second, p)
	e.waitConfirmedPast(lsn, 30*time.Second, p)
	p.term(t)
	if out := e.runCLI(cfg, "dead-letters", "list"); !strings.Contains(out, "1 dead letter(s)") {
		t.Fatalf("list: %s", out)
	}
}
