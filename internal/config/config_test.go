package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// env returns a getenv function backed by m.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// lookupEnv returns a LookupEnv-style function backed by m.
func lookupEnv(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// testEnv is the environment most tests run with.
var testEnv = map[string]string{"ONESIGNAL_API_KEY": "os_v2_app_testkey"}

// minimal is the smallest valid configuration.
const minimal = `
source:
  dsn: "postgres://census@db.internal:5432/analytics"
onesignal:
  app_id: "5eb5a37e-b458-11e3-ac11-000c2940e62c"
  api_key: "${ONESIGNAL_API_KEY}"
tables:
  - table: user_events
    name_value: purchase
    external_id: user_id
`

// specExample is the example of the design brief, less name_value (which
// may not be combined with name).
const specExample = `
source:
  dsn: "postgres://census@db.internal:5432/analytics?sslmode=verify-full"  # required; libpq URL or key=value
  mode: full                 # full | read-only   (default full)
  slot: pgsignal             # default pgsignal
  publication: pgsignal      # default pgsignal
  schema: census             # default census (bookkeeping schema, full mode)
onesignal:
  app_id: "5eb5a37e-b458-11e3-ac11-000c2940e62c"   # required, UUID
  api_key: "${ONESIGNAL_API_KEY}"                   # required (after expansion)
  url: "https://api.onesignal.com"                  # default that; must be http(s) URL
  timeout: 30s                                      # per request, default 30s
sink:
  batch_size: 500            # 1..10000, default 500
  linger: 5ms                # default 5ms
  concurrency: 8             # lanes, 1..256, default 8
  max_pending_events: 20000  # default 20000, >= batch_size
  max_pending_bytes: 64MiB   # default 64 MiB
  max_backoff: 60s           # default 60s
  unknown_user: dead-letter  # dead-letter | drop, default dead-letter
  dead_letter_file: pgsignal-dead-letters.jsonl   # default that (used in read-only mode)
shutdown_timeout: 30s        # default 30s
server:
  listen: 127.0.0.1:8187     # default that; "" disables
log:
  level: info                # debug|info|warn|error, default info
  format: auto               # auto|json|console, default auto
tables:                      # required, at least one
  - table: analytics.user_events   # required
    name: event_name               # column holding the event name ...
    name_prefix: ""                # optional prefix prepended to the name
    external_id: user_id           # required column
    timestamp: event_timestamp     # optional column; default: the transaction's commit time
    properties: event_data         # optional
`

// custom sets every key to a value other than its default.
const custom = `
source:
  dsn: "host=replica.internal dbname=analytics user=census"
  mode: read-only
  slot: pgsignal_replica_1
  publication: pgsignal_pub
  schema: census_meta
  on_slot_lost: recreate
  method: query
  poll_interval: 250ms
  state_file: /var/lib/pgsignal/state.json
onesignal:
  app_id: "5EB5A37E-B458-11E3-AC11-000C2940E62C"
  api_key: "${ONESIGNAL_API_KEY}"
  url: "http://onesignal-fake:8080/"
  timeout: 1m30s
sink:
  batch_size: 1000
  linger: 0
  concurrency: 16
  max_pending_events: 1_000
  max_pending_bytes: 1073741824
  max_backoff: 2m
  unknown_user: drop
  dead_letter_file: /var/lib/pgsignal/dead.jsonl
  max_event_age: 24h
  stale: drop
shutdown_timeout: 1m
stall_timeout: 45s
server:
  listen: ""
log:
  level: debug
  format: json
tables:
  - table: analytics.user_events
    name: event_name
    name_prefix: "app_"
    external_id: user_id
    timestamp: event_timestamp
    properties: event_data
    cursor: event_id
  - table: '"Odd; Name"."Events"'
    name_value: signup
    external_id: UserID
    properties: [plan, "Referrer", price]
    cursor: "ID"
  - table: Public.Orders
    name_value: order_placed
    external_id: customer_id
    cursor: id
`

func TestParseValid(t *testing.T) {
	base := Defaults()
	base.Source.DSN = "postgres://census@db.internal:5432/analytics"
	base.OneSignal.AppID = "5eb5a37e-b458-11e3-ac11-000c2940e62c"
	base.OneSignal.APIKey = "os_v2_app_testkey"
	base.Tables = []Table{{Schema: "public", Name: "user_events", EventNameValue: "purchase", ExternalID: "user_id"}}

	spec := base
	spec.Source.DSN = "postgres://census@db.internal:5432/analytics?sslmode=verify-full"
	spec.Tables = []Table{{
		Schema: "analytics", Name: "user_events",
		EventName: "event_name", ExternalID: "user_id", Timestamp: "event_timestamp",
		Properties: []string{"event_data"},
	}}

	tests := []struct {
		name string
		yaml string
		want Config
	}{
		{"minimal file gets every default", minimal, base},
		{"the example file", specExample, spec},
		{"every key set", custom, Config{
			Source: Source{
				DSN:          "host=replica.internal dbname=analytics user=census",
				Mode:         ModeReadOnly,
				Slot:         "pgsignal_replica_1",
				Publication:  "pgsignal_pub",
				Schema:       "census_meta",
				OnSlotLost:   "recreate",
				Method:       "query",
				PollInterval: 250 * time.Millisecond,
				StateFile:    "/var/lib/pgsignal/state.json",
			},
			OneSignal: OneSignal{
				AppID:   "5EB5A37E-B458-11E3-AC11-000C2940E62C",
				APIKey:  "os_v2_app_testkey",
				URL:     "http://onesignal-fake:8080",
				Timeout: 90 * time.Second,
			},
			Sink: Sink{
				BatchSize:        1000,
				Concurrency:      16,
				MaxPendingEvents: 1000,
				MaxPendingBytes:  1 << 30,
				Linger:           0,
				MaxBackoff:       2 * time.Minute,
				UnknownUser:      UnknownUserDrop,
				DeadLetterFile:   "/var/lib/pgsignal/dead.jsonl",
				MaxEventAge:      24 * time.Hour,
				Stale:            StaleDrop,
			},
			ShutdownTimeout: time.Minute,
			StallTimeout:    45 * time.Second,
			Server:          Server{Listen: ""},
			Log:             Log{Level: "debug", Format: "json"},
			Tables: []Table{
				{
					Schema: "analytics", Name: "user_events",
					EventName: "event_name", NamePrefix: "app_", ExternalID: "user_id",
					Timestamp: "event_timestamp", Properties: []string{"event_data"}, Cursor: "event_id",
				},
				{
					Schema: "Odd; Name", Name: "Events",
					EventNameValue: "signup", ExternalID: "UserID",
					Properties: []string{"plan", "Referrer", "price"}, PropertiesIsList: true, Cursor: "ID",
				},
				{
					Schema: "public", Name: "orders",
					EventNameValue: "order_placed", ExternalID: "customer_id", Cursor: "id",
				},
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.yaml), env(testEnv))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got.lines = nil // lines are tested on their own
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("Parse:\n got %+v\nwant %+v", *got, tt.want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate of a parsed config: %v", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	d := Defaults()
	want := Config{
		Source: Source{Mode: "full", OnSlotLost: "error", Slot: "pgsignal", Publication: "pgsignal", Schema: "census",
			Method: "logical", PollInterval: time.Second, StateFile: "pgsignal-state.json"},
		OneSignal: OneSignal{URL: "https://api.onesignal.com", Timeout: 30 * time.Second},
		Sink: Sink{
			BatchSize: 500, Concurrency: 8, MaxPendingEvents: 20000, MaxPendingBytes: 64 << 20,
			Linger: 5 * time.Millisecond, MaxBackoff: 60 * time.Second,
			UnknownUser: "dead-letter", DeadLetterFile: "pgsignal-dead-letters.jsonl", Stale: "dead-letter",
		},
		ShutdownTimeout: 30 * time.Second,
		StallTimeout:    2 * time.Minute,
		Server:          Server{Listen: "127.0.0.1:8187"},
		Log:             Log{Level: "info", Format: "auto"},
	}
	if !reflect.DeepEqual(d, want) {
		t.Errorf("Defaults() =\n %+v\nwant %+v", d, want)
	}
}

// replace returns minimal with old replaced by new, failing if old is not
// there.
func replace(t *testing.T, s, old, new string) string {
	t.Helper()
	if !strings.Contains(s, old) {
		t.Fatalf("test bug: %q not in config", old)
	}
	return strings.Replace(s, old, new, 1)
}

func TestParseErrors(t *testing.T) {
	const appID = `  app_id: "5eb5a37e-b458-11e3-ac11-000c2940e62c"` + "\n"
	const table0 = "  - table: user_events\n    name_value: purchase\n    external_id: user_id\n"
	tests := []struct {
		name string
		// edit turns minimal into the bad config.
		edit func(t *testing.T) string
		// want are substrings of the error, in order.
		want []string
	}{
		{"missing source.dsn", func(t *testing.T) string {
			return replace(t, minimal, `  dsn: "postgres://census@db.internal:5432/analytics"`+"\n", "")
		}, []string{"source.dsn: required; the libpq connection string of the database to stream from"}},
		{"missing source section", func(t *testing.T) string {
			return replace(t, minimal, "source:\n  dsn: \"postgres://census@db.internal:5432/analytics\"\n", "")
		}, []string{"source.dsn: required;"}},
		{"missing onesignal.app_id", func(t *testing.T) string { return replace(t, minimal, appID, "") },
			[]string{"onesignal.app_id: required; the OneSignal App ID, a UUID"}},
		{"missing onesignal.api_key", func(t *testing.T) string {
			return replace(t, minimal, `  api_key: "${ONESIGNAL_API_KEY}"`+"\n", "")
		}, []string{`onesignal.api_key: required; the OneSignal App API key: write api_key: "${ONESIGNAL_API_KEY}"`}},
		{"api_key expands to nothing", func(t *testing.T) string {
			return replace(t, minimal, "${ONESIGNAL_API_KEY}", "${EMPTY_KEY:-}")
		}, []string{"onesignal.api_key (line 6): required;", "(the value comes from ${EMPTY_KEY})"}},
		{"missing tables", func(t *testing.T) string {
			return replace(t, minimal, "tables:\n"+table0, "")
		}, []string{"tables: required; list at least one event table"}},
		{"empty tables", func(t *testing.T) string {
			return replace(t, minimal, "tables:\n"+table0, "tables: []\n")
		}, []string{"tables (line 7): required; list at least one event table"}},
		{"missing table", func(t *testing.T) string {
			return replace(t, minimal, "  - table: user_events\n    name_value", "  - name_value")
		}, []string{`tables[0].table: required; the table to stream, as "schema.table" or "table"`}},
		{"missing external_id", func(t *testing.T) string {
			return replace(t, minimal, "    external_id: user_id\n", "")
		}, []string{"tables[0].external_id: required; the column holding the OneSignal external_id"}},
		{"missing name and name_value", func(t *testing.T) string {
			return replace(t, minimal, "    name_value: purchase\n", "")
		}, []string{"tables[0].name: required: set name to the column holding the event name, or name_value to a constant event name"}},
		{"both name and name_value", func(t *testing.T) string {
			return replace(t, minimal, "    name_value: purchase\n", "    name: event_name\n    name_value: purchase\n")
		}, []string{"tables[0].name_value (line 10): conflicts with name: set exactly one of name"}},
		{"empty name", func(t *testing.T) string {
			return replace(t, minimal, "    name_value: purchase\n", "    name: \"\"\n")
		}, []string{"tables[0].name (line 9): empty column name; set the column holding the event name, or use name_value"}},
		{"unknown key at root", func(t *testing.T) string { return minimal + "sinks:\n  batch_size: 10\n" },
			[]string{"sinks (line 11): unknown key (did you mean sink?); known keys: source, onesignal, sink, shutdown_timeout, stall_timeout, server, log, tables"}},
		{"unknown key in source", func(t *testing.T) string {
			return replace(t, minimal, "source:\n", "source:\n  slots: x\n")
		}, []string{"source.slots (line 3): unknown key (did you mean slot?); known keys: dsn, mode, slot, publication, schema, on_slot_lost, failover, sslmode, sslrootcert, sslcert, sslkey, ssh"}},
		{"unknown key without suggestion", func(t *testing.T) string {
			return replace(t, minimal, "source:\n", "source:\n  password: x\n")
		}, []string{"source.password (line 3): unknown key; known keys: dsn, mode, slot, publication, schema, on_slot_lost, failover, sslmode, sslrootcert, sslcert, sslkey, ssh"}},
		{"unknown key in tables[0]", func(t *testing.T) string {
			return replace(t, minimal, "    external_id: user_id\n", "    externl_id: user_id\n")
		}, []string{"tables[0].externl_id (line 10): unknown key (did you mean external_id?); known keys: table, name, name_value, name_prefix, external_id, timestamp, properties, properties_columns, exclude, timestamp_zone, timestamp_unit, where, emit"}},
		{"duplicate key", func(t *testing.T) string {
			return replace(t, minimal, "source:\n", "source:\n  mode: full\n  mode: read-only\n")
		}, []string{"source.mode (line 4): duplicate key; it is already set at line 3"}},
		{"bad mode", func(t *testing.T) string {
			return replace(t, minimal, "source:\n", "source:\n  mode: readonly\n")
		}, []string{`source.mode (line 3): unknown value "readonly"; use "full" or "read-only"`}},
		{"bad slot", func(t *testing.T) string {
			return replace(t, minimal, "source:\n", "source:\n  slot: PgSignal-1\n")
		}, []string{`source.slot (line 3): invalid replication slot name "PgSignal-1": use 1 to 63 lower-case letters, digits and underscores`}},
		{"bad UUID", func(t *testing.T) string {
			return replace(t, minimal, "5eb5a37e-b458-11e3-ac11-000c2940e62c", "5eb5a37e-b458-11e3-ac11")
		}, []string{"onesignal.app_id (line 5): not a UUID: expected the App ID in the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"}},
		{"API key in app_id", func(t *testing.T) string {
			return replace(t, minimal, "5eb5a37e-b458-11e3-ac11-000c2940e62c", "os_v2_app_abc")
		}, []string{"this looks like an API key, which belongs in onesignal.api_key"}},
		{"bad url", func(t *testing.T) string {
			return replace(t, minimal, appID, appID+"  url: ftp://api.onesignal.com\n")
		}, []string{`onesignal.url (line 6): expected an http(s) URL like "https://api.onesignal.com", got "ftp://api.onesignal.com"`}},
		{"bad duration", func(t *testing.T) string {
			return replace(t, minimal, appID, appID+"  timeout: thirty\n")
		}, []string{`onesignal.timeout (line 6): expected a duration like "30s", "250ms" or "1m30s", got "thirty"; units are ns, us, ms, s, m, h`}},
		{"duration without unit", func(t *testing.T) string { return minimal + "shutdown_timeout: 30\n" },
			[]string{`shutdown_timeout (line 11): expected a duration with a unit, got 30; write e.g. "30s"`}},
		{"negative duration", func(t *testing.T) string { return minimal + "sink:\n  max_backoff: -1s\n" },
			[]string{`sink.max_backoff (line 12): must be a positive duration like "30s", got -1s`}},
		{"integer of wrong type", func(t *testing.T) string { return minimal + "sink:\n  batch_size: many\n" },
			[]string{`sink.batch_size (line 12): expected an integer, got "many"`}},
		{"integer out of range", func(t *testing.T) string { return minimal + "sink:\n  batch_size: 10001\n" },
			[]string{"sink.batch_size (line 12): must be between 1 and 10000, got 10001"}},
		{"concurrency out of range", func(t *testing.T) string { return minimal + "sink:\n  concurrency: 0\n" },
			[]string{"sink.concurrency (line 12): must be between 1 and 256, got 0"}},
		{"max_pending_events below batch_size", func(t *testing.T) string {
			return minimal + "sink:\n  batch_size: 1000\n  max_pending_events: 999\n"
		}, []string{"sink.max_pending_events (line 13): 999 is less than sink.batch_size (1000): raise max_pending_events or lower batch_size"}},
		{"bad size unit", func(t *testing.T) string { return minimal + "sink:\n  max_pending_bytes: 64MBs\n" },
			[]string{`sink.max_pending_bytes (line 12): expected a size like "64MiB" or an integer number of bytes, got "64MBs"; units are B, KB, MB, GB (powers of 1000) and KiB, MiB, GiB (powers of 1024)`}},
		{"size without unit too small", func(t *testing.T) string { return minimal + "sink:\n  max_pending_bytes: 64\n" },
			[]string{`sink.max_pending_bytes (line 12): 64 bytes is too small: the minimum is 1MiB`, `did you forget a unit, as in "64MiB"?`}},
		{"bad unknown_user", func(t *testing.T) string { return minimal + "sink:\n  unknown_user: skip\n" },
			[]string{`sink.unknown_user (line 12): unknown value "skip"; use "dead-letter" or "drop"`}},
		{"bad log level", func(t *testing.T) string { return minimal + "log:\n  level: verbose\n" },
			[]string{`log.level (line 12): unknown value "verbose"; use "debug", "info", "warn" or "error"`}},
		{"bad listen", func(t *testing.T) string { return minimal + "server:\n  listen: localhost\n" },
			[]string{`server.listen (line 12): expected host:port like "127.0.0.1:8187" or ":8187" (or "" to disable the server), got "localhost"`}},
		{"section of wrong type", func(t *testing.T) string { return minimal + "sink: fast\n" },
			[]string{"sink (line 11): expected a mapping of keys (batch_size, linger, concurrency, max_pending_events, max_pending_bytes, max_backoff, unknown_user, dead_letter_file, max_event_age, stale), got a string"}},
		{"string of wrong type", func(t *testing.T) string { return minimal + "log:\n  level: [info]\n" },
			[]string{"log.level (line 12): expected a string, got a list"}},
		{"tables not a list", func(t *testing.T) string {
			return replace(t, minimal, "tables:\n"+table0, "tables:\n  table: user_events\n")
		}, []string{`tables (line 8): expected a list of tables (each item starting with "- table: ..."), got a mapping`}},
		{"bad table name", func(t *testing.T) string {
			return replace(t, minimal, "table: user_events", "table: analytics.user events")
		}, []string{`tables[0].table (line 8): unexpected "e" at position 16; quote identifiers that contain unusual characters`}},
		{"too many dots", func(t *testing.T) string {
			return replace(t, minimal, "table: user_events", "table: db.analytics.user_events")
		}, []string{`tables[0].table (line 8): too many dots: write "schema.table" or "table"`}},
		{"unterminated quoted identifier", func(t *testing.T) string {
			return replace(t, minimal, "table: user_events", `table: '"Odd.events'`)
		}, []string{`tables[0].table (line 8): unterminated quoted identifier starting at position 1`}},
		{"duplicate tables", func(t *testing.T) string {
			return minimal + "  - table: PUBLIC.\"user_events\"\n    name: n\n    external_id: uid\n"
		}, []string{"tables[1].table (line 11): public.user_events is already configured at tables[0]; each table may be listed once"}},
		{"duplicate tables with quoting", func(t *testing.T) string {
			return replace(t, minimal, "table: user_events", `table: '"Odd; Name".events'`) +
				"  - table: '\"Odd; Name\".\"events\"'\n    name: n\n    external_id: uid\n"
		}, []string{`tables[1].table (line 11): "Odd; Name".events is already configured at tables[0]`}},
		{"empty properties list", func(t *testing.T) string { return minimal + "    properties: []\n" },
			[]string{"tables[0].properties (line 11): empty list; list at least one column, or remove the key to send no properties"}},
		{"empty timestamp", func(t *testing.T) string { return minimal + "    timestamp: \"\"\n" },
			[]string{"tables[0].timestamp (line 11): empty column name; remove the key to use the commit time of the transaction"}},
		{"duplicate property column", func(t *testing.T) string { return minimal + "    properties: [a, b, a]\n" },
			[]string{`tables[0].properties[2] (line 11): column "a" is already listed at properties[0]; remove one`}},
		{"missing env var", func(t *testing.T) string {
			return replace(t, minimal, "${ONESIGNAL_API_KEY}", "${PGSIGNAL_KEY}")
		}, []string{"onesignal.api_key (line 6): environment variable PGSIGNAL_KEY is not set; export it, or give a default with ${PGSIGNAL_KEY:-default}"}},
		{"several missing env vars", func(t *testing.T) string {
			return replace(t, minimal, "db.internal", "${DB_HOST}:${DB_PORT}")
		}, []string{"source.dsn (line 3): environment variables DB_HOST, DB_PORT are not set"}},
		{"bad env reference", func(t *testing.T) string {
			return replace(t, minimal, "user_events", "${TABLE NAME}")
		}, []string{`tables[0].table (line 8): invalid environment variable reference "${TABLE NAME}": write ${NAME} or ${NAME:-default}`}},
		{"unterminated env reference", func(t *testing.T) string {
			return replace(t, minimal, "user_events", "${TABLE")
		}, []string{`tables[0].table (line 8): unterminated "${": close the reference with "}", or write "$$" for a literal "$"`}},
		{"env value of wrong form", func(t *testing.T) string { return minimal + "sink:\n  batch_size: ${BATCH}\n" },
			[]string{`sink.batch_size (line 12): expected an integer, got "lots" (the value comes from ${BATCH})`}},
		{"bad dsn", func(t *testing.T) string {
			return replace(t, minimal, "postgres://census@db.internal:5432/analytics", "db.internal")
		}, []string{`source.dsn (line 3): not a connection string: write a postgres:// URL or key=value pairs`}},
		{"dsn with unsupported scheme", func(t *testing.T) string {
			return replace(t, minimal, "postgres://", "mysql://")
		}, []string{`source.dsn (line 3): unsupported URL scheme "mysql"; use postgres:// or postgresql://`}},
		{"dsn with unterminated quote", func(t *testing.T) string {
			return replace(t, minimal, `"postgres://census@db.internal:5432/analytics"`, `"host=db password='abc"`)
		}, []string{`source.dsn (line 3): unterminated quoted value of keyword number 2`}},
		{"api_key and api_key_file", func(t *testing.T) string {
			return replace(t, minimal, appID, appID+"  api_key_file: /run/secrets/key\n")
		}, []string{"onesignal.api_key_file (line 6): conflicts with onesignal.api_key (line 7): set only one of them"}},
		{"api_key_file missing", func(t *testing.T) string {
			return replace(t, minimal, `  api_key: "${ONESIGNAL_API_KEY}"`, "  api_key_file: /nonexistent/pgsignal-key")
		}, []string{"onesignal.api_key_file (line 6): cannot read the API key: open /nonexistent/pgsignal-key: no such file or directory; check the path and its permissions"}},
		{"second document", func(t *testing.T) string { return minimal + "---\nlog:\n  level: info\n" },
			[]string{"line 11: a second YAML document starts here"}},
		{"root not a mapping", func(t *testing.T) string { return "- source\n- tables\n" },
			[]string{"line 1: expected a mapping of keys (source, onesignal, sink, shutdown_timeout, stall_timeout, server, log, tables), got a list"}},
		{"syntax error", func(t *testing.T) string { return minimal + "log:\n  level: info: debug\n" },
			[]string{"line 12: YAML syntax error: mapping values are not allowed in this context"}},
		{"syntax error on line 1", func(t *testing.T) string { return "source: dsn: x\n" },
			[]string{"line 1: YAML syntax error: mapping values are not allowed in this context"}},
		{"unclosed flow list", func(t *testing.T) string { return minimal + "    properties: [a, b\n" },
			[]string{"line 11: YAML syntax error: did not find expected ',' or ']'"}},
		{"tab indentation", func(t *testing.T) string { return minimal + "log:\n\tlevel: info\n" },
			[]string{"line 12: YAML syntax error: found character that cannot start any token; YAML does not allow tabs: indent with spaces"}},
		{"unknown anchor", func(t *testing.T) string { return minimal + "log: *defaults\n" },
			[]string{"line 11: YAML syntax error: unknown anchor 'defaults' referenced"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yml := tt.edit(t)
			if tt.name == "missing env var" || tt.name == "several missing env vars" {
				// Make sure the variables are really unset for these.
				for _, v := range []string{"PGSIGNAL_KEY", "DB_HOST", "DB_PORT"} {
					if _, ok := os.LookupEnv(v); ok {
						t.Skipf("%s is set in the environment", v)
					}
				}
			}
			e := map[string]string{"ONESIGNAL_API_KEY": "os_v2_app_testkey", "BATCH": "lots"}
			c, err := ParseLookup([]byte(yml), lookupEnv(e))
			if err == nil {
				t.Fatalf("Parse succeeded, want an error; config:\n%s", c.Redacted())
			}
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("error %T is not a *ValidationError: %v", err, err)
			}
			msg := err.Error()
			rest := msg
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("error does not contain (in order)\n  %s\ngot:\n  %s", w, msg)
				}
				rest = rest[i+len(w):]
			}
			if len(ve.Problems) != 1 {
				t.Errorf("got %d problems, want exactly 1:\n%s", len(ve.Problems), msg)
			}
		})
	}
}

func TestProblemsReportedTogetherInFileOrder(t *testing.T) {
	yml := `
tables:
  - table: a
    name: n
  - table: b
    name_value: x
    external_id: uid
    bogus: 1
source:
  mode: sometimes
onesignal:
  app_id: nope
  api_key: ${KEY}
sink:
  linger: 5
  batch_size: 0
`
	_, err := Parse([]byte(yml), env(nil))
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v, want a *ValidationError", err)
	}
	var got []string
	for _, p := range ve.Problems {
		got = append(got, p.Error())
	}
	want := []string{
		"tables[0].external_id: required; the column holding the OneSignal external_id of the user the event belongs to",
		"tables[1].bogus (line 8): unknown key; known keys: table, name, name_value, name_prefix, external_id, timestamp, properties, properties_columns, exclude, timestamp_zone, timestamp_unit, where, emit, transform, backfill, transform_timeout, cursor",
		"source.dsn: required; the libpq connection string of the database to stream from, " +
			`e.g. "postgres://pgsignal@db.internal:5432/app" (keep the password in PGPASSWORD or a .pgpass file)`,
		`source.mode (line 10): unknown value "sometimes"; use "full" or "read-only"`,
		"onesignal.app_id (line 12): not a UUID: expected the App ID in the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (Settings > Keys & IDs in the OneSignal dashboard)",
		"onesignal.api_key (line 13): environment variable KEY is not set; export it, or give a default with ${KEY:-default}",
		`sink.linger (line 15): expected a duration with a unit, got 5; write e.g. "5s"`,
		"sink.batch_size (line 16): must be between 1 and 10000, got 0",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.HasPrefix(err.Error(), "invalid configuration: 8 problems:\n  - tables[0].external_id: required") {
		t.Errorf("Error() = %q", err.Error())
	}
	if n := len(ve.Unwrap()); n != 8 {
		t.Errorf("Unwrap returned %d errors, want 8", n)
	}
}

func TestEnvExpansion(t *testing.T) {
	tests := []struct {
		name  string
		value string
		env   map[string]string
		want  string
	}{
		{"plain", "${APP}", map[string]string{"APP": "value"}, "value"},
		{"inside text", "a-${APP}-b", map[string]string{"APP": "x"}, "a-x-b"},
		{"default used when unset", "${APP:-fallback}", nil, "fallback"},
		{"default used when empty", "${APP:-fallback}", map[string]string{"APP": ""}, "fallback"},
		{"default ignored when set", "${APP:-fallback}", map[string]string{"APP": "set"}, "set"},
		{"empty default", "x${APP:-}y", nil, "xy"},
		{"set but empty", "x${APP}y", map[string]string{"APP": ""}, "xy"},
		{"double dollar", "$$5 off $${APP}", nil, "$5 off ${APP}"},
		{"lone dollar kept", "$5 $APP a$", nil, "$5 $APP a$"},
		{"value is not re-expanded", "${APP}", map[string]string{"APP": "$${X} ${Y}"}, "$${X} ${Y}"},
		{"value cannot inject YAML", "${APP}", map[string]string{"APP": "x\nexternal_id: evil\n- y"}, "x\nexternal_id: evil\n- y"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{"ONESIGNAL_API_KEY": "k3y-value"}
			for k, v := range tt.env {
				env[k] = v
			}
			yml := replace(t, minimal, "name_value: purchase", "name_value: '"+tt.value+"'")
			c, err := ParseLookup([]byte(yml), lookupEnv(env))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := c.Tables[0].EventNameValue; got != tt.want {
				t.Errorf("name_value = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestEnvInNonStringValues(t *testing.T) {
	yml := minimal + `sink:
  batch_size: ${BATCH:-250}
  linger: ${LINGER}
  max_pending_bytes: ${BYTES:-2MiB}
`
	c, err := Parse([]byte(yml), env(map[string]string{"ONESIGNAL_API_KEY": "k", "LINGER": "1s"}))
	if err != nil {
		t.Fatal(err)
	}
	if c.Sink.BatchSize != 250 || c.Sink.Linger != time.Second || c.Sink.MaxPendingBytes != 2<<20 {
		t.Errorf("sink = %+v", c.Sink)
	}
}

func TestParseGetenvSemantics(t *testing.T) {
	yml := replace(t, minimal, "${ONESIGNAL_API_KEY}", "${PGSIGNAL_TEST_KEY}")

	// A getenv function cannot tell unset from empty: "" is unset.
	_, err := Parse([]byte(yml), env(map[string]string{"PGSIGNAL_TEST_KEY": ""}))
	if err == nil || !strings.Contains(err.Error(), "environment variable PGSIGNAL_TEST_KEY is not set") {
		t.Errorf("Parse with empty getenv value: err = %v", err)
	}

	// LookupEnv semantics: set but empty expands to "", then api_key is
	// required.
	_, err = ParseLookup([]byte(yml), lookupEnv(map[string]string{"PGSIGNAL_TEST_KEY": ""}))
	if err == nil || !strings.Contains(err.Error(), "onesignal.api_key (line 6): required;") {
		t.Errorf("ParseLookup with empty value: err = %v", err)
	}

	// nil getenv reads the process environment.
	t.Setenv("PGSIGNAL_TEST_KEY", "from-process-env")
	c, err := Parse([]byte(yml), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.OneSignal.APIKey != "from-process-env" {
		t.Errorf("APIKey = %q", c.OneSignal.APIKey)
	}
}

func TestByteSizes(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"67108864", 64 << 20},
		{"'67108864'", 64 << 20},
		{"64MiB", 64 << 20},
		{"64 MiB", 64 << 20},
		{"64mib", 64 << 20},
		{"1GiB", 1 << 30},
		{"2048KiB", 2 << 20},
		{"1.5MiB", 3 << 19},
		{"2MB", 2000000},
		{"1GB", 1000000000},
		{"3000KB", 3000000},
		{"1048576B", 1 << 20},
		{"1_048_576", 1 << 20},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, err := Parse([]byte(minimal+"sink:\n  max_pending_bytes: "+tt.in+"\n"), env(testEnv))
			if err != nil {
				t.Fatal(err)
			}
			if c.Sink.MaxPendingBytes != tt.want {
				t.Errorf("MaxPendingBytes = %d, want %d", c.Sink.MaxPendingBytes, tt.want)
			}
		})
	}
	for _, bad := range []string{"", "MiB", "64 TB", "-5MiB", "1.2.3MiB", "99999999999GiB", "0x10"} {
		t.Run("bad "+bad, func(t *testing.T) {
			if n, err := parseSize(bad); err == nil {
				t.Errorf("parseSize(%q) = %d, want an error", bad, n)
			}
		})
	}
	for _, n := range []int64{0, 1, 1023, 1024, 64 << 20, 3 << 30, 1000000} {
		if got, err := parseSize(formatSize(n)); err != nil || got != n {
			t.Errorf("parseSize(formatSize(%d) = %q) = %d, %v", n, formatSize(n), got, err)
		}
	}
}

func TestDurations(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"20ms", 20 * time.Millisecond},
		{"1m30s", 90 * time.Second},
		{"1.5s", 1500 * time.Millisecond},
		{"0", 0},
		{`"2h"`, 2 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, err := Parse([]byte(minimal+"sink:\n  linger: "+tt.in+"\n"), env(testEnv))
			if err != nil {
				t.Fatal(err)
			}
			if c.Sink.Linger != tt.want {
				t.Errorf("Linger = %v, want %v", c.Sink.Linger, tt.want)
			}
		})
	}
	bad := []struct{ in, want string }{
		{"20", `expected a duration with a unit, got 20; write e.g. "20s"`},
		{"1.5", `expected a duration with a unit, got 1.5; write e.g. "1.5s"`},
		{"'20'", `expected a duration with a unit, got 20; write e.g. "20s"`},
		{"20 seconds", `expected a duration like "30s", "250ms" or "1m30s", got "20 seconds"`},
		{"", `sink.linger (line 12): expected a duration like "30s", got nothing; remove the key to use the default`},
		{"{a: 1}", `expected a duration, got a mapping`},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.in, func(t *testing.T) {
			_, err := Parse([]byte(minimal+"sink:\n  linger: "+tt.in+"\n"), env(testEnv))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestTableNames(t *testing.T) {
	tests := []struct {
		in, schema, name string
	}{
		{"events", "public", "events"},
		{"analytics.user_events", "analytics", "user_events"},
		{"Analytics.User_Events", "analytics", "user_events"},
		{`"Odd; Name".events`, "Odd; Name", "events"},
		{`"Odd; Name"."Ev""ents"`, "Odd; Name", `Ev"ents`},
		{`"a.b"`, "public", "a.b"},
		{`  s . t  `, "s", "t"},
		{"_t$1", "public", "_t$1"},
		{"événements", "public", "événements"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			schema, name, err := parseTableName(tt.in)
			if err != nil || schema != tt.schema || name != tt.name {
				t.Errorf("parseTableName(%q) = %q, %q, %v; want %q, %q", tt.in, schema, name, err, tt.schema, tt.name)
			}
			q := quoteIdent(schema) + "." + quoteIdent(name)
			if s2, n2, err := parseTableName(q); err != nil || s2 != schema || n2 != name {
				t.Errorf("round trip through %q = %q, %q, %v", q, s2, n2, err)
			}
		})
	}
	bad := []struct{ in, want string }{
		{"a.b.c", "too many dots"},
		{"a.", "missing identifier at position 3"},
		{".a", `unexpected "." at position 1`},
		{"1abc", `unexpected "1" at position 1; quote identifiers that contain unusual characters or start with a digit`},
		{`"abc`, "unterminated quoted identifier starting at position 1"},
		{`"".t`, `empty quoted identifier "" at position 1`},
		{"a b", `unexpected "b" at position 3`},
		{"a;drop", `unexpected ";" at position 2`},
		{strings.Repeat("x", 64), "is 64 bytes long; PostgreSQL identifiers are at most 63 bytes"},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.in, func(t *testing.T) {
			_, _, err := parseTableName(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("parseTableName(%q) err = %v, want it to contain %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestQualifiedName(t *testing.T) {
	if got := (Table{Schema: "Odd; Name", Name: "events"}).QualifiedName(); got != "Odd; Name.events" {
		t.Errorf("QualifiedName = %q", got)
	}
}

func TestProperties(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		want     []string
		wantList bool
		warning  string
	}{
		{"absent", "", nil, false, ""},
		{"one column as a string", "    properties: event_data\n", []string{"event_data"}, false, ""},
		{"one column as a list", "    properties: [event_data]\n", []string{"event_data"}, true, ""},
		{"block list keeps case", "    properties:\n      - Plan\n      - price\n", []string{"Plan", "price"}, true, ""},
		{"comma in a string", "    properties: plan, price\n", []string{"plan, price"}, false,
			`tables[0].properties (line 11): "plan, price" is read as ONE column name; to send several columns write a YAML list, e.g. [a, b]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(minimal+tt.yaml), env(testEnv))
			if err != nil {
				t.Fatal(err)
			}
			tb := c.Tables[0]
			if !reflect.DeepEqual(tb.Properties, tt.want) || tb.PropertiesIsList != tt.wantList {
				t.Errorf("Properties = %q, list %v; want %q, list %v", tb.Properties, tb.PropertiesIsList, tt.want, tt.wantList)
			}
			var want []string
			if tt.warning != "" {
				want = []string{tt.warning}
			}
			if !reflect.DeepEqual(c.Warnings, want) {
				t.Errorf("Warnings = %q, want %q", c.Warnings, want)
			}
		})
	}
}

func TestMergeKeysAndAliases(t *testing.T) {
	yml := `
source:
  dsn: "postgres://census@db.internal/analytics"
onesignal:
  app_id: "5eb5a37e-b458-11e3-ac11-000c2940e62c"
  api_key: "${ONESIGNAL_API_KEY}"
tables:
  - &base
    table: a
    name: event_name
    external_id: user_id
    properties: &props [x, y]
  - <<: *base
    table: b
    properties: *props
`
	c, err := Parse([]byte(yml), env(testEnv))
	if err != nil {
		t.Fatal(err)
	}
	want := Table{Schema: "public", Name: "b", EventName: "event_name", ExternalID: "user_id", Properties: []string{"x", "y"}, PropertiesIsList: true}
	if len(c.Tables) != 2 || !reflect.DeepEqual(c.Tables[1], want) {
		t.Errorf("Tables = %+v", c.Tables)
	}
}

// Secrets used by TestSecrets: recognisable, and never to be seen in a
// message.
const (
	secretKey      = "os_v2_app_SECRETKEYVALUE1234"
	secretPassword = "hunter2PASSWORD"
)

func TestSecretWarnings(t *testing.T) {
	const keyWarning = `onesignal.api_key is written literally in the config file; prefer "${ONESIGNAL_API_KEY}" or api_key_file`
	const dsnWarning = "source.dsn contains a password written literally in the config file; prefer PGPASSWORD, a ${VAR} reference or a .pgpass file"
	dsn := `"postgres://census@db.internal:5432/analytics"`
	tests := []struct {
		name, dsn, apiKey string
		want              []string
	}{
		{"no secrets in the file", dsn, `"${ONESIGNAL_API_KEY}"`, nil},
		{"literal api key", dsn, secretKey, []string{keyWarning}},
		{"url password", `"postgres://census:` + secretPassword + `@db.internal/analytics"`, `"${ONESIGNAL_API_KEY}"`, []string{dsnWarning}},
		{"url password from env", `"postgres://census:${PGPASS}@db.internal/analytics"`, `"${ONESIGNAL_API_KEY}"`, nil},
		{"url query password", `"postgresql://db.internal/analytics?sslmode=require&password=` + secretPassword + `"`, `"${ONESIGNAL_API_KEY}"`, []string{dsnWarning}},
		{"keyword password", `"host=db.internal password=` + secretPassword + ` dbname=analytics"`, `"${ONESIGNAL_API_KEY}"`, []string{dsnWarning}},
		{"quoted keyword password", `"host=db.internal password = '` + secretPassword + ` x' dbname=analytics"`, `"${ONESIGNAL_API_KEY}"`, []string{dsnWarning}},
		{"keyword password from env", `"host=db.internal password=${PGPASS}"`, `"${ONESIGNAL_API_KEY}"`, nil},
		{"whole dsn from env", `"${DSN}"`, `"${ONESIGNAL_API_KEY}"`, nil},
		{"both", `"postgres://census:` + secretPassword + `@db.internal/analytics"`, secretKey, []string{dsnWarning, keyWarning}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yml := replace(t, minimal, `"postgres://census@db.internal:5432/analytics"`, tt.dsn)
			yml = replace(t, yml, `"${ONESIGNAL_API_KEY}"`, tt.apiKey)
			e := map[string]string{
				"ONESIGNAL_API_KEY": secretKey,
				"PGPASS":            secretPassword,
				"DSN":               "postgres://u:" + secretPassword + "@h/db",
			}
			c, err := Parse([]byte(yml), env(e))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Warnings, tt.want) {
				t.Errorf("Warnings = %q, want %q", c.Warnings, tt.want)
			}
		})
	}
}

func TestNoSecretInErrors(t *testing.T) {
	secretDSN := "postgres://census:" + secretPassword + "@db.internal:5432/analytics"
	tests := []struct {
		name string
		yaml string
	}{
		{"everything else wrong", `
source:
  dsn: "` + secretDSN + `"
  mode: fast
onesignal:
  app_id: "` + secretKey + `"
  api_key: "` + secretKey + `"
  apikey: "` + secretKey + `"
  timeout: ` + secretKey + `
tables: []
`},
		{"api key of the wrong type", `
source:
  dsn: "host=db password=` + secretPassword + ` dbname"
onesignal:
  api_key: {key: ` + secretKey + `}
`},
		{"bad references in secrets", `
source:
  dsn: "postgres://census:` + secretPassword + `${@db.internal/x"
onesignal:
  api_key: "` + secretKey + `${ BAD }"
`},
		{"dsn with bad scheme", `
source:
  dsn: "postgress://census:` + secretPassword + `@db.internal/x"
onesignal:
  api_key: "${KEY}"
  url: "https://user:` + secretPassword + `@api.onesignal.com"
`},
		{"dsn with unterminated quote", `
source:
  dsn: "password='` + secretPassword + `"
`},
		{"dsn with a bare word", `
source:
  dsn: "host=db ` + secretPassword + `"
`},
		{"password in the query", `
source:
  dsn: "postgresql://db/x?password=` + secretPassword + `"
sink:
  max_pending_events: 1
`},
		{"key from env", `
source:
  dsn: "${DSN}"
onesignal:
  app_id: "${KEY}"
  api_key: "${KEY}"
tables: 1
`},
		{"syntax error near a secret", `
source:
  dsn: "` + secretDSN + `"
onesignal:
  api_key: "` + secretKey + `
`},
	}
	e := map[string]string{"KEY": secretKey, "DSN": secretDSN}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), env(e))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			for _, s := range []string{secretKey, secretPassword} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error contains the secret %q:\n%v", s, err)
				}
			}
		})
	}
	// Warnings of a valid config.
	yml := replace(t, minimal, "census@db", "census:"+secretPassword+"@db")
	yml = replace(t, yml, `"${ONESIGNAL_API_KEY}"`, secretKey)
	c, err := Parse([]byte(yml+"    properties: a,b\n"), env(nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Warnings) != 3 {
		t.Errorf("want 3 warnings, got %q", c.Warnings)
	}
	for _, w := range c.Warnings {
		for _, s := range []string{secretKey, secretPassword} {
			if strings.Contains(w, s) {
				t.Errorf("warning contains the secret %q: %s", s, w)
			}
		}
	}
}

func TestRedacted(t *testing.T) {
	yml := replace(t, custom, "host=replica.internal", "host=replica.internal password='"+secretPassword+"'")
	c, err := Parse([]byte(yml), env(map[string]string{"ONESIGNAL_API_KEY": secretKey}))
	if err != nil {
		t.Fatal(err)
	}
	got := c.Redacted()
	want := `source:
  dsn: host=replica.internal password='REDACTED' dbname=analytics user=census
  mode: read-only
  slot: pgsignal_replica_1
  publication: pgsignal_pub
  schema: census_meta
  on_slot_lost: recreate
  method: query
  poll_interval: 250ms
  state_file: /var/lib/pgsignal/state.json
onesignal:
  app_id: 5EB5A37E-B458-11E3-AC11-000C2940E62C
  api_key: REDACTED
  url: http://onesignal-fake:8080
  timeout: 1m30s
sink:
  batch_size: 1000
  linger: 0s
  concurrency: 16
  max_pending_events: 1000
  max_pending_bytes: 1GiB
  max_backoff: 2m0s
  unknown_user: drop
  dead_letter_file: /var/lib/pgsignal/dead.jsonl
  max_event_age: 24h0m0s
  stale: drop
shutdown_timeout: 1m0s
stall_timeout: 45s
server:
  listen: ""
log:
  level: debug
  format: json
tables:
  - table: analytics.user_events
    name: event_name
    name_prefix: app_
    external_id: user_id
    timestamp: event_timestamp
    properties: event_data
    cursor: event_id
  - table: '"Odd; Name"."Events"'
    name_value: signup
    external_id: UserID
    properties:
      - plan
      - Referrer
      - price
    cursor: ID
  - table: public.orders
    name_value: order_placed
    external_id: customer_id
    cursor: id
`
	if got != want {
		t.Errorf("Redacted() =\n%s\nwant:\n%s", got, want)
	}

	// It reads back as the same configuration, secrets aside.
	back, err := Parse([]byte(got), nil)
	if err != nil {
		t.Fatalf("Parse(Redacted()): %v", err)
	}
	c.Source.DSN = strings.Replace(c.Source.DSN, secretPassword, "REDACTED", 1)
	c.OneSignal.APIKey = "REDACTED"
	c.Warnings = []string{"source.dsn contains a password written literally in the config file; prefer PGPASSWORD, a ${VAR} reference or a .pgpass file",
		`onesignal.api_key is written literally in the config file; prefer "${ONESIGNAL_API_KEY}" or api_key_file`}
	back.lines, c.lines = nil, nil // the rendering has other line numbers
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, c)
	}
}

func TestRedactDSN(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://u:" + secretPassword + "@h:5432/db", "postgres://u:REDACTED@h:5432/db"},
		{"postgres://u@h/db", "postgres://u@h/db"},
		{"postgres://u:@h/db", "postgres://u:@h/db"},
		{"postgresql://h1,h2/db?password=" + secretPassword + "&sslmode=require", "postgresql://h1,h2/db?password=REDACTED&sslmode=require"},
		{"postgres://u:p%40ss" + secretPassword + "@h/db?password=x", "postgres://u:REDACTED@h/db?password=REDACTED"},
		{"host=h password=" + secretPassword + " user=u", "host=h password=REDACTED user=u"},
		{"host=h password = '" + secretPassword + ` it\'s' user=u`, "host=h password = 'REDACTED' user=u"},
		{"host=h", "host=h"},
	}
	for _, tt := range tests {
		if got := redactDSN(tt.in); got != tt.want {
			t.Errorf("redactDSN(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestValidateProgrammatic(t *testing.T) {
	c := Defaults()
	c.Source.DSN = "postgres://pgsignal@localhost:5432/demo"
	c.OneSignal.AppID = "5eb5a37e-b458-11e3-ac11-000c2940e62c"
	c.OneSignal.APIKey = "demo-key"
	c.Tables = []Table{{Schema: "public", Name: "events", EventName: "name", ExternalID: "user_id", Properties: []string{"data"}}}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}

	bad := c
	bad.Tables = []Table{
		{Schema: "public", Name: "events", ExternalID: "user_id", Properties: []string{"a", "b"}},
		{Schema: "public", Name: "events", EventNameValue: strings.Repeat("n", 129), ExternalID: "u"},
		{Name: "x", EventName: "n", ExternalID: "u"},
	}
	bad.Sink.MaxPendingBytes = 0
	bad.OneSignal.APIKey = "key with space"
	bad.Log.Format = ""
	err := bad.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate = %v, want a *ValidationError", err)
	}
	var got []string
	for _, p := range ve.Problems {
		if p.Line != 0 {
			t.Errorf("problem %q has a line", p.Error())
		}
		got = append(got, p.Error())
	}
	want := []string{
		"onesignal.api_key: contains whitespace or control characters; check for a stray space or line break in the key",
		`sink.max_pending_bytes: 0 bytes is too small: the minimum is 1MiB (one full OneSignal request); did you forget a unit, as in "64MiB"?`,
		`log.format: empty; use "auto", "json" or "console", or remove the key to use the default`,
		"tables[0].name: required: set name to the column holding the event name, or name_value to a constant event name",
		"tables[0].properties: several columns require PropertiesIsList (in the file, a YAML list)",
		"tables[1].table: public.events is already configured at tables[0]; each table may be listed once: merge the two entries or remove one",
		"tables[1].name_value: the event name (name_prefix + name_value) is 129 characters long; OneSignal allows at most 128",
		`tables[2].table: required; the table to stream, as "schema.table" or "table" (the schema defaults to public)`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	empty := Defaults()
	err = empty.Validate()
	if err == nil {
		t.Fatal("Validate(Defaults()) = nil, want the required keys")
	}
	for _, w := range []string{"source.dsn: required", "onesignal.app_id: required", "onesignal.api_key: required", "tables: required"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("Validate(Defaults()) = %v; missing %q", err, w)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "api-key"), []byte("  "+secretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	yml := replace(t, minimal, `api_key: "${ONESIGNAL_API_KEY}"`, "api_key_file: api-key")
	path := filepath.Join(dir, "pgsignal.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.OneSignal.APIKey != secretKey {
		t.Errorf("APIKey = %q, want the trimmed content of the key file", c.OneSignal.APIKey)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("Warnings = %q, want none for a key file", c.Warnings)
	}

	// An empty key file.
	if err := os.WriteFile(filepath.Join(dir, "api-key"), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(path)
	if err == nil || !strings.Contains(err.Error(), "onesignal.api_key_file (line 6): "+filepath.Join(dir, "api-key")+" is empty; write the App API key into it") {
		t.Errorf("Load with an empty key file: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "api_key: required") {
		t.Errorf("Load with an empty key file also reports api_key: %v", err)
	}
	if err != nil && !strings.HasPrefix(err.Error(), "load config "+path+": invalid configuration: ") {
		t.Errorf("Load error not wrapped with the path: %v", err)
	}

	_, err = Load(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of a missing file: %v, want os.ErrNotExist", err)
	}
}

func TestExpand(t *testing.T) {
	lookup := lookupEnv(map[string]string{"A": "1", "B": "2", "E": ""})
	tests := []struct {
		in, want, err string
		vars          []string
	}{
		{in: "plain", want: "plain"},
		{in: "${A}${B}", want: "12", vars: []string{"A", "B"}},
		{in: "${E:-d}", want: "d", vars: []string{"E"}},
		{in: "${C:-a:-b}", want: "a:-b", vars: []string{"C"}},
		{in: "${C:-${A}}", err: "nested ${...} in the default of ${C:-...} is not supported"},
		{in: "${A-x}", err: `invalid environment variable reference "${A-x}"`},
		{in: "${}", err: `invalid environment variable reference "${}"`},
		{in: "${1A}", err: `invalid environment variable reference "${1A}"`},
		{in: "${A", err: `unterminated "${"`},
		{in: "${C}", err: "environment variable C is not set"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, vars, err := expand(tt.in, lookup, true)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("expand(%q) err = %v, want %q", tt.in, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want || !reflect.DeepEqual(vars, tt.vars) {
				t.Errorf("expand(%q) = %q, %q, %v; want %q, %q", tt.in, got, vars, err, tt.want, tt.vars)
			}
		})
	}
	if _, _, err := expand("${BAD NAME}", lookup, false); err == nil || strings.Contains(err.Error(), "BAD NAME") {
		t.Errorf("expand of a secret quoted the reference: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	withNetwork := strings.Replace(minimal, "source:\n", "source:\n  sslmode: verify-full\n  sslrootcert: ca.crt\n  ssh: {host: b, user: u, private_key_file: k, known_hosts_file: kh}\n", 1)
	for _, s := range []string{minimal, specExample, custom, withNetwork, "", "a: [", "tables: [{table: '\"x'}]"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, env(testEnv))
		if err == nil {
			if err := c.Validate(); err != nil {
				t.Errorf("Parse accepted a config Validate rejects: %v", err)
			}
			_ = c.Redacted()
		}
	})
}
