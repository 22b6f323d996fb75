package app

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// eventList returns the fake's events as "name|external_id", sorted.
func (h *harness) eventList() []string {
	var got []string
	for _, ev := range h.fake.Events() {
		got = append(got, fmt.Sprintf("%s|%s", ev.Name, ev.ExternalID))
	}
	sort.Strings(got)
	return got
}

// Tables whose dotted names read alike ("a.b".c and a."b.c") are different
// tables: a shared publication holding both must not make the unconfigured
// one's rows events (at 37942e1 both were keyed "a.b.c").
func TestDottedNamesDoNotCollide(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(`CREATE SCHEMA "a.b"; CREATE SCHEMA a;
CREATE TABLE "a.b".c (id int PRIMARY KEY, user_id text);
CREATE TABLE a."b.c" (id int PRIMARY KEY, user_id text);
CREATE PUBLICATION pgsignal FOR TABLE "a.b".c, a."b.c" WITH (publish = 'insert')`)
	cfg := h.config()
	cfg.Tables = []config.Table{{Schema: "a.b", Name: "c", EventNameValue: "configured", ExternalID: "user_id"}}
	r := h.start(cfg)
	h.exec(`INSERT INTO a."b.c" VALUES (1, 'other')`)
	h.exec(`INSERT INTO "a.b".c VALUES (1, 'mine')`)
	h.waitCount(1)
	sum := r.stop(t)
	if got := strings.Join(h.eventList(), " "); got != "configured|mine" {
		t.Fatalf("events %q, want only configured|mine", got)
	}
	if sum.DeadLettered != 0 {
		t.Fatalf("dead letters %d, want 0", sum.DeadLettered)
	}
}
