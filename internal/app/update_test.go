package app

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// emit: [insert, update] sends the new row of every update too; a table
// that emits only inserts ignores its updates; an update whose large value
// the server did not resend is an event when the event does not read it
// (a dead letter otherwise: cmd/pgsignal TestUpdateWithUnchangedTOASTColumn).
func TestStreamUpdates(t *testing.T) {
	h := newHarness(t, pgtest.Options{})
	h.exec(seedTable)
	h.exec(`CREATE TABLE public.profile (id int PRIMARY KEY, user_id text, status text, bio text);
CREATE TABLE public.quiet (id int PRIMARY KEY, user_id text);
ALTER TABLE public.profile ALTER COLUMN bio SET STORAGE EXTERNAL`)
	cfg := h.config()
	cfg.Tables = append(cfg.Tables,
		config.Table{Schema: "public", Name: "profile", EventNameValue: "profile_changed", ExternalID: "user_id",
			Properties: []string{"status"}, PropertiesIsList: true, Emit: []string{"insert", "update"}},
		config.Table{Schema: "public", Name: "quiet", EventNameValue: "quiet", ExternalID: "user_id"})
	r := h.start(cfg)
	h.exec(`INSERT INTO public.profile VALUES (1, 'u1', 'new', 'short');
UPDATE public.profile SET status = 'gold' WHERE id = 1;
INSERT INTO public.quiet VALUES (1, 'q1');
UPDATE public.quiet SET user_id = 'q2';
INSERT INTO public.profile VALUES (2, 'u2', 'new', repeat('x', 10000));
UPDATE public.profile SET status = 'silver' WHERE id = 2;`)
	h.waitCount(5)
	sum := r.stop(t)
	var got []string
	for _, ev := range h.fake.Events() {
		got = append(got, fmt.Sprintf("%s|%s|%s", ev.Name, ev.ExternalID, ev.Properties))
	}
	sort.Strings(got) // one transaction, several lanes
	want := `profile_changed|u1|{"status":"gold"} profile_changed|u1|{"status":"new"} profile_changed|u2|{"status":"new"} profile_changed|u2|{"status":"silver"} quiet|q1|`
	if strings.Join(got, " ") != want {
		t.Fatalf("events %v\nwant %s", got, want)
	}
	if sum.DeadLettered != 0 {
		t.Fatalf("dead letters %d, want 0 (the update's events do not read the TOASTed bio)", sum.DeadLettered)
	}
}
