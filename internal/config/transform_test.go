package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// transformTable is a table whose events come from a transform.
const transformTable = `
source:
  dsn: "postgres://census@db.internal:5432/analytics"
onesignal:
  app_id: "5eb5a37e-b458-11e3-ac11-000c2940e62c"
  api_key: "${ONESIGNAL_API_KEY}"
tables:
  - table: analytics.user_events
    transform: |
      SELECT c.event_name AS name, c.user_id AS external_id FROM changes c
`

func TestTransformAndBackfillKeys(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		edit func(*Table)
	}{
		{"transform", "", func(*Table) {}},
		{"transform with prefix, zone and filter", "    name_prefix: app_\n    timestamp_zone: Europe/Paris\n    where: \"event_name <> 'x'\"\n    emit: [insert, update]\n",
			func(t *Table) {
				t.NamePrefix, t.TimestampZone, t.Where, t.Emit = "app_", "Europe/Paris", "event_name <> 'x'", []string{EmitInsert, EmitUpdate}
			}},
		{"backfill days", "    backfill:\n      since: 7d\n      column: created_at\n",
			func(t *Table) { t.Backfill = &Backfill{Since: 7 * 24 * time.Hour, Column: "created_at"} }},
		{"backfill days and hours", "    backfill: {since: 1d12h, column: at}\n",
			func(t *Table) { t.Backfill = &Backfill{Since: 36 * time.Hour, Column: "at"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(transformTable+tt.yaml), env(testEnv))
			if err != nil {
				t.Fatal(err)
			}
			want := Table{Schema: "analytics", Name: "user_events",
				Transform: "SELECT c.event_name AS name, c.user_id AS external_id FROM changes c\n"}
			tt.edit(&want)
			if !reflect.DeepEqual(c.Tables[0], want) {
				t.Errorf("table =\n  %+v\nwant\n  %+v", c.Tables[0], want)
			}
		})
	}
	// A mapped table's backfill defaults to its timestamp column.
	c, err := Parse([]byte(minimal+"    timestamp: at\n    backfill: {since: 7d}\n"), env(testEnv))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Tables[0].BackfillColumn(); got != "at" {
		t.Errorf("BackfillColumn = %q, want the timestamp column", got)
	}
}

// Each config has exactly one problem, with this text.
func TestTransformAndBackfillErrors(t *testing.T) {
	tests := []struct {
		name string
		base string
		yaml string
		want string
	}{
		{"transform with name", transformTable, "    name: event_name\n",
			"tables[0].name (line 11): conflicts with transform, which returns the event's columns: return it from the transform (SELECT ... AS name) and remove this key"},
		{"transform with name_value", transformTable, "    name_value: x\n",
			"tables[0].name_value (line 11): conflicts with transform, which returns the event's columns: return it from the transform (SELECT ... AS name)"},
		{"transform with properties", transformTable, "    properties: event_data\n",
			"tables[0].properties (line 11): conflicts with transform"},
		{"transform with exclude", transformTable, "    exclude: [a]\n",
			"tables[0].exclude (line 11): conflicts with transform, which returns the event's columns: return it from the transform (SELECT ... AS properties)"},
		{"empty transform", minimal[:strings.Index(minimal, "    name_value")], "    transform: \" ; \"\n",
			"tables[0].transform (line 9): empty; write a SELECT over the relation changes returning name and external_id, or remove the key"},
		{"backfill without column", minimal, "    backfill: {since: 7d}\n",
			"tables[0].backfill.column: required without timestamp: name the column the window is measured on"},
		{"transform backfill without column", transformTable, "    backfill: {since: 2h}\n",
			"tables[0].backfill.column: required with a transform whose timestamp is not a plain column of changes"},
		{"backfill without since", minimal, "    timestamp: at\n    backfill: {column: at}\n",
			`tables[0].backfill.since: required; how far back to send rows, e.g. "7d"`},
		{"bad window", minimal, "    timestamp: at\n    backfill: {since: 7 days}\n",
			`tables[0].backfill.since (line 12): invalid window "7 days": write a number of days like "7d", hours like "36h", or both like "1d12h"`},
		{"negative window", minimal, "    timestamp: at\n    backfill: {since: -2h}\n",
			`tables[0].backfill.since (line 12): window "-2h" is not positive`},
		{"unknown backfill key", minimal, "    timestamp: at\n    backfill: {since: 7d, from: x}\n",
			`tables[0].backfill.from (line 12): unknown key`},
		{"backfill in read-only mode", strings.Replace(minimal, "  dsn:", "  mode: read-only\n  dsn:", 1), "    timestamp: at\n    backfill: {since: 7d}\n",
			"tables[0].backfill (line 13): needs source.mode full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.base+tt.yaml), env(testEnv))
			if err == nil {
				t.Fatalf("Parse succeeded, want an error; config:\n%s", c.Redacted())
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError: %v", err, err)
			}
			if len(ve.Problems) != 1 {
				t.Fatalf("got %d problems, want exactly 1:\n%v", len(ve.Problems), err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error\n  %v\ndoes not contain\n  %s", err, tt.want)
			}
		})
	}
}

func TestParseSince(t *testing.T) {
	for in, want := range map[string]time.Duration{"7d": 7 * 24 * time.Hour, "36h": 36 * time.Hour, "1d12h": 36 * time.Hour,
		"0.5d": 12 * time.Hour, "90m": 90 * time.Minute, " 2d ": 48 * time.Hour} {
		if got, err := ParseSince(in); err != nil || got != want {
			t.Errorf("ParseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0d", "d", "7", "7x", "-1d", "7d-", "1w"} {
		if got, err := ParseSince(in); err == nil {
			t.Errorf("ParseSince(%q) = %v, want an error", in, got)
		}
	}
}
