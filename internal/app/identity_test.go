package app

import (
	"strings"
	"testing"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// emit: [insert, update] on one table must not make the UPDATEs of another
// member table fail: pgsignal refuses to start with the fix, and the
// application's UPDATE still runs (at 37942e1 pgsignal started and
// PostgreSQL rejected UPDATE public.clicks).
func TestEmitUpdatesNeverBreaksWrites(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(`CREATE TABLE public.profile (id int PRIMARY KEY, user_id text, status text);
CREATE TABLE public.clicks (user_id text, at timestamptz DEFAULT now());
INSERT INTO public.clicks (user_id) VALUES ('c0')`)
	cfg := func() *config.Config {
		c := h.config()
		c.Tables = []config.Table{
			{Schema: "public", Name: "profile", EventNameValue: "profile", ExternalID: "user_id", Emit: []string{"insert", "update"}},
			{Schema: "public", Name: "clicks", EventNameValue: "click", ExternalID: "user_id"},
		}
		return c
	}
	err := h.runErr(cfg())
	if !strings.Contains(err.Error(), "reject every UPDATE of public.clicks") ||
		!strings.Contains(err.Error(), "ALTER TABLE public.clicks REPLICA IDENTITY FULL;") {
		t.Fatalf("start error %v", err)
	}
	h.exec(`UPDATE public.clicks SET user_id = 'c1'`)

	h.exec(`ALTER TABLE public.clicks REPLICA IDENTITY FULL`)
	r := h.start(cfg())
	h.exec(`INSERT INTO public.profile VALUES (1, 'u1', 'new')`)
	h.exec(`UPDATE public.clicks SET user_id = 'c2'`)
	h.exec(`UPDATE public.profile SET status = 'gold'`)
	h.waitCount(2)
	r.stop(t)
	if got := strings.Join(h.eventList(), " "); got != "profile|u1 profile|u1" {
		t.Fatalf("events %q", got)
	}
}

// An insert-only table with a where gets an event for an UPDATE that moves
// a row into its filter when another table emits updates (PostgreSQL sends
// it as an INSERT), and pgsignal says so at start; the README documents it.
func TestUpdateIntoFilterDocumented(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(`CREATE TABLE public.profile (id int PRIMARY KEY, user_id text);
CREATE TABLE public.orders (id int PRIMARY KEY, user_id text, status text);
ALTER TABLE public.orders REPLICA IDENTITY FULL`)
	cfg := h.config()
	cfg.Tables = []config.Table{
		{Schema: "public", Name: "profile", EventNameValue: "profile", ExternalID: "user_id", Emit: []string{"insert", "update"}},
		{Schema: "public", Name: "orders", EventNameValue: "paid", ExternalID: "user_id", Where: "status = 'paid'"},
	}
	r := h.start(cfg)
	if h.logs.FilterMessageSnippet("arrives as an INSERT and becomes an event").Len() != 1 {
		t.Error("no start-up warning")
	}
	h.exec(`INSERT INTO public.orders VALUES (1, 'u1', 'new')`)
	h.exec(`UPDATE public.orders SET status = 'paid'`)
	h.waitCount(1)
	r.stop(t)
	if got := strings.Join(h.eventList(), " "); got != "paid|u1" {
		t.Fatalf("events %q", got)
	}
}
