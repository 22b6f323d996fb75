package config

import (
	"strings"
	"testing"
)

// A YAML error inside a block names the line that is wrong, not the line
// that opens the block.
func TestYAMLErrorNamesTheWrongLine(t *testing.T) {
	cases := []struct {
		name, yaml, want string
	}{
		{"over-indented key", "source:\n  dsn: x\nonesignal:\n  app_id: \"a\"\n    api_key: b\ntables: []\n",
			"line 5: YAML syntax error: did not find expected key; this line is indented deeper than the line before it"},
		{"over-indented after a comment", "source:\n  dsn: \"x\" # the database\n  # a comment\n      mode: full\n",
			"line 4: YAML syntax error: did not find expected key; this line is indented deeper"},
		{"under-indented table key", "tables:\n  - table: a.b\n    name: n\n   external_id: u\n",
			"line 4: YAML syntax error: did not find expected '-' indicator; this line's indentation matches no enclosing block"},
		{"under-indented key", "source:\n  dsn: x\n mode: full\ntables: []\n",
			"line 3: YAML syntax error: did not find expected key; this line's indentation matches no enclosing block"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.yaml), func(string) string { return "" })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", c.name, err, c.want)
		}
	}
}

// Config.Line knows the line of every key, for problems found after
// loading (e.g. a mapped column the table lacks).
func TestConfigLine(t *testing.T) {
	yml := "source:\n  dsn: postgres://u@h/d\nonesignal:\n  app_id: 00000000-0000-4000-8000-000000000000\n  api_key: k-e-y-1\ntables:\n  - table: a.b\n    name: n\n    external_id: u\n    properties_columns: [x, y]\n"
	c, err := Parse([]byte(yml), func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]int{"tables[0].external_id": 9, "tables[0].properties_columns[1]": 10, "tables[0].table": 7, "nope": 0} {
		if got := c.Line(path); got != want {
			t.Errorf("Line(%q) = %d, want %d", path, got, want)
		}
	}
}
