package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// A point-in-time restore keeps the system identifier and writes new
// transactions at LSNs the old timeline used for others. The restored
// cluster is a base backup (BASE_BACKUP, what pg_basebackup runs) recovered
// with recovery_target_lsn and recovery_target_action = promote: it ends
// recovery at that LSN and goes on as timeline 2, while the old cluster wrote
// five more events on timeline 1 after it. On timeline 2, five different
// events are committed at exactly the commit LSNs of those five (the WAL is
// padded to each one's start, and the events are the same size). Before,
// they had the old events' idempotency keys and OneSignal dropped all five
// as duplicates; now each has its own key and all are delivered.
func TestTimelineRestoreReusesLSNs(t *testing.T) {
	e := newEnv(t, pgtest.Options{Conf: map[string]string{"autovacuum": "off"}}, onesignaltest.Options{})
	ctx := context.Background()
	cfg := writeTimelineConfig(t, e, "primary", e.pg.DSN(""), "full", "")

	// Timeline 1: a first run creates the slot, the schema and the
	// publication; three rows are delivered.
	p := e.startProc(cfg)
	e.waitStreaming(p)
	for i := 1; i <= 3; i++ {
		insertSized(t, e.pool, i, "base", i)
	}
	e.waitCount(3, time.Minute, p)
	p.term(t)

	// The restore target lies a few segments ahead: past the end of the
	// base backup (which switches to a new WAL segment).
	seg := int64(queryLSN(t, e.pool, `SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'`))
	target := cdc.LSN((int64(insertLSN(t, e.pool))/seg + 3) * seg)
	restored := pgtest.NewStandby(t, e.pg, pgtest.Options{Conf: map[string]string{
		"recovery_target_lsn": target.String(), "recovery_target_action": "promote",
	}})
	// The old cluster writes up to the target and one record from it (the
	// restored one replays that record and stops), then leaves room for
	// what the restored one writes when it starts (end-of-recovery
	// checkpoint, slot).
	for insertLSN(t, e.pool) < target {
		e.exec(`SELECT pg_logical_emit_message(false, 'pgsignal-test-filler', repeat('x', 1 << 20))`)
	}
	e.exec(`SELECT pg_logical_emit_message(false, 'pgsignal-test-stop', 'x')`)
	e.exec(`SELECT pg_logical_emit_message(false, 'pgsignal-test-filler', repeat('x', 256 << 10))`)
	// Five events on timeline 1 after the restore point: where each
	// transaction starts and ends in the WAL.
	type span struct{ from, to cdc.LSN }
	old := make([]span, 5)
	for i := range old {
		old[i].from = insertLSN(t, e.pool)
		insertSized(t, e.pool, 100+i, "old", i)
		old[i].to = insertLSN(t, e.pool)
	}
	p = e.startProc(cfg)
	e.waitCount(8, time.Minute, p)
	p.term(t)

	// The restored cluster: recovered up to the target, then promoted to
	// timeline 2.
	rpool := waitPromoted(t, restored)
	var tli int
	if err := rpool.QueryRow(ctx, `SELECT timeline_id FROM pg_control_checkpoint()`).Scan(&tli); err != nil {
		t.Fatal(err)
	}
	var history string
	if err := rpool.QueryRow(ctx, `SELECT pg_read_file('pg_wal/00000002.history')`).Scan(&history); err != nil {
		t.Fatal(err)
	}
	t.Logf("restored cluster on timeline %d; history: %q; old events at %v", tli, history, old)
	if tli != 2 || !strings.HasPrefix(history, "1\t") {
		t.Fatalf("restored cluster on timeline %d, want 2", tli)
	}

	// pgsignal on the restored cluster: the checkpoint restored with the
	// database is ahead of a slot the backup does not hold; on_slot_lost:
	// recreate goes on from now. The first run creates the slot, then the
	// WAL is left to the test.
	rcfg := writeTimelineConfig(t, e, "restored", restored.DSN(""), "full", "  on_slot_lost: recreate\n")
	p = e.startProc(rcfg)
	waitStreamingOn(t, rpool, p)
	p.term(t)

	// Five different events (other ids, users and properties of the same
	// sizes) committed at the commit LSNs of the five old ones.
	conn, err := rpool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for i, o := range old {
		if !padWAL(t, conn.Conn(), o.from, seg) {
			t.Logf("new event %d: the WAL is already past %s; not at the old position", i, o.from)
		}
		from := insertLSN(t, conn)
		insertSized(t, conn, 200+i, "new", i)
		to := insertLSN(t, conn)
		if from == o.from && to == o.to {
			same++
		} else {
			t.Logf("new event %d spans %s-%s, the old one %s-%s", i, from, to, o.from, o.to)
		}
	}
	conn.Release()
	t.Logf("%d of 5 new events committed at an old event's commit LSN", same)
	if same < 3 {
		t.Fatalf("only %d of 5 new events took an old event's WAL position; the test needs them to", same)
	}

	p = e.startProc(rcfg)
	ctx2, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for e.fake.Count()+e.fake.Duplicates() < 13 && ctx2.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	p.term(t)
	t.Logf("figures: 5 new events on timeline 2 at old LSNs (%d exactly), accepted %d of 13, dropped as duplicates %d",
		same, e.fake.Count(), e.fake.Duplicates())
	if e.fake.Duplicates() != 0 || e.fake.Count() != 13 {
		t.Fatalf("OneSignal accepted %d events and dropped %d as duplicates; want 13 and 0", e.fake.Count(), e.fake.Duplicates())
	}
	keys := map[string]string{}
	for _, ev := range e.fake.Events() {
		if prev, dup := keys[ev.IdempotencyKey]; dup {
			t.Fatalf("events of %s and %s share key %s", prev, ev.ExternalID, ev.IdempotencyKey)
		}
		keys[ev.IdempotencyKey] = ev.ExternalID
	}
}

// A standby promoted after a failover: an event committed on timeline 1
// before the promotion and read again from the promoted server (timeline 2)
// keeps its idempotency key, so OneSignal absorbs the resend; an event
// committed after the promotion is delivered. Read-only mode keeps its
// place only in the slot, which is copied to the standby (PostgreSQL 15 has
// no failover slots) before the event.
func TestTimelinePromotionKeepsKeys(t *testing.T) {
	var mu sync.Mutex
	seen := map[string][]string{} // external_id → keys, duplicates included
	e := newEnv(t, pgtest.Options{Conf: map[string]string{"autovacuum": "off"}}, onesignaltest.Options{
		Reject: func(a onesignaltest.Accepted) string {
			mu.Lock()
			defer mu.Unlock()
			seen[a.ExternalID] = append(seen[a.ExternalID], a.IdempotencyKey)
			return ""
		},
	})
	ctx := context.Background()
	e.exec(`CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WITH (publish = 'insert')`)
	// The standby first: it streams the WAL the slot will need.
	standby := pgtest.NewStandby(t, e.pg, pgtest.Options{Conf: map[string]string{"wal_keep_size": "1GB"}})
	cfg := writeTimelineConfig(t, e, "primary", e.pg.DSN(""), "read-only", "")
	p := e.startProc(cfg)
	e.waitStreaming(p)
	insertSized(t, e.pool, 1, "base", 1)
	e.waitCount(1, time.Minute, p)
	p.term(t)

	e.exec(`CHECKPOINT`) // the slot's state on disk, confirmed past the first row
	if err := standby.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	copySlot(t, e.pg, standby, "pgsignal")
	if err := standby.Restart(ctx); err != nil {
		t.Fatal(err)
	}

	// The event committed before the promotion, delivered from timeline 1.
	p = e.startProc(cfg)
	e.waitStreaming(p)
	insertSized(t, e.pool, 2, "before", 2)
	e.waitCount(2, time.Minute, p)
	p.term(t)
	if err := standby.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	spool := waitPromoted(t, standby)
	insertSized(t, spool, 3, "after", 3)

	scfg := writeTimelineConfig(t, e, "promoted", standby.DSN(""), "read-only", "")
	p = e.startProc(scfg)
	ctx2, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for (e.fake.Count() < 3 || e.fake.Duplicates() < 1) && ctx2.Err() == nil { // the resend of before-2 and after-3
		time.Sleep(20 * time.Millisecond)
	}
	p.term(t)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("figures: keys sent per user %v; accepted %d, duplicates absorbed %d", seen, e.fake.Count(), e.fake.Duplicates())
	// The slot's copy may be behind (PostgreSQL saves a slot's confirmed
	// position lazily), so the first row may come again too: with its key.
	sends := 0
	for user, keys := range seen {
		for _, k := range keys {
			if k != keys[0] {
				t.Errorf("%s was sent with keys %v; want one key", user, keys)
				break
			}
		}
		sends += len(keys)
	}
	if before := seen["before-2"]; len(before) != 2 {
		t.Fatalf("the event committed before the promotion was sent %d times; want twice (before and after)", len(before))
	}
	if e.fake.Count() != 3 || e.fake.Duplicates() != sends-3 || len(seen["after-3"]) != 1 {
		t.Fatalf("accepted %d, duplicates %d of %d sends, after-promotion sends %d; want 3, %d, 1",
			e.fake.Count(), e.fake.Duplicates(), sends, len(seen["after-3"]), sends-3)
	}
}

// writeTimelineConfig writes config name.yaml for dsn and mode; source is
// appended under source:.
func writeTimelineConfig(t *testing.T, e *env, name, dsn, mode, source string) string {
	t.Helper()
	cfg := fmt.Sprintf(`source:
  dsn: %q
  mode: %s
%sonesignal:
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
  - table: analytics.user_events
    name: event_name
    external_id: user_id
    timestamp: event_timestamp
    properties: event_data
`, dsn, mode, source, e.fake.AppID(), e.fake.URL(), filepath.Join(e.dir, name+"-dead.jsonl"))
	path := filepath.Join(e.dir, name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// rowQuerier is a pool or a connection.
type rowQuerier interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// insertSized inserts row id in its own transaction, with user
// "<kind>-<n>": rows of the same id and n widths are the same size in the
// WAL whatever their kind (three letters).
func insertSized(t *testing.T, q rowQuerier, id int, kind string, n int) {
	t.Helper()
	var got int
	err := q.QueryRow(context.Background(), `INSERT INTO analytics.user_events (id, event_name, user_id, event_timestamp, event_data)
VALUES ($1, 'ev', $2, now(), jsonb_build_object('n', $3::int)) RETURNING 1`, id, fmt.Sprintf("%s-%d", kind, n), n).Scan(&got)
	if err != nil {
		t.Fatalf("insert row %d: %v", id, err)
	}
}

// insertLSN returns pg_current_wal_insert_lsn().
func insertLSN(t *testing.T, q rowQuerier) cdc.LSN {
	t.Helper()
	return queryLSN(t, q, `SELECT pg_current_wal_insert_lsn()::text`)
}

// queryLSN scans one value of sql: an LSN, or a number (returned as is).
func queryLSN(t *testing.T, q rowQuerier, sql string) cdc.LSN {
	t.Helper()
	var s string
	if err := q.QueryRow(context.Background(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	if strings.Contains(s, "/") {
		l, err := cdc.ParseLSN(s)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil {
		t.Fatalf("%s: %q: %v", sql, s, err)
	}
	return cdc.LSN(n)
}

// WAL page geometry (XLOG_BLCKSZ, page header sizes).
const (
	walPage       = 8192
	walShortHead  = 24
	walLongHead   = 40
	walUsablePage = walPage - walShortHead
)

// walBytePos is PostgreSQL's XLogRecPtrToBytePos: the position counted in
// bytes usable for records, without page headers.
func walBytePos(l cdc.LSN, seg int64) int64 {
	usableSeg := (seg/walPage)*walUsablePage - (walLongHead - walShortHead)
	full := int64(l) / seg
	pages := (int64(l) % seg) / walPage
	off := int64(l) % walPage
	if pages == 0 {
		return full*usableSeg + off - walLongHead
	}
	return full*usableSeg + (walPage - walLongHead) + (pages-1)*walUsablePage + off - walShortHead
}

// padWAL writes one non-transactional logical message whose record ends
// exactly at to, so that the next record starts there. A message record is
// 24 bytes of header, 2 (or 5 from 256 bytes of data) of data header, 24 of
// xl_logical_message, the prefix with its NUL and the content, aligned to 8;
// page headers are not part of the byte positions. false: the WAL is
// already past to (or too close to it for a record).
func padWAL(t *testing.T, conn *pgx.Conn, to cdc.LSN, seg int64) bool {
	t.Helper()
	const prefix = "p" // 2 bytes with its NUL
	for range 3 {
		cur := insertLSN(t, conn)
		gap := walBytePos(to, seg) - walBytePos(cur, seg)
		if gap == 0 {
			return true
		}
		if gap < 56 {
			return false
		}
		n := gap - 24 - 2 - 24 - 2
		if 24+2+n >= 256 {
			n -= 3
		}
		if _, err := conn.Exec(context.Background(), `SELECT pg_logical_emit_message(false, $1, repeat('x', $2))`, prefix, int(n)); err != nil {
			t.Fatal(err)
		}
	}
	return insertLSN(t, conn) == to
}

// waitPromoted waits until s accepts writes and returns a pool on it.
func waitPromoted(t *testing.T, s *pgtest.Server) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), s.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var rec bool
		err := pool.QueryRow(context.Background(), `SELECT pg_is_in_recovery()`).Scan(&rec)
		if err == nil && !rec {
			return pool
		}
		if time.Now().After(deadline) {
			t.Fatalf("server on port %d not promoted (in recovery: %v, %v)\n%s", s.Port(), rec, err, s.LogTail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitStreamingOn waits until p streams its slot on the server of pool.
func waitStreamingOn(t *testing.T, pool *pgxpool.Pool, p *proc) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		var active bool
		err := pool.QueryRow(context.Background(), `SELECT EXISTS (SELECT 1 FROM pg_replication_slots s
  JOIN pg_stat_replication r ON r.pid = s.active_pid WHERE s.slot_name = 'pgsignal' AND r.state IN ('streaming', 'catchup'))`).Scan(&active)
		if err == nil && active {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("pgsignal exited: %v\n%s", p.err, p.tail())
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatalf("pgsignal did not start streaming in 60s\n%s", p.tail())
}

// copySlot copies slot's state file from one server's data directory to
// another's (as the user owning it); the target loads it when it starts.
func copySlot(t *testing.T, from, to *pgtest.Server, slot string) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(from.DataDir, "pg_replslot", slot, "state"))
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(to.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	dir := filepath.Join(to.DataDir, "pg_replslot", slot)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "state")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{dir, file} {
		if err := os.Chown(p, int(st.Uid), int(st.Gid)); err != nil {
			t.Fatal(err)
		}
	}
}
