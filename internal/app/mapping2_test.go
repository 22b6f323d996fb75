package app

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// Epoch milliseconds in a bigint column become the event timestamp, and the
// jsonb properties are merged with columns, less the excluded keys; a column
// wins over a json key of the same name.
func TestMappingEpochMillisMergedProperties(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(`CREATE TABLE public.clicks (id bigserial PRIMARY KEY, kind text, uid text, at_ms bigint, data jsonb, plan text, price numeric)`)
	cfg := h.config()
	cfg.Tables = []config.Table{{Schema: "public", Name: "clicks", EventName: "kind", ExternalID: "uid",
		Timestamp: "at_ms", TimestampUnit: config.TimestampUnitMillis,
		Properties: []string{"data"}, PropertiesColumns: []string{"plan", "price"}, Exclude: []string{"secret"}}}
	r := h.start(cfg)
	h.exec(`INSERT INTO public.clicks (kind, uid, at_ms, data, plan, price) VALUES
  ('click', 'alice', 1735787045678, '{"button": "buy", "secret": "s3", "plan": "old"}', 'pro', 9.90),
  ('click', 'bob', NULL, NULL, 'free', NULL),
  ('click', 'carol', -1000, '{"nested": {"secret": 1}}', NULL, 0.5)`)
	h.waitCount(3)
	sum := r.stop(t)
	var got []string
	for _, ev := range h.fake.Events() {
		ts := ev.Timestamp
		if ev.ExternalID == "bob" {
			ts = "commit time" // NULL: the commit time
		}
		got = append(got, fmt.Sprintf("%s|%s|%s", ev.ExternalID, ts, ev.Properties))
	}
	sort.Strings(got)
	want := []string{
		`alice|2025-01-02T03:04:05.678Z|{"button":"buy","plan":"pro","price":9.90}`,
		`bob|commit time|{"plan":"free","price":null}`,
		`carol|1969-12-31T23:59:59.000Z|{"nested":{"secret":1},"plan":null,"price":0.5}`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if sum.Delivered != 3 || sum.DeadLettered != 0 {
		t.Errorf("delivered %d, dead-lettered %d; want 3, 0", sum.Delivered, sum.DeadLettered)
	}
}

// A timestamp without time zone is read in timestamp_zone, and epoch
// seconds may have a fraction in a numeric column.
func TestMappingZoneAndEpochSeconds(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(`CREATE TABLE public.visits (id int PRIMARY KEY, uid text, at timestamp);
CREATE TABLE public.pings (id int PRIMARY KEY, uid text, at numeric)`)
	cfg := h.config()
	cfg.Tables = []config.Table{
		{Schema: "public", Name: "visits", EventNameValue: "visit", ExternalID: "uid", Timestamp: "at", TimestampZone: "Europe/Paris"},
		{Schema: "public", Name: "pings", EventNameValue: "ping", ExternalID: "uid", Timestamp: "at", TimestampUnit: config.TimestampUnitSeconds},
	}
	r := h.start(cfg)
	h.exec(`INSERT INTO public.visits VALUES (1, 'u1', '2025-07-01 12:00:00.25');
INSERT INTO public.pings VALUES (1, 'u2', 1735787045.6789)`)
	h.waitCount(2)
	r.stop(t)
	var got []string
	for _, ev := range h.fake.Events() {
		got = append(got, ev.Name+"|"+ev.Timestamp)
	}
	sort.Strings(got)
	if want := "ping|2025-01-02T03:04:05.678Z visit|2025-07-01T10:00:00.250Z"; strings.Join(got, " ") != want {
		t.Errorf("events = %q, want %s", got, want)
	}
}
