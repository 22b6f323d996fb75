package query

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/replication"
)

func TestQuerySpans(t *testing.T) {
	var s spans
	for _, v := range []int64{5, 7, 6, 1, 3, 2, 10, 7} {
		s = s.add(v)
	}
	want := spans{{1, 3}, {5, 7}, {10, 10}}
	if !slices.Equal(s, want) {
		t.Fatalf("spans = %v, want %v", s, want)
	}
	if got := s.gaps(0); !slices.Equal(got, []gap{{3, 5}, {7, 10}}) {
		t.Errorf("gaps(0) = %v", got)
	}
	if got := s.gaps(-4); !slices.Equal(got, []gap{{-4, 1}, {3, 5}, {7, 10}}) {
		t.Errorf("gaps(-4) = %v", got)
	}
	if got := s.gaps(none); !slices.Equal(got, []gap{{none, 1}, {3, 5}, {7, 10}}) {
		t.Errorf("gaps(none) = %v", got)
	}
	if got := s.above(6); !slices.Equal(got, spans{{7, 7}, {10, 10}}) {
		t.Errorf("above(6) = %v", got)
	}
	if s.has(4) || !s.has(6) || s.top(0) != 10 || (spans{}).top(3) != 3 {
		t.Errorf("has/top wrong for %v", s)
	}
}

func TestQuerySnapshotParse(t *testing.T) {
	sn, err := parseSnapshot("100:105:103,101")
	if err != nil {
		t.Fatal(err)
	}
	if sn.xmin != 100 || sn.xmax != 105 || !slices.Equal(sn.xip, []uint64{101, 103}) || !sn.running(103) || sn.running(102) {
		t.Fatalf("parsed %+v", sn)
	}
	if _, err := parseSnapshot("1:2"); err == nil {
		t.Fatal("want an error for 1:2")
	}
	b, _ := json.Marshal(State{"a.b": {Final: none}, "a.c": {Final: 7, Seen: [][2]int64{{9, 12}}}})
	if string(b) != `{"a.b":{"final":"none","seen":[]},"a.c":{"final":7,"seen":[[9,12]]}}` {
		t.Fatalf("state JSON %s", b)
	}
	var back State
	if err := json.Unmarshal(b, &back); err != nil || back["a.b"].Final != none || back["a.c"].Seen[0] != [2]int64{9, 12} {
		t.Fatalf("state back %+v, %v", back, err)
	}
}

// TestQueryHorizon: a horizon is final once the transactions in progress
// in its two guarding snapshots ended (by their ids on a primary, by xmin
// on a standby, whose snapshots list none).
func TestQueryHorizon(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, standby := range []bool{false, true} {
		h := &horizon{at: t0}
		h.advance(snapshot{xmin: 10, xmax: 12, xip: []uint64{10}, at: t0.Add(time.Millisecond), standby: standby}, time.Second)
		if h.stage != 0 {
			t.Fatalf("a snapshot less than the delay later guards")
		}
		h.advance(snapshot{xmin: 10, xmax: 12, xip: []uint64{10}, at: t0.Add(time.Second), standby: standby}, time.Second)
		h.advance(snapshot{xmin: 10, xmax: 15, xip: []uint64{10, 13}, at: t0.Add(2 * time.Second), standby: standby}, time.Second)
		if h.stage != 2 || h.bound != 15 {
			t.Fatalf("standby=%v: stage %d bound %d, want 2 and 15", standby, h.stage, h.bound)
		}
		// The guard: 10 (in the first snapshot) and 13 (above its xmax 12,
		// in the second).
		cases := []struct {
			c    snapshot
			want bool
		}{
			{snapshot{xmin: 13, xmax: 16, xip: []uint64{13}}, false},
			{snapshot{xmin: 14, xmax: 16, xip: []uint64{14}}, !standby}, // a standby sees only xmin 14 < 15
			{snapshot{xmin: 15, xmax: 16}, true},
		}
		for i, tc := range cases {
			tc.c.standby = standby
			if standby {
				tc.c.xip = nil
			}
			if got := h.final(tc.c); got != tc.want {
				t.Errorf("standby=%v case %d: final = %v, want %v", standby, i, got, tc.want)
			}
		}
	}
}

// db is a PostgreSQL with the events table, and a poller's connection.
type db struct {
	t    *testing.T
	pg   *pgtest.Server
	conn *pgx.Conn
}

func newDB(t *testing.T) *db {
	t.Helper()
	pg := pgtest.New(t, pgtest.Options{})
	conn, err := pgx.Connect(t.Context(), pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	d := &db{t: t, pg: pg, conn: conn}
	d.exec(`CREATE TABLE ev (id bigserial PRIMARY KEY, kind text, n int)`)
	return d
}

func (d *db) exec(sql string, args ...any) {
	d.t.Helper()
	if err := d.pg.Exec(d.t.Context(), sql, args...); err != nil {
		d.t.Fatal(err)
	}
}

func (d *db) open(cfg Config, st State) *Poller {
	d.t.Helper()
	cfg.SystemID = "1"
	if len(cfg.Tables) == 0 {
		cfg.Tables = []Table{{Table: replication.TableRef{Schema: "public", Name: "ev"}, Cursor: "id"}}
	}
	if cfg.Guard == 0 {
		cfg.Guard = time.Millisecond
	}
	p, err := Open(d.t.Context(), d.conn, cfg, st)
	if err != nil {
		d.t.Fatal(err)
	}
	return p
}

// poll polls once and returns the n column of the rows to send.
func (d *db) poll(p *Poller) []int {
	d.t.Helper()
	time.Sleep(2 * time.Millisecond) // the guard: a later now()
	res, err := p.Poll(d.t.Context(), d.conn)
	if err != nil {
		d.t.Fatal(err)
	}
	var out []int
	for _, r := range res.Rows {
		if r.Change == nil {
			continue
		}
		var n int
		fmt.Sscan(string(r.Change.Values[2]), &n)
		out = append(out, n)
	}
	return out
}

// naivePoll is the classic poll: the rows above the highest id seen.
func (d *db) naivePoll(last *int64) []int {
	d.t.Helper()
	rows, err := d.conn.Query(d.t.Context(), `SELECT id, n FROM ev WHERE id > $1 ORDER BY id`, *last)
	if err != nil {
		d.t.Fatal(err)
	}
	var out []int
	for rows.Next() {
		var id int64
		var n int
		if err := rows.Scan(&id, &n); err != nil {
			d.t.Fatal(err)
		}
		*last = id
		out = append(out, n)
	}
	return out
}

// TestQueryLateCommitter: a transaction that took its id before five
// others and commits after pgsignal read theirs. The classic poll (id >
// last seen) skips its row for ever; the poller sends it once it commits,
// also across a restart from its saved state, and sends nothing twice.
func TestQueryLateCommitter(t *testing.T) {
	for _, restart := range []bool{false, true} {
		t.Run(fmt.Sprintf("restart=%v", restart), func(t *testing.T) {
			d := newDB(t)
			ctx := t.Context()
			d.exec(`INSERT INTO ev (kind, n) VALUES ('before', -1), ('before', -2)`)
			p := d.open(Config{}, nil)
			if got := d.poll(p); len(got) != 0 {
				t.Fatalf("first poll sent %v; want nothing from before the first start", got)
			}
			var naiveLast int64
			d.naivePoll(&naiveLast)

			late, err := pgx.Connect(ctx, d.pg.DSN(""))
			if err != nil {
				t.Fatal(err)
			}
			defer late.Close(context.Background())
			tx, err := late.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO ev (kind, n) VALUES ('late', 100), ('late', 101)`); err != nil {
				t.Fatal(err)
			}
			var sent []int
			for i := 1; i <= 5; i++ {
				d.exec(`INSERT INTO ev (kind, n) VALUES ('on time', $1)`, i)
				sent = append(sent, d.poll(p)...)
			}
			naive := d.naivePoll(&naiveLast)
			// Polls while the late transaction is open fold nothing past it.
			for range 5 {
				sent = append(sent, d.poll(p)...)
			}
			if !slices.Equal(sent, []int{1, 2, 3, 4, 5}) {
				t.Fatalf("sent %v before the late commit; want 1..5", sent)
			}
			if st := p.State()["public.ev"]; st.Final >= 3 {
				t.Fatalf("final watermark %d passed the open transaction's ids 3 and 4", st.Final)
			}
			if restart {
				b, err := json.Marshal(p.State())
				if err != nil {
					t.Fatal(err)
				}
				var st State
				if err := json.Unmarshal(b, &st); err != nil {
					t.Fatal(err)
				}
				t.Logf("state at the restart: %s", b)
				p = d.open(Config{}, st)
			}
			if err := tx.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			naive = append(naive, d.naivePoll(&naiveLast)...)
			if slices.Contains(naive, 100) || !slices.Equal(naive, []int{1, 2, 3, 4, 5}) {
				t.Fatalf("the naive poll read %v; the trap needs it to miss 100 and 101", naive)
			}
			sent = append(sent, d.poll(p)...)
			d.exec(`INSERT INTO ev (kind, n) VALUES ('after', 6)`)
			for range 6 {
				sent = append(sent, d.poll(p)...)
			}
			if want := []int{1, 2, 3, 4, 5, 100, 101, 6}; !slices.Equal(sent, want) {
				t.Fatalf("sent %v, want %v (each once)", sent, want)
			}
			st := p.State()["public.ev"]
			if st.Final != 10 || len(st.Seen) != 0 {
				t.Fatalf("state %+v; want every row final (10) and no window", st)
			}
		})
	}
}

// TestQueryWhereRollbackAndBatches: a row filter evaluated by the server,
// a rolled-back transaction's ids (a gap that is folded, not read for
// ever), and an outage's backlog read in LIMIT batches.
func TestQueryWhereRollbackAndBatches(t *testing.T) {
	d := newDB(t)
	ctx := t.Context()
	p := d.open(Config{Batch: 10, Tables: []Table{{Table: replication.TableRef{Schema: "public", Name: "ev"}, Cursor: "id", Where: "kind <> 'skip'"}}}, nil)
	d.poll(p)
	tx, err := d.conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO ev (kind, n) SELECT 'gone', i FROM generate_series(1, 3) i`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	d.exec(`INSERT INTO ev (kind, n) SELECT CASE WHEN i % 5 = 0 THEN 'skip' ELSE 'keep' END, i FROM generate_series(1, 45) i`)
	var sent []int
	polls := 0
	for {
		time.Sleep(2 * time.Millisecond)
		res, err := p.Poll(ctx, d.conn)
		if err != nil {
			t.Fatal(err)
		}
		polls++
		if len(res.Rows) > 10 {
			t.Fatalf("a poll read %d rows; the batch is 10", len(res.Rows))
		}
		for _, r := range res.Rows {
			if r.Change != nil {
				var n int
				fmt.Sscan(string(r.Change.Values[2]), &n)
				sent = append(sent, n)
			}
		}
		if !res.More {
			break
		}
	}
	var want []int
	for i := 1; i <= 45; i++ {
		if i%5 != 0 {
			want = append(want, i)
		}
	}
	if !slices.Equal(sent, want) || polls != 5 {
		t.Fatalf("sent %v in %d polls; want %v in 5", sent, polls, want)
	}
	for range 4 {
		if got := d.poll(p); len(got) != 0 {
			t.Fatalf("sent %v again", got)
		}
	}
	if st := p.State()["public.ev"]; st.Final != 48 || len(st.Seen) != 0 {
		t.Fatalf("state %+v; want final 48 (the rolled-back ids 1-3 folded) and no window", st)
	}
}

// TestQueryRefusesNonUniqueCursor: rows are told apart by their cursor.
func TestQueryRefusesNonUniqueCursor(t *testing.T) {
	d := newDB(t)
	_, err := Open(t.Context(), d.conn, Config{Tables: []Table{{Table: replication.TableRef{Schema: "public", Name: "ev"}, Cursor: "n"}}}, nil)
	if !errors.Is(err, replication.ErrPermanent) || !strings.Contains(err.Error(), "CREATE UNIQUE INDEX") {
		t.Fatalf("Open with cursor n = %v; want a permanent error", err)
	}
	t.Log(err)
}

// TestQueryCursorReset: the greatest cursor value below the final
// watermark (a database gone back to an earlier point) stops the poller
// with an error that names the fix. A sequence with CACHE above 1 is
// warned about.
func TestQueryCursorReset(t *testing.T) {
	d := newDB(t)
	p := d.open(Config{}, nil)
	d.poll(p)
	d.exec(`INSERT INTO ev (kind, n) SELECT 'x', i FROM generate_series(1, 10) i`)
	for range 6 {
		d.poll(p)
	}
	if st := p.State()["public.ev"]; st.Final != 10 {
		t.Fatalf("state %+v; want final 10", st)
	}
	d.exec(`DELETE FROM ev WHERE id > 4`)
	_, err := p.Poll(t.Context(), d.conn)
	var reset *CursorResetError
	if !errors.As(err, &reset) || reset.Max != 4 || reset.Final != 10 || !errors.Is(err, replication.ErrPermanent) ||
		!strings.Contains(err.Error(), "query_positions") {
		t.Fatalf("poll after the reset: %v; want a permanent CursorResetError (max 4, final 10) naming the fix", err)
	}
	if w := p.Warnings(); len(w) != 0 {
		t.Fatalf("warnings %v for a sequence with CACHE 1", w)
	}
	d.exec(`ALTER SEQUENCE ev_id_seq CACHE 20`)
	if w := d.open(Config{}, nil).Warnings(); len(w) != 1 || !strings.Contains(w[0], "CACHE 1") {
		t.Fatalf("warnings %v; want one about the sequence's CACHE 20", w)
	}
}

// TestQueryLateCommitterOnStandby: on a hot standby a snapshot lists no
// transaction in progress (pg_current_snapshot()'s xip is empty there;
// only xmin says what still runs): the window must still stay open until
// the late transaction ends.
func TestQueryLateCommitterOnStandby(t *testing.T) {
	d := newDB(t)
	ctx := t.Context()
	if d.pg.Version() < 12 {
		t.Skipf("pgtest builds standbys on PostgreSQL 12 or later; this is %d", d.pg.Version())
	}
	standby := pgtest.NewStandby(t, d.pg, pgtest.Options{})
	sconn, err := pgx.Connect(ctx, standby.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer sconn.Close(context.Background())
	d.exec(`INSERT INTO ev (kind, n) VALUES ('before', -1)`)
	if err := standby.CatchUp(ctx); err != nil {
		t.Fatal(err)
	}
	p, err := Open(ctx, sconn, Config{SystemID: "1", Guard: time.Millisecond,
		Tables: []Table{{Table: replication.TableRef{Schema: "public", Name: "ev"}, Cursor: "id"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	poll := func() []int {
		t.Helper()
		if err := standby.CatchUp(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
		res, err := p.Poll(ctx, sconn)
		if err != nil {
			t.Fatal(err)
		}
		if !res.Standby {
			t.Fatal("the poll does not know it ran on a standby")
		}
		var out []int
		for _, r := range res.Rows {
			var n int
			fmt.Sscan(string(r.Change.Values[2]), &n)
			out = append(out, n)
		}
		return out
	}
	poll()
	late, err := pgx.Connect(ctx, d.pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close(context.Background())
	tx, err := late.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO ev (kind, n) VALUES ('late', 100)`); err != nil {
		t.Fatal(err)
	}
	var sent []int
	for i := 1; i <= 5; i++ {
		d.exec(`INSERT INTO ev (kind, n) VALUES ('on time', $1)`, i)
		sent = append(sent, poll()...)
	}
	for range 5 {
		sent = append(sent, poll()...)
	}
	if st := p.State()["public.ev"]; st.Final >= 2 {
		t.Fatalf("final watermark %d passed the open transaction's id 2 (state %+v)", st.Final, st)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		sent = append(sent, poll()...)
	}
	if want := []int{1, 2, 3, 4, 5, 100}; !slices.Equal(sent, want) {
		t.Fatalf("sent %v, want %v", sent, want)
	}
	if st := p.State()["public.ev"]; st.Final != 7 || len(st.Seen) != 0 {
		t.Fatalf("state %+v; want every row final (7)", st)
	}
	// Promoted, the standby is a primary: the poller goes on.
	if err := standby.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sconn.Exec(ctx, `INSERT INTO ev (kind, n) VALUES ('promoted', 200)`); err != nil {
		t.Fatal(err)
	}
	res, err := p.Poll(ctx, sconn)
	if err != nil || res.Standby || len(res.Rows) != 1 || string(res.Rows[0].Change.Values[2]) != "200" {
		t.Fatalf("poll after the promotion: %+v, %v; want the row 200 from a primary", res, err)
	}
}

// TestQueryManyGaps: a cursor whose values are not consecutive (a sequence
// with INCREMENT 3) leaves a hole between every two rows; a late row among
// hundreds of holes, past the first batch, is still found (each hole is
// read by its own index range), and a poll reads no more than the batch.
func TestQueryManyGaps(t *testing.T) {
	d := newDB(t)
	ctx := t.Context()
	d.exec(`CREATE SEQUENCE gs INCREMENT 3; CREATE TABLE gev (id bigint PRIMARY KEY DEFAULT nextval('gs'), kind text, n int)`)
	p := d.open(Config{Batch: 10, Guard: time.Hour, Tables: []Table{{Table: replication.TableRef{Schema: "public", Name: "gev"}, Cursor: "id"}}}, nil)
	pollAll := func() []int {
		t.Helper()
		var out []int
		for {
			res, err := p.Poll(ctx, d.conn)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Rows) > 10 {
				t.Fatalf("a poll read %d rows; the batch is 10", len(res.Rows))
			}
			for _, r := range res.Rows {
				var n int
				fmt.Sscan(string(r.Change.Values[2]), &n)
				out = append(out, n)
			}
			if !res.More {
				return out
			}
		}
	}
	pollAll()
	d.exec(`INSERT INTO gev (kind, n) SELECT 'x', i FROM generate_series(1, 100) i`)
	tx, err := d.conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	late, err := pgx.Connect(ctx, d.pg.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close(context.Background())
	ltx, err := late.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ltx.Exec(ctx, `INSERT INTO gev (kind, n) VALUES ('late', 1000)`); err != nil {
		t.Fatal(err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	d.exec(`INSERT INTO gev (kind, n) SELECT 'x', i FROM generate_series(101, 200) i`)
	sent := pollAll()
	if err := ltx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	sent = append(sent, pollAll()...)
	sent = append(sent, pollAll()...)
	want := consecutive(1, 200)
	want = append(want, 1000)
	if !slices.Equal(sent, want) {
		t.Fatalf("sent %d rows %v..., want 1..200 then 1000, each once", len(sent), sent[max(0, len(sent)-3):])
	}
}

func consecutive(from, to int) []int {
	var out []int
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}
