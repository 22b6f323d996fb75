package transform

import (
	"bytes"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"
)

func TestParseUserSQL(t *testing.T) {
	for _, tc := range []struct {
		in, text, body  string
		with, recursive bool
	}{
		{in: "SELECT 1", text: "SELECT 1", body: "SELECT 1"},
		{in: "SELECT 1; ;\n\t ", text: "SELECT 1", body: "SELECT 1"},
		{in: "  with x AS (SELECT 1) SELECT * FROM x;", text: "  with x AS (SELECT 1) SELECT * FROM x", body: " x AS (SELECT 1) SELECT * FROM x", with: true},
		{in: "WITH RECURSIVE r(n) AS (SELECT 1) SELECT n FROM r", text: "WITH RECURSIVE r(n) AS (SELECT 1) SELECT n FROM r", body: " r(n) AS (SELECT 1) SELECT n FROM r", with: true, recursive: true},
		{in: "-- note\n/* a /* nested */ comment */ With\nrecursive\tr AS (SELECT 1) TABLE r", text: "-- note\n/* a /* nested */ comment */ With\nrecursive\tr AS (SELECT 1) TABLE r", body: "\tr AS (SELECT 1) TABLE r", with: true, recursive: true},
		// Not the keyword: a column or table named like it.
		{in: "WITHOUT", text: "WITHOUT", body: "WITHOUT"},
		{in: "WITH recursive_things AS (SELECT 1) TABLE recursive_things", text: "WITH recursive_things AS (SELECT 1) TABLE recursive_things", body: " recursive_things AS (SELECT 1) TABLE recursive_things", with: true},
	} {
		u := parseUserSQL(tc.in)
		if u.text != tc.text || u.body() != tc.body || u.with != tc.with || u.recursive != tc.recursive {
			t.Errorf("parseUserSQL(%q) = %+v, body %q; want text %q body %q with %v recursive %v", tc.in, u, u.body(), tc.text, tc.body, tc.with, tc.recursive)
		}
	}
}

// An error position inside the user's SQL is reported as its line and
// column, counted in characters; outside it, not at all.
func TestLocate(t *testing.T) {
	u := parseUserSQL("WITH x AS (SELECT 'é')\nSELECT 'ü' AS name,\n  bad AS external_id FROM x")
	st := buildStatement(u, []string{"id", "événement"}, []string{"integer", "text"})
	// PostgreSQL counts characters from 1.
	pos := func(sub string) int {
		i := strings.Index(st.sql, sub)
		if i < 0 {
			t.Fatalf("%q not in %s", sub, st.sql)
		}
		return len([]rune(st.sql[:i])) + 1
	}
	line, col, text, ok := st.locate(u, pos("bad AS"))
	if !ok || line != 3 || col != 3 || text != "  bad AS external_id FROM x" {
		t.Errorf("locate(bad) = %d, %d, %q, %v", line, col, text, ok)
	}
	line, col, _, ok = st.locate(u, pos(" x AS"))
	if !ok || line != 1 || col != 5 {
		t.Errorf("locate(x AS) = %d, %d, %v", line, col, ok)
	}
	if _, _, _, ok := st.locate(u, pos("unnest")); ok {
		t.Error("a position in the wrapper was located in the transform")
	}
	if !strings.Contains(st.sql, `WITH changes AS (SELECT b."id", b."événement"),`+"\n x AS") {
		t.Errorf("WITH not merged:\n%s", st.sql)
	}
}

func TestAppendTextArray(t *testing.T) {
	got := appendTextArray(nil, [][]byte{[]byte("ab"), nil, {}})
	want, _ := hex.DecodeString("00000001" + "00000001" + "00000019" + "00000003" + "00000001" +
		"00000002" + "6162" + "ffffffff" + "00000000")
	if !bytes.Equal(got, want) {
		t.Errorf("appendTextArray = %x, want %x", got, want)
	}
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestOutputKey(t *testing.T) {
	const k = "123e4567-e89b-12d3-a456-426614174000"
	seen := map[string]bool{k: true}
	for _, c := range []struct {
		name, ext string
		occ       int
	}{{"a", "u", 0}, {"a", "u", 1}, {"b", "u", 0}, {"a", "v", 0}, {"a/", "u", 0}, {"a", "/u", 0}, {"", "a/u", 0}} {
		key := outputKey(k, []byte(c.name), []byte(c.ext), c.occ)
		if !uuidRE.MatchString(key) || seen[key] || key != outputKey(k, []byte(c.name), []byte(c.ext), c.occ) {
			t.Fatalf("outputKey(%+v) = %q: not a fresh deterministic UUIDv5 independent of the count", c, key)
		}
		seen[key] = true
	}
	if outputKey(k, []byte("a"), []byte("u"), 0) == outputKey("223e4567-e89b-12d3-a456-426614174000", []byte("a"), []byte("u"), 0) {
		t.Fatal("two rows' events share a key")
	}
}

// Events with the same name and external_id are numbered by their other
// values, not by their place, and NULL differs from empty.
func TestOccurrences(t *testing.T) {
	p1 := [][]byte{[]byte("n"), []byte("u"), []byte(`{"a":1}`)}
	p2 := [][]byte{[]byte("n"), []byte("u"), []byte(`{"a":2}`)}
	other := [][]byte{[]byte("m"), []byte("u"), nil}
	ab := occurrences([][][]byte{p1, other, p2}, 0, 1)
	ba := occurrences([][][]byte{p2, p1, other}, 0, 1)
	if ab[0] != ba[1] || ab[2] != ba[0] || ab[0] == ab[2] || ab[1] != 0 || ba[2] != 0 {
		t.Errorf("occurrences: %v in one order, %v in the other", ab, ba)
	}
	const k = "123e4567-e89b-12d3-a456-426614174000"
	if outputKey(k, nil, []byte("u"), 0) == outputKey(k, []byte{}, []byte("u"), 0) {
		t.Error("a NULL name and an empty one share a key")
	}
}
