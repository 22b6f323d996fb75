package query

import (
	"os"
	"slices"
	"strconv"
	"testing"
	"time"
)

// TestQueryEmptyPollCost measures an empty poll on a large table: its cost
// follows the new rows (through the cursor's index), not the table. Set
// PGSIGNAL_QUERY_BENCH_ROWS (e.g. 5000000) to run it.
func TestQueryEmptyPollCost(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("PGSIGNAL_QUERY_BENCH_ROWS"))
	if n <= 0 {
		t.Skip("set PGSIGNAL_QUERY_BENCH_ROWS to measure an empty poll on a table of that many rows")
	}
	d := newDB(t)
	start := time.Now()
	d.exec(`INSERT INTO ev (kind, n) SELECT 'x', i FROM generate_series(1, $1::int) i`, n)
	d.exec(`VACUUM ANALYZE ev`)
	t.Logf("loaded %d rows in %s", n, time.Since(start).Round(time.Millisecond))
	p := d.open(Config{}, nil)
	d.poll(p)
	d.exec(`INSERT INTO ev (kind, n) VALUES ('x', 1)`)
	if got := d.poll(p); len(got) != 1 {
		t.Fatalf("poll after one insert sent %v", got)
	}
	var took []time.Duration
	for range 200 {
		s := time.Now()
		res, err := p.Poll(t.Context(), d.conn)
		took = append(took, time.Since(s))
		if err != nil || len(res.Rows) != 0 {
			t.Fatalf("empty poll: %d rows, %v", len(res.Rows), err)
		}
	}
	slices.Sort(took)
	t.Logf("figures: empty poll on a %d-row table: p50 %s, p99 %s, max %s (200 polls)", n,
		took[len(took)/2], took[len(took)*99/100], took[len(took)-1])
}
