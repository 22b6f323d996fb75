package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// writeTextConfig writes a config for database dsn in mode with the given
// tables section.
func (e *env) writeTextConfig(name, dsn, mode, tables string) string {
	e.t.Helper()
	cfg := fmt.Sprintf(`source:
  dsn: %q
  mode: %s
onesignal:
  app_id: %q
  api_key: "${TEST_ONESIGNAL_KEY}"
  url: %q
  timeout: 60s
sink:
  linger: 5ms
  max_backoff: 2s
  dead_letter_file: %q
shutdown_timeout: 60s
server:
  listen: "127.0.0.1:0"
log:
  level: info
  format: json
tables:
%s`, dsn, mode, e.fake.AppID(), e.fake.URL(), filepath.Join(e.dir, "dead.jsonl"), tables)
	path := filepath.Join(e.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return path
}

// newASCIIDatabase creates database "ascii" (SQL_ASCII, C locale) with the
// events table, and returns a pool on it.
func (e *env) newASCIIDatabase() *pgxpool.Pool {
	e.t.Helper()
	e.exec(`CREATE DATABASE ascii TEMPLATE template0 ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C'`)
	pool, err := pgxpool.New(context.Background(), e.pg.DSN("ascii"))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(pool.Close)
	if _, err := pool.Exec(context.Background(), eventsTable); err != nil {
		e.t.Fatal(err)
	}
	return pool
}

// In a SQL_ASCII database, text that is not UTF-8 never reaches OneSignal
// replaced: the users caf\xe9 and caf\xe8 (Latin-1) become two dead letters
// that show their bytes distinctly, and do not merge with the user
// "caf\uFFFD" (valid UTF-8, sent as it is); a name and a json property
// holding such bytes are dead letters too. Every request the fake received
// was valid UTF-8 (it answers 400 otherwise), and `pgsignal check` warns
// about the encoding.
//
// At 37942e1 the three users went out as one, "caf\ufffd", and the
// property's \xff made a request body that is not UTF-8.
func TestNotUTF8TextInSQLASCII(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	ascii := e.newASCIIDatabase()
	cfg := e.writeTextConfig("ascii", e.pg.DSN("ascii"), "full", defaultTables)

	env := []string{"TEST_ONESIGNAL_KEY=" + e.fake.APIKey()}
	out, errOut, code := runCheckCLI(t, env, "check", "--config", cfg)
	t.Logf("check:\n%s", out)
	if code != 0 {
		t.Fatalf("check exit %d (a warning must not fail it):\n%s%s", code, out, errOut)
	}
	assertLines(t, out, `! server encoding: SQL_ASCII: database "ascii" stores text bytes as they were given`,
		"fix: the database should use UTF8")

	p := e.startProc(cfg)
	e.waitStreaming(p)
	ctx := context.Background()
	rows := []struct{ name, user, data string }{
		{`'ev'`, `E'caf\xe9'`, `'{"n": 1}'`},
		{`'ev'`, `E'caf\xe8'`, `'{"n": 2}'`},
		{`'ev'`, `E'caf\xef\xbf\xbd'`, `'{"n": 3}'`}, // U+FFFD itself: valid UTF-8
		{`'ev'`, `'plain'`, `E'{"n": 4, "k": "\xff"}'`},
		{`E'sign\xe9up'`, `'named'`, `'{"n": 5}'`},
		{`'ev'`, `'ok'`, `'{"n": 6}'`},
	}
	for _, r := range rows {
		if _, err := ascii.Exec(ctx, `INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES (`+r.name+`, `+r.user+`, `+r.data+`)`); err != nil {
			t.Fatal(err)
		}
	}
	e.waitCount(2, 60*time.Second, p)
	deadline := time.Now().Add(60 * time.Second)
	count := func() (n int64) {
		_ = ascii.QueryRow(ctx, `SELECT count(*) FROM census.dead_letters`).Scan(&n)
		return n
	}
	for count() < 4 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}

	// The events: the valid U+FFFD user and "ok", once each.
	var users []string
	for _, ev := range e.fake.Events() {
		users = append(users, ev.ExternalID)
	}
	slices.Sort(users)
	if want := []string{"caf\uFFFD", "ok"}; !slices.Equal(users, want) {
		t.Fatalf("events for users %q, want %q", users, want)
	}

	// The dead letters: one per row, the bytes shown distinctly in the
	// reason and kept in the row.
	type letter struct{ reason, user, userBytes, nameBytes, dataBytes string }
	var letters []letter
	lrows, err := ascii.Query(ctx, `SELECT reason, coalesce(source_row->>'user_id', ''), coalesce(source_row->'user_id'->>'not_utf8', ''),
  coalesce(source_row->'event_name'->>'not_utf8', ''), coalesce(source_row->'event_data'->>'not_utf8', '')
FROM census.dead_letters ORDER BY ordinal, commit_lsn`)
	if err != nil {
		t.Fatal(err)
	}
	for lrows.Next() {
		var l letter
		if err := lrows.Scan(&l.reason, &l.user, &l.userBytes, &l.nameBytes, &l.dataBytes); err != nil {
			t.Fatal(err)
		}
		letters = append(letters, l)
		t.Logf("dead letter: %+v", l)
		if !utf8.ValidString(l.reason) || strings.ContainsRune(l.reason, '\uFFFD') {
			t.Fatalf("reason %q is not valid UTF-8 or holds U+FFFD", l.reason)
		}
	}
	if err := lrows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(letters) != 4 {
		t.Fatalf("%d dead letters, want 4", len(letters))
	}
	byUser := map[string]letter{}
	for _, l := range letters {
		key := l.userBytes
		if key == "" {
			key = l.user
		}
		byUser[key] = l
	}
	checks := []struct {
		user, field, reason string
		bytesOf             func(letter) string
		bytes               string
	}{
		{`\x636166e9`, "external_id", `external_id column "user_id" holds text that is not valid UTF-8 (byte 3): "caf\xe9", \x636166e9`,
			func(l letter) string { return l.userBytes }, `\x636166e9`},
		{`\x636166e8`, "external_id", `external_id column "user_id" holds text that is not valid UTF-8 (byte 3): "caf\xe8", \x636166e8`,
			func(l letter) string { return l.userBytes }, `\x636166e8`},
		{"plain", "properties", `properties column "event_data" holds text that is not valid UTF-8 (byte 7): "{\"k\": \"\xff\", \"n\": 4}"`,
			func(l letter) string { return l.dataBytes }, `\x7b226b223a2022ff222c20226e223a20347d`},
		{"named", "name", `event name column "event_name" holds text that is not valid UTF-8 (byte 4): "sign\xe9up", \x7369676ee97570`,
			func(l letter) string { return l.nameBytes }, `\x7369676ee97570`},
	}
	for _, c := range checks {
		l, ok := byUser[c.user]
		if !ok {
			t.Fatalf("no dead letter for user %s: %+v", c.user, letters)
		}
		if !strings.Contains(l.reason, c.reason) || !strings.Contains(l.reason, "OneSignal would read those bytes as U+FFFD") {
			t.Errorf("%s letter reason %q, want it to hold %q", c.field, l.reason, c.reason)
		}
		if got := c.bytesOf(l); got != c.bytes {
			t.Errorf("%s letter keeps bytes %q in its row, want %q", c.field, got, c.bytes)
		}
	}
	st := e.fake.Stats()
	t.Logf("figures: 6 rows, %d events (users %q), %d dead letters, fake stats %+v", len(users), users, len(letters), st)
	if st.BadRequests != 0 {
		t.Fatalf("the fake answered %d requests 400 (a body that is not UTF-8?)", st.BadRequests)
	}
	p.term(t)
	if b, _ := os.ReadFile(p.log); !strings.Contains(string(b), `"level":"warn"`) || !strings.Contains(string(b), "the database is SQL_ASCII") {
		t.Fatalf("no start-up warning about SQL_ASCII in the log:\n%s", b)
	}
}

// timestamp_zone and timestamp_unit through the binary: `pgsignal check`
// passes a bigint column with timestamp_unit ms (at 37942e1 it failed it
// and suggested an ALTER that cannot run), and `pgsignal run` sends, for
// every 15 minutes within 3 hours of both 2026 changes of offset in
// America/New_York and Europe/London, the instant PostgreSQL's AT TIME ZONE
// gives (at 37942e1 local 02:30 on 2026-03-08 in New York went out as
// 06:30Z, PostgreSQL 07:30Z).
func TestTimestampZoneAndUnitThroughBinary(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	e.exec(`CREATE TABLE analytics.local_ny (id bigint PRIMARY KEY, user_id text, at timestamp);
CREATE TABLE analytics.local_london (id bigint PRIMARY KEY, user_id text, at timestamp);
CREATE TABLE analytics.epoch_ms (id bigint PRIMARY KEY, user_id text, at bigint)`)
	table := func(name, extra string) string {
		return fmt.Sprintf(`  - table: analytics.%s
    name_value: %s
    external_id: user_id
    timestamp: at
    properties: [id]
%s`, name, name, extra)
	}
	cfg := e.writeTextConfig("zones", e.pg.DSN(""), "full", table("local_ny", "    timestamp_zone: America/New_York\n")+
		table("local_london", "    timestamp_zone: Europe/London\n")+table("epoch_ms", "    timestamp_unit: ms\n"))

	env := []string{"TEST_ONESIGNAL_KEY=" + e.fake.APIKey()}
	out, errOut, code := runCheckCLI(t, env, "check", "--config", cfg)
	t.Logf("check:\n%s", out)
	if code != 0 || strings.Contains(out, "✗") {
		t.Fatalf("check exit %d:\n%s%s", code, out, errOut)
	}
	assertLines(t, out, "✓ columns analytics.epoch_ms: ", "timestamp ← at (bigint)")

	p := e.startProc(cfg)
	e.waitStreaming(p)
	const around = `SELECT g.n, 'u' || g.n, w FROM (SELECT row_number() OVER () AS n, w FROM (
  SELECT generate_series(c - interval '3 hours', c + interval '3 hours', interval '15 minutes') AS w
  FROM unnest(%s::timestamp[]) AS c) s) g`
	e.exec(`INSERT INTO analytics.local_ny (id, user_id, at) ` + fmt.Sprintf(around, `ARRAY['2026-03-08 02:00', '2026-11-01 01:00']`))
	e.exec(`INSERT INTO analytics.local_london (id, user_id, at) ` + fmt.Sprintf(around, `ARRAY['2026-03-29 01:00', '2026-10-25 01:00']`))
	e.exec(`INSERT INTO analytics.epoch_ms (id, user_id, at) VALUES (1, 'u1', 1772955000123), (2, 'u2', -1)`)
	want := map[string]string{} // "table/id" -> timestamp
	rows, err := e.pool.Query(context.Background(), `
SELECT 'local_ny/' || id, to_char((at AT TIME ZONE 'America/New_York') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') FROM analytics.local_ny
UNION ALL
SELECT 'local_london/' || id, to_char((at AT TIME ZONE 'Europe/London') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') FROM analytics.local_london
UNION ALL
SELECT 'epoch_ms/' || id, to_char(to_timestamp(at / 1000.0) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') FROM analytics.epoch_ms`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			t.Fatal(err)
		}
		want[k] = v
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	e.waitCount(len(want), 60*time.Second, p)
	bad := 0
	for _, ev := range e.fake.Events() {
		var props struct{ ID int }
		if err := json.Unmarshal(ev.Properties, &props); err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("%s/%d", ev.Name, props.ID)
		if w, ok := want[k]; !ok || w != ev.Timestamp {
			bad++
			t.Errorf("%s: timestamp %s, PostgreSQL %s", k, ev.Timestamp, w)
		}
		delete(want, k)
	}
	t.Logf("figures: %d events compared with PostgreSQL's AT TIME ZONE, %d differ, %d missing", e.fake.Count(), bad, len(want))
	if bad > 0 || len(want) > 0 {
		t.Fatalf("%d timestamps differ, %d events missing: %v", bad, len(want), want)
	}
	p.term(t)
}

// Read-only mode: the same rows become lines of the dead-letter file, each
// valid UTF-8 JSON with the bytes shown distinctly, and `pgsignal
// dead-letters list` reads them.
func TestNotUTF8TextReadOnly(t *testing.T) {
	e := newEnv(t, pgtest.Options{}, onesignaltest.Options{})
	ascii := e.newASCIIDatabase()
	ctx := context.Background()
	if _, err := ascii.Exec(ctx, `CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WITH (publish = 'insert')`); err != nil {
		t.Fatal(err)
	}
	cfg := e.writeTextConfig("ascii-ro", e.pg.DSN("ascii"), "read-only", defaultTables)
	p := e.startProc(cfg)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var active bool
		_ = ascii.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_replication_slots s JOIN pg_stat_replication r ON r.pid = s.active_pid
  WHERE s.slot_name = 'pgsignal' AND r.state IN ('streaming', 'catchup'))`).Scan(&active)
		if active {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgsignal did not start streaming\n%s", p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := ascii.Exec(ctx, `INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES
  ('ev', E'caf\xe9', '{"n": 1}'), ('ev', E'caf\xe8', '{"n": 2}'), ('ev', E'caf\xef\xbf\xbd', '{"n": 3}'), ('ev', 'ok', '{"n": 4}')`); err != nil {
		t.Fatal(err)
	}
	e.waitCount(2, 60*time.Second, p)
	path := filepath.Join(e.dir, "dead.jsonl")
	var lines []string
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) >= 2 && lines[0] != "" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.term(t)
	if len(lines) != 2 {
		t.Fatalf("%d dead-letter lines, want 2: %q\n%s", len(lines), lines, p.tail())
	}
	seen := map[string]bool{}
	for _, line := range lines {
		var rec struct {
			Reason string
			Row    struct {
				UserID struct {
					NotUTF8 string `json:"not_utf8"`
				} `json:"user_id"`
			}
		}
		if !utf8.ValidString(line) || json.Unmarshal([]byte(line), &rec) != nil {
			t.Fatalf("line %q is not valid UTF-8 JSON", line)
		}
		if !strings.Contains(rec.Reason, `holds text that is not valid UTF-8 (byte 3): "caf\x`) || !strings.Contains(rec.Reason, rec.Row.UserID.NotUTF8) {
			t.Fatalf("reason %q, row bytes %q", rec.Reason, rec.Row.UserID.NotUTF8)
		}
		seen[rec.Row.UserID.NotUTF8] = true
	}
	if !seen[`\x636166e9`] || !seen[`\x636166e8`] {
		t.Fatalf("dead letters keep %v, want \\x636166e9 and \\x636166e8", seen)
	}
	var users []string
	for _, ev := range e.fake.Events() {
		users = append(users, ev.ExternalID)
	}
	slices.Sort(users)
	if want := []string{"caf\uFFFD", "ok"}; !slices.Equal(users, want) || e.fake.Stats().BadRequests != 0 {
		t.Fatalf("events for users %q, want %q; fake %+v", users, want, e.fake.Stats())
	}
	out, errOut, code := runCheckCLI(t, []string{"TEST_ONESIGNAL_KEY=" + e.fake.APIKey()}, "dead-letters", "list", "--config", cfg)
	t.Logf("dead-letters list:\n%s", out)
	if code != 0 || !utf8.ValidString(out) || !strings.Contains(out, `"caf\xe9"`) || !strings.Contains(out, `"caf\xe8"`) {
		t.Fatalf("dead-letters list exit %d:\n%s%s", code, out, errOut)
	}
}
