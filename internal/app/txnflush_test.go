package app

import (
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// TestTransactionAcrossReadsLeavesInOneRequest: a transaction too large for
// one read of the network (400 rows of about 1.5 KB: some 600 KB of pgoutput
// against 256 KiB reads) into an idle lane leaves in one request, not its
// first read's rows alone and the rest a linger later. The linger is long
// (1s) so that a split shows as a second request, and the rows are written
// once the lane's start-up pacing has passed.
// Over the Unix socket the connection reads ahead, and the sink is flushed
// only when nothing is left read ahead: the same holds.
func TestTransactionAcrossReadsLeavesInOneRequest(t *testing.T) {
	for _, transport := range []string{"tcp", "unix"} {
		t.Run(transport, func(t *testing.T) { testTransactionInOneRequest(t, transport) })
	}
}

func testTransactionInOneRequest(t *testing.T, transport string) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	cfg := h.config()
	if transport == "unix" {
		cfg.Source.DSN = h.pg.SocketDSN("")
	}
	cfg.Sink.Linger = time.Second
	cfg.Sink.Concurrency = 1
	r := h.start(cfg)
	defer r.stop(t)
	time.Sleep(1500 * time.Millisecond)
	before := h.fake.Requests()
	h.exec(`INSERT INTO analytics.user_events (event_name, user_id, event_timestamp, event_data)
SELECT 'big', 'u' || i, now(), jsonb_build_object('pad', repeat(md5(i::text), 45))
FROM generate_series(1, 400) i`)
	h.waitCount(400)
	// A second request, if any, would come a linger after the first.
	time.Sleep(1500 * time.Millisecond)
	if got := h.fake.Count(); got != 400 {
		t.Fatalf("accepted %d events, want 400", got)
	}
	if d := h.fake.Duplicates(); d != 0 {
		t.Errorf("%d duplicates, want 0", d)
	}
	if n := h.fake.Requests() - before; n != 1 {
		t.Errorf("the transaction took %d requests, want 1", n)
	}
}
