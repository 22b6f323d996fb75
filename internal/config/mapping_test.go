package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestMappingKeys checks the richer mapping keys of a table: where,
// timestamp_zone, timestamp_unit, properties_columns, exclude and emit.
func TestMappingKeys(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want Table
	}{
		{"where", "    where: \"event_name = 'purchase'\"\n",
			Table{Where: "event_name = 'purchase'"}},
		{"zone", "    timestamp: at\n    timestamp_zone: Europe/Paris\n",
			Table{Timestamp: "at", TimestampZone: "Europe/Paris"}},
		{"epoch ms", "    timestamp: at_ms\n    timestamp_unit: ms\n",
			Table{Timestamp: "at_ms", TimestampUnit: TimestampUnitMillis}},
		{"epoch s", "    timestamp: at_s\n    timestamp_unit: s\n",
			Table{Timestamp: "at_s", TimestampUnit: TimestampUnitSeconds}},
		{"merged properties", "    properties: event_data\n    properties_columns: [plan, Price]\n    exclude: [secret]\n",
			Table{Properties: []string{"event_data"}, PropertiesColumns: []string{"plan", "Price"}, Exclude: []string{"secret"}}},
		{"columns alone", "    properties_columns: [plan]\n",
			Table{PropertiesColumns: []string{"plan"}}},
		{"emit updates", "    emit: [insert, update]\n",
			Table{Emit: []string{EmitInsert, EmitUpdate}}},
		{"emit inserts", "    emit:\n      - insert\n",
			Table{Emit: []string{EmitInsert}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(minimal+tt.yaml), env(testEnv))
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			want.Schema, want.Name, want.EventNameValue, want.ExternalID = "public", "user_events", "purchase", "user_id"
			if !reflect.DeepEqual(c.Tables[0], want) {
				t.Errorf("table =\n  %+v\nwant\n  %+v", c.Tables[0], want)
			}
		})
	}
}

func TestEmitsUpdates(t *testing.T) {
	tests := []struct {
		emit []string
		want bool
	}{
		{nil, false},
		{[]string{EmitInsert}, false},
		{[]string{EmitInsert, EmitUpdate}, true},
	}
	for _, tt := range tests {
		if got := (Table{Emit: tt.emit}).EmitsUpdates(); got != tt.want {
			t.Errorf("EmitsUpdates(%q) = %v, want %v", tt.emit, got, tt.want)
		}
	}
}

// TestMappingKeyErrors checks each mapping key's problems, with their exact
// text. Each config has exactly one problem.
func TestMappingKeyErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string
	}{
		{"empty where", "    where: \" \"\n",
			`tables[0].where (line 11): empty filter; write a boolean SQL expression over the table's columns, e.g. "event_name = 'purchase'", or remove the key to stream every row`},
		{"where not a string", "    where: [a]\n",
			`tables[0].where (line 11): expected a string, got a list`},
		{"unknown unit", "    timestamp: at\n    timestamp_unit: us\n",
			`tables[0].timestamp_unit (line 12): unknown value "us"; use "s" or "ms"`},
		{"unit without timestamp", "    timestamp_unit: ms\n",
			`tables[0].timestamp_unit (line 11): requires timestamp: set timestamp to the column holding the epoch time, or remove the key`},
		{"unknown zone", "    timestamp: at\n    timestamp_zone: Mars/Olympus\n",
			`tables[0].timestamp_zone (line 12): unknown time zone "Mars/Olympus"; use an IANA zone name like "UTC" or "America/New_York"`},
		{"local zone", "    timestamp: at\n    timestamp_zone: Local\n",
			`tables[0].timestamp_zone (line 12): "Local" depends on the machine pgsignal runs on; name the zone, e.g. "Europe/Paris"`},
		{"zone without timestamp", "    timestamp_zone: UTC\n",
			`tables[0].timestamp_zone (line 11): requires timestamp: set timestamp to the timestamp or date column read in this zone, or remove the key`},
		{"zone with unit", "    timestamp: at\n    timestamp_unit: s\n    timestamp_zone: UTC\n",
			`tables[0].timestamp_zone (line 13): conflicts with timestamp_unit: an epoch time is the same in every zone; remove timestamp_zone`},
		{"exclude without properties", "    exclude: [a]\n",
			`tables[0].exclude (line 11): requires properties to be one json/jsonb column (written as a string, e.g. properties: event_data): exclude drops keys from its object`},
		{"exclude with a properties list", "    properties: [a, b]\n    exclude: [a]\n",
			`tables[0].exclude (line 12): requires properties to be one json/jsonb column`},
		{"duplicate exclude", "    properties: data\n    exclude: [a, a]\n",
			`tables[0].exclude[1] (line 12): key "a" is already listed at exclude[0]; remove one`},
		{"empty exclude", "    properties: data\n    exclude: []\n",
			`tables[0].exclude (line 12): empty list; list at least one key of the json properties, or remove the key`},
		{"exclude not a list", "    properties: data\n    exclude: a\n",
			`tables[0].exclude (line 12): expected a list like [internal_id, debug], got a string`},
		{"properties_columns with a properties list", "    properties: [a]\n    properties_columns: [b]\n",
			`tables[0].properties_columns (line 12): conflicts with a list in properties: list every column in properties, or set properties to the json/jsonb column the columns are added to`},
		{"properties_columns repeats the json column", "    properties: data\n    properties_columns: [data]\n",
			`tables[0].properties_columns[0] (line 12): column "data" is the json properties column itself; remove it`},
		{"duplicate properties_columns", "    properties_columns: [a, b, a]\n",
			`tables[0].properties_columns[2] (line 11): column "a" is already listed at properties_columns[0]; remove one`},
		{"empty properties_columns item", "    properties_columns: [a, \"\"]\n",
			`tables[0].properties_columns[1] (line 11): empty value; remove the item`},
		{"unknown emit", "    emit: [insert, delete]\n",
			`tables[0].emit[1] (line 11): unknown value "delete"; use "insert" or "update"`},
		{"emit without insert", "    emit: [update]\n",
			`tables[0].emit (line 11): must include "insert": updates are emitted in addition to inserts; write [insert, update]`},
		{"duplicate emit", "    emit: [insert, insert]\n",
			`tables[0].emit[1] (line 11): "insert" is already listed at emit[0]; remove one`},
		{"empty emit", "    emit: []\n",
			`tables[0].emit (line 11): empty list; write [insert] or [insert, update], or remove the key to emit inserts`},
		{"emit not a list", "    emit: insert\n",
			`tables[0].emit (line 11): expected a list like [insert, update], got a string`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(minimal+tt.yaml), env(testEnv))
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
