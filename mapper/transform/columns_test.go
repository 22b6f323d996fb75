package transform

import "testing"

// Which columns of changes a transform may read, as UsesColumn judges from
// its text: a named column yes, another no; a star, a whole-row reference,
// renamed columns or a NATURAL join read every column.
func TestUsesColumn(t *testing.T) {
	cases := []struct {
		sql  string
		bio  bool // reads "bio"
		name bool // reads "user_id"
	}{
		{`SELECT 'x' AS name, c.user_id AS external_id FROM changes c`, false, true},
		{`SELECT 'x' AS name, user_id AS external_id FROM changes WHERE status <> 'bio'`, false, true},
		{`SELECT 'x' AS name, c.user_id AS external_id, jsonb_build_object('b', c.bio) AS properties FROM changes AS c`, true, true},
		{`SELECT 'x' AS name, c."bio" AS external_id FROM changes c`, true, false},
		{`SELECT 'x' AS name, c.user_id AS external_id, to_jsonb(c) AS properties FROM changes c`, true, true},
		{`SELECT 'x' AS name, c.user_id AS external_id, row_to_json(changes)::jsonb AS properties FROM changes`, true, true},
		{`SELECT 'x' AS name, c.* FROM changes c`, true, true},
		{`SELECT 'x' AS name, c.a AS external_id FROM changes c(a, b)`, true, true},
		{`SELECT 'x' AS name, u.ext AS external_id FROM changes c NATURAL JOIN users u`, true, true},
		{`SELECT 'x' AS name, u.ext AS external_id FROM changes c JOIN users u ON u.id = c.user_id -- bio`, false, true},
	}
	for _, c := range cases {
		u := parseUserSQL(c.sql)
		if got := u.uses("bio"); got != c.bio {
			t.Errorf("%s: uses bio = %v, want %v", c.sql, got, c.bio)
		}
		if got := u.uses("user_id"); got != c.name {
			t.Errorf("%s: uses user_id = %v, want %v", c.sql, got, c.name)
		}
	}
}
