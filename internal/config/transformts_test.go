package config

import "testing"

// A transform's timestamp is the backfill column when it is a plain column
// of changes, and only then.
func TestTransformTimestampColumn(t *testing.T) {
	cases := []struct{ sql, want string }{
		{`SELECT c.event_name AS name, c.user_id AS external_id, c.event_timestamp AS timestamp FROM changes c`, "event_timestamp"},
		{`select 'x' as name, user_id as external_id, created_at as "timestamp" from changes`, "created_at"},
		{`SELECT 'a' AS name, ch.u AS external_id, ch."Created At" AS timestamp FROM changes AS ch JOIN users u ON u.id = ch.u`, "Created At"},
		{`SELECT 'a' AS name, c.u AS external_id, c.at AS timestamp FROM changes c
		  UNION ALL SELECT 'b', c.u, c.at AS timestamp FROM changes c`, "at"},
		{`SELECT 'a' AS name, c.u AS external_id, c.at AS timestamp FROM changes c
		  UNION ALL SELECT 'b', c.u, c.other AS timestamp FROM changes c`, ""}, // two columns
		{`SELECT 'a' AS name, c.u AS external_id, u.created_at AS timestamp FROM changes c JOIN users u ON u.id = c.u`, ""}, // another table's
		{`SELECT 'a' AS name, c.u AS external_id, c.at + interval '1 hour' AS timestamp FROM changes c`, ""},                // an expression
		{`SELECT 'a' AS name, c.u AS external_id, to_timestamp(c.epoch) AS timestamp FROM changes c`, ""},
		{`SELECT 'a' AS name, c.u AS external_id FROM changes c`, ""}, // none: the commit time
		{`SELECT 'x AS timestamp' AS name, c.u AS external_id, c.at AS timestamp FROM changes c -- , c.b AS timestamp`, "at"},
	}
	for _, c := range cases {
		if got := TransformTimestampColumn(c.sql); got != c.want {
			t.Errorf("%s\n  = %q, want %q", c.sql, got, c.want)
		}
	}
}
