package config

import (
	"fmt"
	"github.com/pgsignal/pgsignal/internal/tunnel"
	"time"

	"github.com/pgsignal/pgsignal/internal/config/defaults"
)

// Source modes.
const (
	// ModeFull lets pgsignal create its publication and slot and keep its
	// bookkeeping tables in Source.Schema.
	ModeFull = "full"
	// ModeReadOnly makes pgsignal write nothing to the database except its
	// replication slot; dead letters go to Sink.DeadLetterFile. It is the mode
	// for a standby.
	ModeReadOnly = "read-only"
)

// Values of Source.Method.
const (
	// MethodLogical reads inserts from a logical replication slot (pgoutput).
	MethodLogical = "logical"
	// MethodQuery polls the tables by a cursor column: no slot, no
	// publication, no REPLICATION attribute; it works on any standby.
	MethodQuery = "query"
)

// Values of Sink.Stale.
const (
	// StaleDeadLetter records an event older than Sink.MaxEventAge as a dead
	// letter with the reason "older than max_event_age".
	StaleDeadLetter = "dead-letter"
	// StaleDrop drops such an event (it is counted and logged).
	StaleDrop = "drop"
)

// Values of Source.OnSlotLost.
const (
	// SlotLostError stops pgsignal with an error that says what was lost.
	SlotLostError = defaults.SlotLostError
	// SlotLostRecreate recreates the slot, records the gap and goes on.
	SlotLostRecreate = defaults.SlotLostRecreate
)

// Values of Sink.UnknownUser.
const (
	// UnknownUserDeadLetter records an event for a user OneSignal does not
	// know as a dead letter.
	UnknownUserDeadLetter = defaults.UnknownUserDeadLetter
	// UnknownUserDrop silently drops such an event.
	UnknownUserDrop = defaults.UnknownUserDrop
)

// Values of Table.TimestampUnit.
const (
	// TimestampUnitSeconds reads the timestamp column as seconds since the
	// Unix epoch.
	TimestampUnitSeconds = "s"
	// TimestampUnitMillis reads the timestamp column as milliseconds since
	// the Unix epoch.
	TimestampUnitMillis = "ms"
)

// Values of Table.Emit.
const (
	// EmitInsert makes every inserted row an event.
	EmitInsert = "insert"
	// EmitUpdate also makes every updated row (its new values) an event.
	EmitUpdate = "update"
)

// Defaults of the optional settings, as documented in the example
// configuration.
const (
	DefaultMode             = ModeFull
	DefaultMethod           = MethodLogical
	DefaultPollInterval     = time.Second
	DefaultStateFile        = "pgsignal-state.json"
	DefaultStale            = StaleDeadLetter
	DefaultSlot             = "pgsignal"
	DefaultPublication      = "pgsignal"
	DefaultSchema           = "census"
	DefaultOneSignalURL     = "https://api.onesignal.com"
	DefaultOneSignalTimeout = 30 * time.Second
	DefaultBatchSize        = defaults.BatchSize
	DefaultLinger           = defaults.Linger
	DefaultConcurrency      = defaults.Concurrency
	DefaultMaxPendingEvents = defaults.MaxPendingEvents
	DefaultMaxPendingBytes  = defaults.MaxPendingBytes
	DefaultMaxBackoff       = defaults.MaxBackoff
	DefaultUnknownUser      = UnknownUserDeadLetter
	DefaultDeadLetterFile   = "pgsignal-dead-letters.jsonl"
	DefaultShutdownTimeout  = 30 * time.Second
	DefaultStallTimeout     = 2 * time.Minute
	DefaultOnSlotLost       = SlotLostError
	DefaultListen           = "127.0.0.1:8187"
	DefaultLogLevel         = "info"
	DefaultLogFormat        = "auto"
	DefaultSSHPort          = 22
	// DefaultTableSchema is the schema of a table written without one.
	DefaultTableSchema = "public"
)

// Limits enforced by Validate.
const (
	MinBatchSize       = 1
	MaxBatchSize       = 10000
	MinConcurrency     = 1
	MaxConcurrency     = 256
	MinMaxPendingBytes = 1 << 20 // one full OneSignal request
	// MaxEventNameLen is OneSignal's limit on an event name, in characters.
	MaxEventNameLen = defaults.MaxEventNameLen
	// MaxIdentifierLen is PostgreSQL's limit on an identifier, in bytes
	// (NAMEDATALEN-1); longer names are silently truncated by the server.
	MaxIdentifierLen = 63
)

// Config is pgsignal's whole configuration. Parse and Load return it with
// every default applied; Defaults returns a starting point for building one in
// Go, which must then pass Validate.
type Config struct {
	// Source is the database to stream from.
	Source Source
	// OneSignal is the API the events are delivered to.
	OneSignal OneSignal
	// Sink tunes batching, concurrency and backpressure.
	Sink Sink
	// Tables are the event tables and how their rows become events.
	Tables []Table
	// ShutdownTimeout bounds how long a graceful shutdown may take.
	ShutdownTimeout time.Duration
	// StallTimeout is how long pending events may make no progress before
	// pgsignal reports itself stalled (/readyz fails, an error is logged).
	StallTimeout time.Duration
	// Server is the HTTP server for metrics and health checks.
	Server Server
	// Log configures logging.
	Log Log
	// Warnings are non-fatal remarks found while loading (e.g. a literal
	// secret), to be logged by the caller. They never contain a secret.
	Warnings []string
	// lines maps a key's dotted path (e.g. "tables[0].external_id") to its
	// 1-based line in the file it was loaded from.
	lines map[string]int
}

// Line returns the 1-based line of the key at path (e.g.
// "tables[0].external_id") in the file the configuration was loaded from,
// or 0 when unknown (a missing key, or a Config built in Go).
func (c *Config) Line(path string) int { return c.lines[path] }

// Problem returns a Problem at path, with the key's line when known.
func (c *Config) Problem(path, format string, args ...any) Problem {
	return Problem{Path: path, Line: c.Line(path), Msg: fmt.Sprintf(format, args...)}
}

// Source is the `source` section: the PostgreSQL database and its
// replication objects.
type Source struct {
	// DSN is a libpq connection string: a postgres:// (or postgresql://) URL
	// or key=value pairs. It may contain a password: never log it, use
	// Config.Redacted. Parse and Validate write the TLS settings below into
	// it, so every connection made from DSN uses them.
	DSN string
	// Mode is ModeFull or ModeReadOnly.
	Mode string
	// Method is MethodLogical (a replication slot) or MethodQuery (polling
	// each table by its Cursor column).
	Method string
	// PollInterval is how often the query method looks for new rows.
	PollInterval time.Duration
	// StateFile is the local file where read-only mode keeps what the
	// bookkeeping schema keeps in full mode (the delivery ledger, the query
	// method's position). It is written atomically and fsynced.
	StateFile string
	// OnSlotLost is SlotLostError or SlotLostRecreate: what to do when the
	// slot was invalidated or dropped.
	OnSlotLost string
	// Failover makes the slot a failover slot (PostgreSQL 17+), synchronized
	// to standbys so that it survives a promotion.
	Failover bool
	// Slot is the logical replication slot name ([a-z0-9_]{1,63}).
	Slot string
	// Publication is the publication name.
	Publication string
	// Schema is the bookkeeping schema used in full mode.
	Schema string
	// SSLMode is libpq's sslmode: disable, allow, prefer, require, verify-ca
	// or verify-full. "" leaves it to the DSN (libpq's default is prefer).
	// The same setting may be written in the DSN, but only with the same
	// value.
	SSLMode string
	// SSLRootCert is the file of the CA certificates the server's
	// certificate must be signed by (libpq's sslrootcert), or "system".
	SSLRootCert string
	// SSLCert and SSLKey are the client certificate and its private key
	// (libpq's sslcert and sslkey); set both or neither.
	SSLCert, SSLKey string
	// SSH, when set, makes every database connection go through an SSH
	// tunnel; the DSN's host and port are then resolved and reached from
	// the bastion.
	SSH *SSH
	// ReceiveTimeout is how long the replication connection may stay
	// silent (not even a keepalive answering pgsignal's ping) before it is
	// presumed dead and rebuilt. 0: twice the server's wal_sender_timeout,
	// at least 10 seconds.
	ReceiveTimeout time.Duration
}

// SSH is the `source.ssh` section: the bastion every database connection is
// tunnelled through (the tunnel's own configuration, declared where it is
// used). It holds no secret, only where to find them.
type SSH = tunnel.Config

// OneSignal is the `onesignal` section.
type OneSignal struct {
	// AppID is the OneSignal App ID, a UUID.
	AppID string
	// APIKey is the App API key. It is a secret: never log it.
	APIKey string
	// URL is the API base URL, without a trailing slash.
	URL string
	// Timeout bounds each HTTP request.
	Timeout time.Duration
}

// Sink is the `sink` section.
type Sink struct {
	// BatchSize is the most events sent in one request (1..10000).
	BatchSize int
	// Concurrency is the number of lanes sending in parallel (1..256).
	Concurrency int
	// MaxPendingEvents bounds the events queued and in flight; it is at least
	// BatchSize.
	MaxPendingEvents int
	// MaxPendingBytes bounds the bytes queued and in flight.
	MaxPendingBytes int64
	// Linger is the least time between two partial batches of a lane: an
	// event that finds its lane idle, with no batch sent in the last Linger,
	// is sent at once (0: whenever the lane is idle).
	Linger time.Duration
	// MaxBackoff caps the delay between retries.
	MaxBackoff time.Duration
	// UnknownUser is UnknownUserDeadLetter or UnknownUserDrop.
	UnknownUser string
	// DeadLetterFile is the JSONL file dead letters are appended to in
	// read-only mode.
	DeadLetterFile string
	// MaxEventAge, when positive, is the oldest an event may be (since its
	// transaction committed) when pgsignal is about to send it; an older one
	// is not sent (see Stale). 0 sends every event, however old.
	MaxEventAge time.Duration
	// Stale is StaleDeadLetter or StaleDrop: what becomes of an event older
	// than MaxEventAge.
	Stale string
}

// Server is the `server` section.
type Server struct {
	// Listen is the host:port of the metrics and health server; "" disables
	// it.
	Listen string
}

// Log is the `log` section.
type Log struct {
	// Level is debug, info, warn or error.
	Level string
	// Format is auto, json or console.
	Format string
}

// Table is one entry of `tables`: an event table and how its rows become
// OneSignal custom events. Column names are matched exactly (case
// preserved) against the column names in the replication stream.
type Table struct {
	// Schema and Name identify the table, unquoted: '"Odd; Name".events' is
	// Schema `Odd; Name`, Name `events`. Unquoted identifiers in the file are
	// folded to lower case like PostgreSQL does.
	Schema, Name string
	// EventName is the column holding the event name (`name`).
	EventName string
	// EventNameValue is a constant event name (`name_value`). Exactly one of
	// EventName and EventNameValue is set.
	EventNameValue string
	// NamePrefix is prepended to the event name.
	NamePrefix string
	// ExternalID is the column holding the OneSignal external_id.
	ExternalID string
	// Timestamp is the column holding the event time; "" means the commit
	// time of the transaction.
	Timestamp string
	// Properties are the columns that make the event properties: one column
	// (json/jsonb, or any type) or several.
	Properties []string
	// PropertiesIsList is true when `properties` was written as a YAML list:
	// the properties object is then built from the listed columns, while a
	// single column written as a string is used as the object itself.
	PropertiesIsList bool
	// PropertiesColumns are columns added to the properties object
	// (`properties_columns`): to the object of a json/jsonb Properties
	// column, where a column wins over a key of the same name, or, without
	// Properties, as the whole object.
	PropertiesColumns []string
	// Exclude are keys dropped from the object of a json/jsonb Properties
	// column (`exclude`). It requires Properties to be one column written as
	// a string.
	Exclude []string
	// TimestampZone is the IANA time zone that values of a timestamp
	// (without time zone) or date Timestamp column are read in
	// (`timestamp_zone`); "" means UTC.
	TimestampZone string
	// TimestampUnit is TimestampUnitSeconds or TimestampUnitMillis when the
	// Timestamp column holds epoch seconds or milliseconds in an integer or
	// numeric column (`timestamp_unit`); "" for a timestamptz, timestamp or
	// date column.
	TimestampUnit string
	// Where is the publication's row filter for this table (`where`): a SQL
	// boolean expression over the table's columns, evaluated by PostgreSQL
	// 15 or later, so that the rows it rejects never leave the server. ""
	// streams every row.
	Where string
	// Cursor is the column the query method reads new rows by (`cursor`):
	// an integer filled from a sequence or identity, growing with
	// insertion. Required for every table with source.method: query;
	// unused by the logical method.
	Cursor string
	// Emit lists the operations that become events (`emit`): EmitInsert,
	// and optionally EmitUpdate (an update sends the new row). nil means
	// the default, [EmitInsert].
	Emit []string
	// Transform is a SELECT over a relation named `changes` (the table's
	// columns, one row at a time) returning name, external_id and
	// optionally timestamp and properties (`transform`). PostgreSQL
	// evaluates it once per batch. When set, the column mapping keys
	// (name, name_value, external_id, timestamp, properties,
	// properties_columns, exclude) are not used; name_prefix,
	// timestamp_zone and timestamp_unit apply to its output.
	Transform string
	// TransformTimeout is the statement timeout of the transform's
	// evaluations (`transform_timeout`, default DefaultTransformTimeout): a
	// batch that takes longer is split, down to one row, and a row that
	// alone takes longer becomes a dead letter.
	TransformTimeout time.Duration
	// Backfill, when set, sends the table's recent history when pgsignal
	// creates its slot (`backfill`).
	Backfill *Backfill
}

// DefaultTransformTimeout is the default of tables[].transform_timeout.
const DefaultTransformTimeout = defaults.TransformTimeout

// Backfill configures the backfill of a table's recent rows.
type Backfill struct {
	// Since is the window: rows whose Column is at most this old are sent
	// (`since`, e.g. "7d").
	Since time.Duration
	// Column is the column the window is measured on (`column`); it
	// defaults to the table's timestamp column.
	Column string
}

// BackfillColumn returns the column a backfill window is measured on.
func (t Table) BackfillColumn() string {
	if t.Backfill != nil && t.Backfill.Column != "" {
		return t.Backfill.Column
	}
	if t.Transform != "" {
		return TransformTimestampColumn(t.Transform)
	}
	return t.Timestamp
}

// MappedColumn is a column a table's rule reads.
type MappedColumn struct {
	// Key is the configuration key relative to the table, e.g.
	// "external_id", "properties[1]" or "backfill.column".
	Key string
	// Field is the event field the column feeds ("name", "external_id",
	// "timestamp", "properties"), or "backfill" for the window column.
	Field string
	// Column is the column's name.
	Column string
}

// MappedColumns lists the columns the table's rule and backfill read, each
// with the key that names it. A transform's columns are PostgreSQL's to
// check, so only the backfill column is listed for a transform table.
func (t Table) MappedColumns() []MappedColumn {
	var out []MappedColumn
	if t.Transform == "" {
		if t.EventName != "" {
			out = append(out, MappedColumn{"name", "name", t.EventName})
		}
		out = append(out, MappedColumn{"external_id", "external_id", t.ExternalID})
		if t.Timestamp != "" {
			out = append(out, MappedColumn{"timestamp", "timestamp", t.Timestamp})
		}
		for i, p := range t.Properties {
			key := "properties"
			if t.PropertiesIsList {
				key = fmt.Sprintf("properties[%d]", i)
			}
			out = append(out, MappedColumn{key, "properties", p})
		}
		for i, p := range t.PropertiesColumns {
			out = append(out, MappedColumn{fmt.Sprintf("properties_columns[%d]", i), "properties", p})
		}
	}
	if t.Backfill != nil {
		key := "backfill.column"
		switch {
		case t.Backfill.Column != "":
		case t.Transform != "":
			key = "transform" // its timestamp column
		default:
			key = "timestamp"
		}
		out = append(out, MappedColumn{key, "backfill", t.BackfillColumn()})
	}
	return out
}

// EmitsUpdates reports whether the table's updates become events.
func (t Table) EmitsUpdates() bool {
	for _, e := range t.Emit {
		if e == EmitUpdate {
			return true
		}
	}
	return false
}

// QualifiedName returns "schema.name", unquoted. It is used as a map key and
// in logs.
func (t Table) QualifiedName() string { return t.Schema + "." + t.Name }

// Defaults returns a Config with every optional setting at its default and
// the required ones (Source.DSN, OneSignal.AppID, OneSignal.APIKey, Tables)
// empty.
func Defaults() Config {
	return Config{
		Source: Source{
			Mode:         DefaultMode,
			Slot:         DefaultSlot,
			Publication:  DefaultPublication,
			Schema:       DefaultSchema,
			OnSlotLost:   DefaultOnSlotLost,
			Method:       DefaultMethod,
			PollInterval: DefaultPollInterval,
			StateFile:    DefaultStateFile,
		},
		OneSignal: OneSignal{
			URL:     DefaultOneSignalURL,
			Timeout: DefaultOneSignalTimeout,
		},
		Sink: Sink{
			BatchSize:        DefaultBatchSize,
			Concurrency:      DefaultConcurrency,
			MaxPendingEvents: DefaultMaxPendingEvents,
			MaxPendingBytes:  DefaultMaxPendingBytes,
			Linger:           DefaultLinger,
			MaxBackoff:       DefaultMaxBackoff,
			UnknownUser:      DefaultUnknownUser,
			DeadLetterFile:   DefaultDeadLetterFile,
			Stale:            DefaultStale,
		},
		ShutdownTimeout: DefaultShutdownTimeout,
		StallTimeout:    DefaultStallTimeout,
		Server:          Server{Listen: DefaultListen},
		Log:             Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
}
