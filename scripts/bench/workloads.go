package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// Targets of issues 5 and 17: W1's and W2's ratio to the limit over each
// transport (never the bottleneck over TCP, 0.9 over the Unix socket, where
// the walsender is about twice as fast), W3's p99.
const (
	targetRatioTCP  = 1.0
	targetRatioUnix = 0.9
	targetP99       = 10 * time.Millisecond
	targetRSS       = 100 << 20
	targetSlowRel   = 0.8
)

// Sizes at scale 1.
const (
	w1Rows         = 1_000_000
	w2Clients      = 4
	w2TxnPerClient = 50_000
	w3Duration     = 60 * time.Second
	w3MinDuration  = 5 * time.Second
	w3TxnPerSec    = 100 // one every 10 ms ...
	w3RowsPerTxn   = 50  // ... of 50 rows: 5,000 events/s
	w3Conns        = 4
	w4Rows         = 5_000_000
	w5Latency      = 50 * time.Millisecond
	w6Rows         = 400_000
	// W6 inserts in transactions of at most w6TxnRows rows, which PostgreSQL
	// decodes in memory (logical_decoding_work_mem): a transaction spilled to
	// disk makes the walsender, not pgsignal, the bottleneck of the plain
	// run, and hides part of the transform's cost.
	w6TxnRows = 100_000
)

// Bounds of the waits that do not depend on a flag.
const (
	generateTimeout = 10 * time.Minute
	readerTimeout   = 5 * time.Minute
	drainTimeout    = time.Minute
)

// insertSQL inserts $1 rows of realistic content: six event names, 10,000
// users, a jsonb object of four keys. $2 offsets the users.
const insertSQL = `INSERT INTO analytics.user_events (event_name, user_id, event_data)
SELECT (ARRAY['signup','login','page_view','add_to_cart','purchase','level_up'])[1 + (i + $2) % 6],
       'user_' || ((i + $2) % 10000),
       jsonb_build_object('plan', (ARRAY['free','pro','team'])[1 + i % 3],
                          'path', '/products/' || (i % 500),
                          'value', (i % 1000) * 1.5,
                          'campaign', 'spring_' || (i % 7))
FROM generate_series(1, $1::int) AS i`

// usersSQL creates W6's lookup table: a plan for each of insertSQL's 10,000
// user ids (user_0 to user_9999). It is not in the publication, and is
// analyzed because autovacuum is off.
const usersSQL = `CREATE TABLE IF NOT EXISTS analytics.users (id text PRIMARY KEY, plan text);
INSERT INTO analytics.users (id, plan)
SELECT 'user_' || i, (ARRAY['free','pro','team','enterprise'])[1 + i % 4]
FROM generate_series(0, 9999) AS i
ON CONFLICT (id) DO NOTHING;
ANALYZE analytics.users;`

// w6Transform is W6's transform: the plain mapping's event (name,
// external_id, timestamp, properties) with the user's plan from
// analytics.users merged into the properties.
const w6Transform = `SELECT c.event_name AS name, c.user_id AS external_id, c.event_timestamp AS timestamp,
       c.event_data || jsonb_build_object('plan', u.plan) AS properties
FROM changes c LEFT JOIN analytics.users u ON u.id = c.user_id`

// pgbenchScript is W2's transaction: one row, the same shape as insertSQL's.
const pgbenchScript = `\set u random(0, 9999)
\set k random(1, 6)
\set v random(0, 999)
INSERT INTO analytics.user_events (event_name, user_id, event_data) VALUES ((ARRAY['signup','login','page_view','add_to_cart','purchase','level_up'])[:k], 'user_' || :u, jsonb_build_object('plan', (ARRAY['free','pro','team'])[1 + :v % 3], 'path', '/products/' || (:v % 500), 'value', :v * 1.5, 'campaign', 'spring_' || (:u % 7)));
`

func (b *bench) scaled(n int) int { return max(1, int(math.Round(float64(n)*b.opts.scale))) }

// fail records err on res and logs it.
func (b *bench) fail(res *Result, err error) *Result {
	res.Error = err.Error()
	b.logf("%s failed: %v", res.Name, err)
	return res
}

// generated is what a workload's generation left in the WAL.
type generated struct {
	end      pglogrepl.LSN
	walBytes int64
	seconds  float64
}

// generate empties the table, creates slots so that they all decode what
// gen writes next, runs gen, checks the row count and checkpoints.
func (b *bench) generate(ctx context.Context, res *Result, slots []string, gen func(context.Context) error) (generated, error) {
	var g generated
	if err := b.prepare(ctx); err != nil {
		return g, err
	}
	if err := b.createSlots(ctx, slots...); err != nil {
		return g, err
	}
	start, err := b.currentLSN(ctx)
	if err != nil {
		return g, err
	}
	t := time.Now()
	gctx, cancel := context.WithTimeout(ctx, generateTimeout)
	err = gen(gctx)
	cancel()
	if err != nil {
		return g, err
	}
	g.seconds = time.Since(t).Seconds()
	var rows int
	if err := b.db.QueryRow(ctx, `SELECT count(*) FROM analytics.user_events`).Scan(&rows); err != nil {
		return g, fmt.Errorf("count rows: %w", err)
	}
	if rows != res.Events {
		return g, fmt.Errorf("the workload inserted %d rows, expected %d", rows, res.Events)
	}
	if g.end, err = b.currentLSN(ctx); err != nil {
		return g, err
	}
	g.walBytes = int64(g.end - start)
	res.WALBytes, res.GenerateSeconds = g.walBytes, round(g.seconds, 2)
	b.logf("%s: %d rows in %.1fs (%d MiB of WAL); checkpoint", res.Name, rows, g.seconds, g.walBytes>>20)
	return g, b.exec(ctx, 5*time.Minute, `CHECKPOINT`)
}

// slotSeries returns one slot name per round: prefix_1, prefix_2, ...
func (b *bench) slotSeries(prefix string) []string {
	names := make([]string, b.opts.repeat)
	for i := range names {
		names[i] = fmt.Sprintf("%s_%d", prefix, i+1)
	}
	return names
}

// runName names round i (0-based) of a workload's pgsignal runs, for its
// files: "W1", or "W1-2" when there are several rounds.
func (b *bench) runName(workload string, i int) string {
	if b.opts.repeat == 1 {
		return workload
	}
	return fmt.Sprintf("%s-%d", workload, i+1)
}

// best returns the fastest of runs.
func best(runs []*Reader) *Reader {
	var r *Reader
	for _, x := range runs {
		if r == nil || x.EventsPerSec > r.EventsPerSec {
			r = x
		}
	}
	return r
}

func rates(runs []*Reader) []float64 {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = round(r.EventsPerSec, 0)
	}
	return v
}

// compare times pg_recvlogical and then pgsignal over the same WAL, once per
// round (alternating, each from its own slot), and keeps the fastest of each.
// An untimed pg_recvlogical reads the WAL first from warmSlot, so that no
// timed reader is the first to read freshly written WAL (in some of our runs
// that reader's walsender used up to 1.3 times the CPU of a later one's).
//
// Both readers connect over transport; warmSlot "" skips the warm-up (a
// second transport on WAL already read once).
func (b *bench) compare(ctx context.Context, res *Result, g generated, transport, warmSlot string, limitSlots, pgsSlots []string) error {
	if warmSlot != "" {
		b.logf("%s: warm-up: pg_recvlogical to %s (not timed)", res.Name, g.end)
		warm, err := b.runLimit(ctx, transport, warmSlot, g.end, res.Events, readerTimeout)
		if err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		res.Warmup = warm
	}
	var lims, pgss []*Reader
	for i := range limitSlots {
		round := ""
		if len(limitSlots) > 1 {
			round = fmt.Sprintf(" (round %d of %d)", i+1, len(limitSlots))
		}
		b.logf("%s %s: limit%s: pg_recvlogical to %s", res.Name, transport, round, g.end)
		lim, err := b.runLimit(ctx, transport, limitSlots[i], g.end, res.Events, readerTimeout)
		if err != nil {
			return err
		}
		lims = append(lims, lim)
		b.logf("%s %s: limit %.0f events/s (%.2fs); pgsignal", res.Name, transport, lim.EventsPerSec, lim.Seconds)
		name := b.runName(res.Name, i)
		if transport != transportTCP {
			name = b.runName(res.Name+"-"+transport, i)
		}
		pgs, err := b.timeRun(ctx, res, pgsignalRun{name: name, slot: pgsSlots[i], transport: transport, timestamp: true}, 0, readerTimeout)
		if err != nil {
			return err
		}
		if !pgs.Complete {
			return fmt.Errorf("pgsignal delivered %d of %d events within %s", pgs.Events, res.Events, readerTimeout)
		}
		pgss = append(pgss, pgs)
		b.logf("%s %s: pgsignal %.0f events/s (%.2fs), %.2f CPU-s per 1M events, %d reads and %d writes (system calls), %d requests",
			res.Name, transport, pgs.EventsPerSec, pgs.Seconds, pgs.CPUPerMillion, pgs.ReadSyscalls, pgs.WriteSyscalls, pgs.Requests)
	}
	res.Limit, res.Pgsignal = best(lims), best(pgss)
	if len(lims) > 1 {
		res.LimitRuns, res.PgsignalRuns = rates(lims), rates(pgss)
		res.Notes = append(res.Notes, fmt.Sprintf("best of %d rounds: limit %v, pgsignal %v events/s", len(lims), res.LimitRuns, res.PgsignalRuns))
	}
	ratio := round(res.Pgsignal.EventsPerSec/res.Limit.EventsPerSec, 3)
	res.Ratio = &ratio
	res.setPass(ratio >= targetRatio(transport))
	b.logf("%s %s: ratio %.2f", res.Name, transport, ratio)
	return nil
}

// timePgsignal runs pgsignal on slot, with the plain mapping, into a fresh
// count-only fake (adding latency to every response) until it accepted
// res.Events events or timeout.
func (b *bench) timePgsignal(ctx context.Context, res *Result, name, slot string, latency time.Duration, timeout time.Duration) (*Reader, error) {
	return b.timeRun(ctx, res, pgsignalRun{name: name, slot: slot, timestamp: true}, latency, timeout)
}

// timeRun is timePgsignal for any run r; it sets r.fake.
func (b *bench) timeRun(ctx context.Context, res *Result, r pgsignalRun, latency time.Duration, timeout time.Duration) (*Reader, error) {
	fake, err := onesignaltest.Start(onesignaltest.Options{CountOnly: true, DedupWindow: -1})
	if err != nil {
		return nil, err
	}
	defer fake.Close()
	fake.SetFaults(onesignaltest.Faults{Latency: latency})
	r.fake = fake
	p, err := b.startPgsignal(ctx, r)
	if err != nil {
		return nil, err
	}
	ok, err := p.waitCount(ctx, res.Events, timeout)
	if err != nil {
		p.abort()
		return nil, err
	}
	rd := p.finish(fake.Count(), ok)
	if rd.ExitError != "" {
		res.Notes = append(res.Notes, "pgsignal did not stop cleanly: "+rd.ExitError)
	}
	st := fake.Stats()
	if n := st.BadRequests + st.TooLarge; n > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("the fake refused %d requests", n))
	}
	if rd.Complete && st.Accepted != res.Events {
		res.Notes = append(res.Notes, fmt.Sprintf("the fake accepted %d events for %d rows (resent batches?)", st.Accepted, res.Events))
	}
	return rd, nil
}

func targetRatio(transport string) float64 {
	if transport == transportUnix {
		return targetRatioUnix
	}
	return targetRatioTCP
}

// perTransport is a workload measured over each transport on one WAL: its
// results (one per transport, in -transports' order) and their slots.
type perTransport struct {
	results            []*Result
	limitSlots, pgSlot [][]string
	slots              []string // every slot, the warm-up's first
}

// newPerTransport makes one Result per transport from res (its copy for the
// first transport is res itself) and names their slots prefix_warmup,
// prefix_limit_<transport>_<round>, prefix_pgsignal_<transport>_<round>.
func (b *bench) newPerTransport(res *Result, prefix string) *perTransport {
	pt := &perTransport{slots: []string{prefix + "_warmup"}}
	title := res.Title
	for i, t := range b.opts.transports {
		r := res
		if i > 0 {
			c := *res
			r = &c
		}
		r.Transport = t
		r.Title = title + " (" + t + ")"
		r.Target = fmt.Sprintf("ratio ≥ %.2f", targetRatio(t))
		lim, pgs := b.slotSeries(prefix+"_limit_"+t), b.slotSeries(prefix+"_pgsignal_"+t)
		pt.results = append(pt.results, r)
		pt.limitSlots = append(pt.limitSlots, lim)
		pt.pgSlot = append(pt.pgSlot, pgs)
		pt.slots = append(pt.slots, lim...)
		pt.slots = append(pt.slots, pgs...)
	}
	return pt
}

// compare runs compare over every transport (the warm-up once, over the
// first); it stops at the first failure, which every result not yet
// measured reports too.
func (pt *perTransport) compare(ctx context.Context, b *bench, g generated) error {
	for i, res := range pt.results {
		res.WALBytes, res.GenerateSeconds = g.walBytes, round(g.seconds, 2)
		warm := ""
		if i == 0 {
			warm = pt.slots[0]
		}
		if err := b.compare(ctx, res, g, res.Transport, warm, pt.limitSlots[i], pt.pgSlot[i]); err != nil {
			for _, r := range pt.results[i:] {
				b.fail(r, err)
			}
			return err
		}
	}
	return nil
}

func (pt *perTransport) fail(b *bench, err error) []*Result {
	for _, r := range pt.results {
		b.fail(r, err)
	}
	return pt.results
}

// bulk is W1: one transaction of 1,000,000 rows, over each transport.
func (b *bench) bulk(ctx context.Context) []*Result {
	res := &Result{Name: "W1", Title: "bulk: 1 transaction", Events: b.scaled(w1Rows),
		Target: "ratio ≥ target"}
	b.logf("W1: one transaction of %d rows", res.Events)
	pt := b.newPerTransport(res, "bench_w1")
	defer b.dropSlots(ctx, pt.slots...)
	g, err := b.generate(ctx, res, pt.slots, func(ctx context.Context) error {
		return b.exec(ctx, generateTimeout, insertSQL, res.Events, 0)
	})
	if err != nil {
		return pt.fail(b, err)
	}
	_ = pt.compare(ctx, b, g)
	return pt.results
}

// oltp is W2: single-row transactions from pgbench; with slow, also W5: the
// same WAL (from a third slot) into a sink that answers 50 ms late.
func (b *bench) oltp(ctx context.Context, slow bool) []*Result {
	perClient := b.scaled(w2TxnPerClient)
	res := &Result{Name: "W2", Title: fmt.Sprintf("OLTP: 1-row txns, pgbench -c %d", w2Clients),
		Events: w2Clients * perClient, Target: "ratio ≥ target"}
	b.logf("W2: %d single-row transactions (pgbench, %d clients)", res.Events, w2Clients)
	pt := b.newPerTransport(res, "bench_w2")
	slots := pt.slots
	var w5Slots []string
	if slow {
		w5Slots = b.slotSeries("bench_w5_pgsignal")
		slots = append(slots, w5Slots...)
	}
	defer b.dropSlots(ctx, slots...)
	var w5 *Result
	if slow {
		w5 = &Result{Name: "W5", Title: fmt.Sprintf("slow sink: W2 + %s/response", w5Latency),
			Events: res.Events, Target: fmt.Sprintf("≥ %.2f × W2", targetSlowRel)}
	}
	results := func() []*Result {
		if w5 == nil {
			return pt.results
		}
		return append(pt.results, w5)
	}
	g, err := b.generate(ctx, res, slots, func(ctx context.Context) error {
		return b.pgbench(ctx, perClient)
	})
	if err != nil {
		pt.fail(b, err)
		if w5 != nil {
			b.fail(w5, errors.New("W2 failed"))
		}
		return results()
	}
	if err := pt.compare(ctx, b, g); err != nil {
		if w5 != nil {
			b.fail(w5, errors.New("W2 failed"))
		}
		return results()
	}
	if w5 == nil {
		return results()
	}
	w5.WALBytes = g.walBytes
	var runs []*Reader
	for i, slot := range w5Slots {
		b.logf("W5: W2's WAL again, into a fake that adds %s to every response", w5Latency)
		pgs, err := b.timePgsignal(ctx, w5, b.runName(w5.Name, i), slot, w5Latency, readerTimeout)
		if err != nil {
			b.fail(w5, err)
			return results()
		}
		if !pgs.Complete {
			b.fail(w5, fmt.Errorf("pgsignal delivered %d of %d events within %s", pgs.Events, w5.Events, readerTimeout))
			return results()
		}
		runs = append(runs, pgs)
		b.logf("W5: pgsignal %.0f events/s (%.2fs)", pgs.EventsPerSec, pgs.Seconds)
	}
	pgs := best(runs)
	w5.Pgsignal = pgs
	if len(runs) > 1 {
		w5.PgsignalRuns = rates(runs)
		w5.Notes = append(w5.Notes, fmt.Sprintf("best of %d rounds: %v events/s", len(runs), w5.PgsignalRuns))
	}
	ratio := round(pgs.EventsPerSec/res.Pgsignal.EventsPerSec, 3)
	w5.Ratio = &ratio
	w5.setPass(ratio >= targetSlowRel)
	w5.Notes = append(w5.Notes, fmt.Sprintf("ratio is to W2's zero-latency pgsignal run over %s (%.0f events/s)", res.Transport, res.Pgsignal.EventsPerSec))
	b.logf("W5: %.2f × W2", ratio)
	return results()
}

// pgbench runs perClient single-row transactions on each of w2Clients
// connections.
func (b *bench) pgbench(ctx context.Context, perClient int) error {
	script := filepath.Join(b.work, "w2.sql")
	if err := os.WriteFile(script, []byte(pgbenchScript), 0o644); err != nil {
		return fmt.Errorf("write pgbench script: %w", err)
	}
	args := []string{"-n", "-c", strconv.Itoa(w2Clients), "-j", "2", "-t", strconv.Itoa(perClient), "-f", script, b.pg.DSN("")}
	cmd := exec.Command(filepath.Join(b.pgBin, "pgbench"), args...)
	cmd.Env = childEnv()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	b.vlogf("pgbench %s", strings.Join(args, " "))
	c, err := startChild("pgbench", cmd)
	if err != nil {
		return err
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		_ = c.stop(5 * time.Second)
		return fmt.Errorf("pgbench: %w", context.Cause(ctx))
	}
	if c.err != nil {
		return fmt.Errorf("pgbench: %w\n%s", c.err, lastLines(out.String(), 15))
	}
	b.vlogf("pgbench:\n%s", lastLines(out.String(), 8))
	return nil
}

// latency is W3: pgsignal streams while a steady 5,000 events/s are inserted
// (50-row transactions every 10 ms); commit→accepted from the fake's clock
// and the events' timestamps, which are the commit times (ms precision).
func (b *bench) latency(ctx context.Context) *Result {
	dur := max(time.Duration(float64(w3Duration)*b.opts.scale).Round(time.Second), w3MinDuration)
	rate := w3TxnPerSec * w3RowsPerTxn
	res := &Result{Name: "W3", Title: fmt.Sprintf("latency: %d ev/s for %s", rate, dur),
		Target: fmt.Sprintf("p99 ≤ %s", targetP99)}
	b.logf("W3: %d events/s for %s while pgsignal streams", rate, dur)
	slot := "bench_w3_pgsignal"
	if err := b.prepare(ctx); err != nil {
		return b.fail(res, err)
	}
	if err := b.createSlots(ctx, slot); err != nil {
		return b.fail(res, err)
	}
	defer b.dropSlots(ctx, slot)

	var mu sync.Mutex
	lats := make([]time.Duration, 0, int(dur.Seconds()+1)*rate)
	badTS := 0
	fake, err := onesignaltest.Start(onesignaltest.Options{DedupWindow: -1, OnAccept: func(a onesignaltest.Accepted) {
		ts, err := time.Parse(time.RFC3339Nano, a.Timestamp)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			badTS++
			return
		}
		lats = append(lats, a.ReceivedAt.Sub(ts))
	}})
	if err != nil {
		return b.fail(res, err)
	}
	defer fake.Close()
	p, err := b.startPgsignal(ctx, pgsignalRun{name: res.Name, slot: slot, fake: fake})
	if err != nil {
		return b.fail(res, err)
	}
	inserted, late, err := b.steadyLoad(ctx, dur, w3TxnPerSec, w3RowsPerTxn)
	if err != nil {
		p.abort()
		return b.fail(res, err)
	}
	res.Events = inserted
	ok, err := p.waitCount(ctx, inserted, drainTimeout)
	if err != nil {
		p.abort()
		return b.fail(res, err)
	}
	r := p.finish(fake.Count(), ok)
	// The timed part includes the wait for the first insert; report the
	// rate over the load instead.
	r.EventsPerSec = round(float64(inserted)/dur.Seconds(), 0)
	res.Pgsignal = r
	if r.ExitError != "" {
		res.Notes = append(res.Notes, "pgsignal did not stop cleanly: "+r.ExitError)
	}
	if !ok {
		return b.fail(res, fmt.Errorf("pgsignal delivered %d of %d events within %s of the load's end", fake.Count(), inserted, drainTimeout))
	}
	if late > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("the load generator skipped %d of %d transactions (every connection busy)", late, int(dur/(time.Second/w3TxnPerSec))))
	}
	mu.Lock()
	defer mu.Unlock()
	if badTS > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d events had no parsable timestamp", badTS))
	}
	if len(lats) == 0 {
		return b.fail(res, errors.New("no latency measured"))
	}
	res.Latency = summarize(lats)
	res.setPass(res.Latency.P99 <= ms(targetP99))
	res.Notes = append(res.Notes, "latency = fake's receipt time − event timestamp (commit time truncated to the ms: up to 1 ms too high)")
	b.logf("W3: %d events, latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms", len(lats), res.Latency.P50, res.Latency.P95, res.Latency.P99)
	return res
}

// steadyLoad inserts rowsPerTxn rows in each of txnPerSec transactions a
// second for dur, on w3Conns connections. It returns the rows inserted and the ticks missed because
// every connection was still busy.
func (b *bench) steadyLoad(ctx context.Context, dur time.Duration, txnPerSec, rowsPerTxn int) (rows, late int, err error) {
	conns := make([]*pgx.Conn, 0, w3Conns)
	defer func() {
		for _, c := range conns {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = c.Close(cctx)
			cancel()
		}
	}()
	for range w3Conns {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := pgx.Connect(cctx, b.pg.DSN(""))
		cancel()
		if err != nil {
			return 0, 0, fmt.Errorf("load connection: %w", err)
		}
		conns = append(conns, c)
	}
	lctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan int, w3Conns)
	var inserted atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			for off := range jobs {
				qctx, qcancel := context.WithTimeout(lctx, 10*time.Second)
				_, err := c.Exec(qctx, insertSQL, rowsPerTxn, off)
				qcancel()
				if err != nil {
					cancel(fmt.Errorf("insert: %w", err))
					return
				}
				inserted.Add(int64(rowsPerTxn))
			}
		})
	}
	// Open loop: at every tick, issue the transactions due since the start
	// (a late wake-up catches up); one that finds every connection busy is
	// skipped and counted.
	interval := time.Second / time.Duration(txnPerSec)
	tick := time.NewTicker(interval)
	start := time.Now()
	end := time.After(dur)
	issued, off := 0, 0
loop:
	for {
		select {
		case now := <-tick.C:
			for due := int(now.Sub(start) / interval); issued < due; issued++ {
				select {
				case jobs <- off:
					off += rowsPerTxn
				default:
					late++
				}
			}
		case <-end:
			break loop
		case <-lctx.Done():
			break loop
		}
	}
	tick.Stop()
	close(jobs)
	wg.Wait()
	if lctx.Err() != nil {
		return 0, late, context.Cause(lctx)
	}
	return int(inserted.Load()), late, nil
}

// memory is W4: one 5,000,000-row transaction into a sink that answers
// slowly, so that backpressure must hold pgsignal's memory; its peak RSS.
func (b *bench) memory(ctx context.Context) *Result {
	res := &Result{Name: "W4", Title: fmt.Sprintf("memory: 1 txn into a %s sink", b.opts.w4Latency),
		Events: b.scaled(w4Rows), Target: fmt.Sprintf("peak RSS ≤ %d MiB", targetRSS>>20)}
	b.logf("W4: one transaction of %d rows, sink latency %s", res.Events, b.opts.w4Latency)
	slot := "bench_w4_pgsignal"
	defer b.dropSlots(ctx, slot)
	if _, err := b.generate(ctx, res, []string{slot}, func(ctx context.Context) error {
		return b.exec(ctx, generateTimeout, insertSQL, res.Events, 0)
	}); err != nil {
		return b.fail(res, err)
	}
	b.logf("W4: pgsignal (gives up waiting after %s)", b.opts.w4Timeout)
	pgs, err := b.timePgsignal(ctx, res, res.Name, slot, b.opts.w4Latency, b.opts.w4Timeout)
	if err != nil {
		return b.fail(res, err)
	}
	res.Pgsignal = pgs
	res.setPass(pgs.PeakRSSBytes > 0 && pgs.PeakRSSBytes <= targetRSS)
	if !pgs.Complete {
		res.Notes = append(res.Notes, fmt.Sprintf("stopped after %.0fs with %d of %d events delivered (-w4-timeout); the queue was full long before, so the peak is reached",
			pgs.Seconds, pgs.Events, res.Events))
	}
	b.logf("W4: peak RSS %d MiB, %d events delivered at %.0f events/s", pgs.PeakRSSBytes>>20, pgs.Events, pgs.EventsPerSec)
	return res
}

// transformCost is W6: the WAL of 400,000 rows in 100,000-row transactions
// read by pgsignal twice, each time from its own slot, alternating per
// round: with the plain column mapping (as W1), and with w6Transform, a join
// on analytics.users that PostgreSQL evaluates once per batch of rows. Its
// figure is the ratio of the two rates; it has no target.
func (b *bench) transformCost(ctx context.Context) *Result {
	res := &Result{Name: "W6", Title: "transform: enrichment join", Events: b.scaled(w6Rows),
		Target: "none (ratio = transform ÷ plain)", Informational: true}
	b.logf("W6: %d rows in transactions of up to %d, read by pgsignal with the plain mapping and with a transform", res.Events, w6TxnRows)
	if err := b.exec(ctx, time.Minute, usersSQL); err != nil {
		return b.fail(res, err)
	}
	plainSlots, transformSlots := b.slotSeries("bench_w6_plain"), b.slotSeries("bench_w6_transform")
	slots := append([]string{"bench_w6_warmup"}, plainSlots...)
	slots = append(slots, transformSlots...)
	defer b.dropSlots(ctx, slots...)
	g, err := b.generate(ctx, res, slots, func(ctx context.Context) error {
		for off := 0; off < res.Events; off += w6TxnRows {
			if err := b.exec(ctx, generateTimeout, insertSQL, min(w6TxnRows, res.Events-off), off); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return b.fail(res, err)
	}
	// As in compare: no timed reader is the first to read the fresh WAL.
	b.logf("W6: warm-up: pg_recvlogical to %s (not timed)", g.end)
	if res.Warmup, err = b.runLimit(ctx, transportTCP, slots[0], g.end, res.Events, readerTimeout); err != nil {
		return b.fail(res, fmt.Errorf("warm-up: %w", err))
	}
	var plains, transforms []*Reader
	for i := range plainSlots {
		round := ""
		if len(plainSlots) > 1 {
			round = fmt.Sprintf(" (round %d of %d)", i+1, len(plainSlots))
		}
		for _, r := range []struct {
			label string
			run   pgsignalRun
			runs  *[]*Reader
		}{
			{"plain", pgsignalRun{name: b.runName("W6-plain", i), slot: plainSlots[i], timestamp: true}, &plains},
			{"transform", pgsignalRun{name: b.runName("W6-transform", i), slot: transformSlots[i], transform: w6Transform}, &transforms},
		} {
			b.logf("W6: pgsignal, %s%s", r.label, round)
			pgs, err := b.timeRun(ctx, res, r.run, 0, readerTimeout)
			if err != nil {
				return b.fail(res, fmt.Errorf("%s: %w", r.label, err))
			}
			if !pgs.Complete {
				return b.fail(res, fmt.Errorf("%s: pgsignal delivered %d of %d events within %s", r.label, pgs.Events, res.Events, readerTimeout))
			}
			*r.runs = append(*r.runs, pgs)
			b.logf("W6: %s %.0f events/s (%.2fs)", r.label, pgs.EventsPerSec, pgs.Seconds)
		}
	}
	res.Plain, res.Pgsignal = best(plains), best(transforms)
	if len(plains) > 1 {
		res.PlainRuns, res.PgsignalRuns = rates(plains), rates(transforms)
		res.Notes = append(res.Notes, fmt.Sprintf("best of %d rounds: plain %v, transform %v events/s", len(plains), res.PlainRuns, res.PgsignalRuns))
	}
	ratio := round(res.Pgsignal.EventsPerSec/res.Plain.EventsPerSec, 3)
	res.Ratio = &ratio
	res.setPass(true) // no target: Pass only says that W6 completed
	perEvent := (1/res.Pgsignal.EventsPerSec - 1/res.Plain.EventsPerSec) * 1e6
	res.Notes = append(res.Notes,
		fmt.Sprintf("plain mapping %.0f events/s, transform %.0f events/s: ratio %.2f, %.1f µs more per event", res.Plain.EventsPerSec, res.Pgsignal.EventsPerSec, ratio, perEvent),
		"the transform's statements run in a PostgreSQL backend: its CPU time is in the transform run's other CPU")
	b.logf("W6: transform %.2f × plain", ratio)
	return res
}

// Latency holds percentiles in milliseconds.
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
	Min   float64 `json:"min"`
}

func summarize(d []time.Duration) *Latency {
	slices.Sort(d)
	q := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(d)))) - 1 // nearest rank
		return ms(d[min(max(i, 0), len(d)-1)])
	}
	return &Latency{Count: len(d), P50: q(0.50), P95: q(0.95), P99: q(0.99), Max: ms(d[len(d)-1]), Min: ms(d[0])}
}

func ms(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 2) }

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// W7: the query method's latency, a steady 1,000 rows/s (10-row
// transactions every 10 ms) polled every second.
const (
	w7TxnPerSec  = 100
	w7RowsPerTxn = 10
	w7Poll       = "1s"
)

// queryLatency is W7: pgsignal with source.method: query (poll_interval
// 1s) while a steady 1,000 rows/s are inserted; commit→accepted from the
// fake's clock and the rows' event_timestamp (the inserting transaction's
// start, a few ms before its commit). The latency follows the poll
// interval: no target, a figure.
func (b *bench) queryLatency(ctx context.Context) *Result {
	dur := max(time.Duration(float64(w3Duration)*b.opts.scale).Round(time.Second), w3MinDuration)
	rate := w7TxnPerSec * w7RowsPerTxn
	res := &Result{Name: "W7", Title: fmt.Sprintf("query method latency: %d rows/s, poll_interval %s, for %s", rate, w7Poll, dur),
		Target: "none (a figure)"}
	b.logf("W7: %d rows/s for %s while pgsignal polls every %s", rate, dur, w7Poll)
	if err := b.prepare(ctx); err != nil {
		return b.fail(res, err)
	}
	// A row before the start: the first poll stores its position (rows
	// present at the first start are not sent), which marks pgsignal ready.
	if err := b.exec(ctx, time.Minute, insertSQL, 1, 0); err != nil {
		return b.fail(res, err)
	}
	var mu sync.Mutex
	lats := make([]time.Duration, 0, int(dur.Seconds()+1)*rate)
	badTS := 0
	fake, err := onesignaltest.Start(onesignaltest.Options{DedupWindow: -1, OnAccept: func(a onesignaltest.Accepted) {
		ts, err := time.Parse(time.RFC3339Nano, a.Timestamp)
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			badTS++
			return
		}
		lats = append(lats, a.ReceivedAt.Sub(ts))
	}})
	if err != nil {
		return b.fail(res, err)
	}
	defer fake.Close()
	p, err := b.startPgsignal(ctx, pgsignalRun{name: res.Name, slot: "bench_w7", fake: fake, timestamp: true, method: "query", poll: w7Poll})
	if err != nil {
		return b.fail(res, err)
	}
	inserted, late, err := b.steadyLoad(ctx, dur, w7TxnPerSec, w7RowsPerTxn)
	if err != nil {
		p.abort()
		return b.fail(res, err)
	}
	res.Events = inserted
	ok, err := p.waitCount(ctx, inserted, drainTimeout)
	if err != nil {
		p.abort()
		return b.fail(res, err)
	}
	r := p.finish(fake.Count(), ok)
	r.EventsPerSec = round(float64(inserted)/dur.Seconds(), 0)
	res.Pgsignal = r
	if r.ExitError != "" {
		res.Notes = append(res.Notes, "pgsignal did not stop cleanly: "+r.ExitError)
	}
	if !ok {
		return b.fail(res, fmt.Errorf("pgsignal delivered %d of %d events within %s of the load's end", fake.Count(), inserted, drainTimeout))
	}
	if late > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("the load generator skipped %d of %d transactions (every connection busy)", late, int(dur/(time.Second/w7TxnPerSec))))
	}
	mu.Lock()
	defer mu.Unlock()
	if badTS > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d events had no parsable timestamp", badTS))
	}
	if len(lats) == 0 {
		return b.fail(res, errors.New("no latency measured"))
	}
	res.Latency = summarize(lats)
	res.setPass(true)
	res.Notes = append(res.Notes, "latency = fake's receipt time − event_timestamp (the inserting transaction's start, truncated to the ms); pgsignal's CPU includes its idle polls")
	b.logf("W7: %d events, latency p50 %.1f ms, p95 %.1f ms, p99 %.1f ms", len(lats), res.Latency.P50, res.Latency.P95, res.Latency.P99)
	return res
}
