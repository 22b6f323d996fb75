package transform

import (
	"testing"
)

// Upgrade safety: a row committed before this version first ran
// (KeepLegacyKeys) that becomes one event gives it the row's own key, as
// earlier versions did, so an event they sent without confirming is
// dropped by OneSignal when it is sent again. A row committed later gets
// the output-independent key; so does a legacy row that becomes several
// events (earlier versions derived those keys the same way).
func TestLegacyRowsKeepRowKeyForOneEvent(t *testing.T) {
	e := setup(t, ordersDDL+`
CREATE TABLE app.segment (external_id text PRIMARY KEY);
INSERT INTO app.segment VALUES ('a');
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
	current := keys()["a"]
	if current == ins[0].Key {
		t.Fatalf("without legacy keys the only event took the row's key")
	}
	tr.KeepLegacyKeys(ins[0].Pos.CommitLSN + 1)
	if got := keys()["a"]; got != ins[0].Key {
		t.Errorf("legacy row's only event has key %s, want the row's %s", got, ins[0].Key)
	}
	e.exec(t, `INSERT INTO app.segment VALUES ('b')`)
	two := keys()
	if len(two) != 2 || two["a"] != current || two["a"] == two["b"] {
		t.Errorf("legacy row with two events: keys %v; want derived keys (a: %s)", two, current)
	}
	e.exec(t, `DELETE FROM app.segment WHERE external_id = 'b'`)
	tr.KeepLegacyKeys(ins[0].Pos.CommitLSN) // the row is not before it
	if got := keys()["a"]; got != current {
		t.Errorf("row at the legacy point: key %s, want the output-independent %s", got, current)
	}
}
