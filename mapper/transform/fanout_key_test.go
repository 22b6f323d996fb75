package transform

import (
	"testing"
)

// Issue 12 item 7: an event's key does not depend on the row's other
// events. A row fanned out to a segment is evaluated, the segment changes
// (a member leaves, one joins) and it is evaluated again, as a replay after
// a crash would: every event returned both times has the same key both
// times, whether the row became one event or several.
func TestFanOutKeysIndependentOfOtherOutputs(t *testing.T) {
	e := setup(t, ordersDDL+`
CREATE TABLE app.segment (external_id text PRIMARY KEY);
INSERT INTO app.segment VALUES ('a'), ('b');
INSERT INTO app.orders VALUES (1, 1, 10, 'paid', NULL);`)
	tr := newT(t, e, Spec{Schema: "app", Table: "orders", SQL: `
SELECT 'promo' AS name, s.external_id FROM changes c CROSS JOIN app.segment s`})
	ins := inputs(e.rel(t, "app", "orders"), e.values(t, "SELECT * FROM app.orders"))
	keys := func() map[string]string {
		out := map[string]string{}
		for _, ev := range evaluate(t, tr, ins)[0] {
			if ev.Reject != "" {
				t.Fatalf("rejected: %s", ev.Reject)
			}
			out[ev.ExternalID] = ev.IdempotencyKey
		}
		return out
	}
	two := keys() // a and b
	e.exec(t, `DELETE FROM app.segment WHERE external_id = 'b'`)
	one := keys() // a alone
	e.exec(t, `INSERT INTO app.segment VALUES ('b'), ('c')`)
	three := keys() // a, b and c
	if len(two) != 2 || len(one) != 1 || len(three) != 3 {
		t.Fatalf("events per evaluation: %d, %d, %d; want 2, 1, 3", len(two), len(one), len(three))
	}
	if one["a"] != two["a"] || three["a"] != two["a"] || three["b"] != two["b"] {
		t.Errorf("keys changed with the other events: a %s / %s / %s, b %s / %s", two["a"], one["a"], three["a"], two["b"], three["b"])
	}
	if one["a"] == ins[0].Key {
		t.Errorf("the only event took the row's key %s, which a replay with more events would not give it", ins[0].Key)
	}
	if three["c"] == three["a"] || three["c"] == three["b"] || !uuidRE.MatchString(three["c"]) {
		t.Errorf("keys not distinct UUIDv5s: %v", three)
	}
}
