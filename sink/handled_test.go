package sink

import (
	"maps"
	"testing"
	"time"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// countByTable reports each run of one table once, with its length.
func TestCountByTable(t *testing.T) {
	got := map[string]int{}
	var calls int
	countByTable([]string{"a", "a", "b", "a", "a", "a"}, func(s string) string { return s }, func(tb string, n int) {
		calls++
		got[tb] += n
	})
	if want := map[string]int{"a": 5, "b": 1}; !maps.Equal(got, want) || calls != 3 {
		t.Fatalf("got %v in %d calls, want %v in 3", got, calls, want)
	}
	countByTable([]string(nil), func(s string) string { return s }, func(string, int) { t.Fatal("called for no items") })
}

// Handled counts each event's outcome by its table: delivered (with and
// without per-event failures in the answer), dead-lettered, dropped.
func TestHandledByTable(t *testing.T) {
	for _, unknown := range []string{"dead-letter", "drop"} {
		t.Run(unknown, func(t *testing.T) {
			srv, client := startFake(t, onesignaltest.Options{})
			srv.SetUnknownUsers("ghost")
			m := newRecordingMetrics()
			s, h := startSink(t, Config{BatchSize: 10, Concurrency: 1, Metrics: m, UnknownUser: unknown}, client, nil)
			var evs []*cdc.Event
			for i := uint64(1); i <= 6; i++ {
				user := "u"
				if i == 3 {
					user = "ghost"
				}
				ev := newEvent(i, user, 0)
				if i > 4 {
					ev.Table = "public.other"
				}
				evs = append(evs, ev)
			}
			evs = append(evs, rejectEvent(7, "bad row"))
			submit(t, s, evs...)
			h.wait(t, 7, 10*time.Second)
			outcome := map[string]string{"dead-letter": OutcomeDeadLettered, "drop": OutcomeDropped}[unknown]
			want := map[string]int{"public.events " + OutcomeDelivered: 3, "public.other " + OutcomeDelivered: 2,
				"public.events " + OutcomeDeadLettered: 1}
			want["public.events "+outcome]++
			if got := m.handledCounts(); !maps.Equal(got, want) {
				t.Fatalf("handled %v, want %v", got, want)
			}
		})
	}
}
