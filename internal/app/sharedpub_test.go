package app

import (
	"context"
	"strings"
	"testing"
)

// A change of where touches only the configured table of a shared
// publication: another table's column list and a TABLES IN SCHEMA entry
// stay as they were (at 37942e1 SET TABLE published the whole customers
// table and turned the schema into a fixed list).
func TestFilterChangeKeepsSharedPublication(t *testing.T) {
	h := filterHarness(t)
	h.exec(`CREATE TABLE public.customers (id int PRIMARY KEY, email text, ssn text);
CREATE SCHEMA reporting;
CREATE TABLE reporting.daily (id int PRIMARY KEY, n int);
CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WHERE (event_name = 'login'), public.customers (id, email) WITH (publish = 'insert');
CREATE PUBLICATION shared FOR TABLE analytics.user_events WHERE (event_name = 'login'), TABLES IN SCHEMA reporting WITH (publish = 'insert')`)
	for _, pub := range []string{"pgsignal", "shared"} {
		cfg := h.config()
		cfg.Source.Publication = pub
		cfg.Source.Slot = pub
		cfg.Tables[0].Where = "event_name = 'purchase'"
		r := h.start(cfg)
		h.exec(`INSERT INTO analytics.user_events (event_name, user_id) VALUES ('login', 'u1'), ('purchase', 'u-` + pub + `')`)
		h.waitCount(map[string]int{"pgsignal": 1, "shared": 2}[pub])
		r.stop(t)
		if got, want := h.rowFilter(pub), "(event_name = 'purchase'::text)"; got != want {
			t.Errorf("%s: row filter %q, want %q", pub, got, want)
		}
	}
	if got := strings.Join(h.eventList(), " "); got != "purchase|u-pgsignal purchase|u-shared" {
		t.Fatalf("events %q", got)
	}
	var cols, schemas, tables string
	if err := h.db.QueryRow(context.Background(), `SELECT
  coalesce((SELECT attnames::text FROM pg_publication_tables WHERE pubname = 'pgsignal' AND tablename = 'customers'), ''),
  coalesce((SELECT string_agg(n.nspname, ',') FROM pg_publication_namespace pn JOIN pg_namespace n ON n.oid = pn.pnnspid
     JOIN pg_publication p ON p.oid = pn.pnpubid WHERE p.pubname = 'shared'), ''),
  coalesce((SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_publication_rel pr JOIN pg_class c ON c.oid = pr.prrelid
     JOIN pg_publication p ON p.oid = pr.prpubid WHERE p.pubname = 'shared'), '')`).Scan(&cols, &schemas, &tables); err != nil {
		t.Fatal(err)
	}
	if cols != "{id,email}" || schemas != "reporting" || tables != "user_events" {
		t.Fatalf("customers columns %s, shared's schemas %s and tables %s; want {id,email}, reporting, user_events", cols, schemas, tables)
	}
}
