package config

import (
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Validate checks c and returns a *ValidationError listing every problem,
// or nil. It applies no defaults: a Config built in Go should start from
// Defaults. Problems carry no line numbers. The one change it makes is to
// write Source.SSLMode, SSLRootCert, SSLCert and SSLKey into Source.DSN when
// they are valid and the DSN does not hold them yet (as Parse does), so
// that every connection made from the DSN uses them.
func (c *Config) Validate() error {
	if ps := validate(c); len(ps) > 0 {
		return &ValidationError{Problems: ps}
	}
	return nil
}

// validate returns the problems of c, in schema order. Messages never quote
// a secret.
func validate(c *Config) []Problem {
	var ps problems
	validateSource(&ps, &c.Source)
	validateOneSignal(&ps, &c.OneSignal)
	validateSink(&ps, &c.Sink)
	positive(&ps, "shutdown_timeout", c.ShutdownTimeout)
	positive(&ps, "stall_timeout", c.StallTimeout)
	validateListen(&ps, c.Server.Listen)
	oneOf(&ps, "log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf(&ps, "log.format", c.Log.Format, "auto", "json", "console")
	validateTables(&ps, c.Tables)
	for i, t := range c.Tables {
		if c.Source.Method == MethodQuery && t.Cursor == "" && t.Schema != "" {
			ps.add(index("tables", i)+".cursor", 0, "required with source.method: query; name the column new rows are read by, an integer filled from a sequence or identity, e.g. cursor: id")
		}
		if c.Source.Method == MethodQuery && t.Backfill != nil {
			ps.add(index("tables", i)+".backfill", 0, "not available with source.method: query, which starts from the current rows; remove the key, or backfill once with source.method: logical")
		}
		if c.Source.Method == MethodQuery && t.EmitsUpdates() {
			ps.add(index("tables", i)+".emit", 0, "update is not available with source.method: query, which reads new rows only; remove update from emit")
		}
	}
	if c.Source.Mode == ModeReadOnly {
		for i, t := range c.Tables {
			if t.Backfill != nil {
				ps.add(index("tables", i)+".backfill", 0, "needs source.mode full: a backfill records its progress in the bookkeeping schema so that a crash in the middle is redone, and read-only mode has none; remove the key, or backfill once in full mode")
			}
		}
	}
	return ps.list
}

// validateTransform checks a table whose events come from a SQL transform:
// the transform returns the event's columns, so the column mapping keys
// cannot be used with it.
func validateTransform(ps *problems, p string, t Table) {
	if strings.TrimSpace(strings.TrimRight(strings.TrimSpace(t.Transform), ";")) == "" {
		ps.add(p+".transform", 0, "empty; write a SELECT over the relation changes returning name and external_id, or remove the key")
		return
	}
	conflicts := []struct {
		key string
		set bool
	}{
		{"name", t.EventName != ""}, {"name_value", t.EventNameValue != ""}, {"external_id", t.ExternalID != ""},
		{"timestamp", t.Timestamp != ""}, {"properties", len(t.Properties) > 0},
		{"properties_columns", len(t.PropertiesColumns) > 0}, {"exclude", len(t.Exclude) > 0},
	}
	for _, c := range conflicts {
		if c.set {
			ps.add(p+"."+c.key, 0, "conflicts with transform, which returns the event's columns: return it from the transform (SELECT ... AS %s) and remove this key", transformColumn(c.key))
		}
	}
	if n := utf8.RuneCountInString(t.NamePrefix); n >= MaxEventNameLen {
		ps.add(p+".name_prefix", 0, "%d characters long, leaving no room for the name: OneSignal event names are at most %d characters", n, MaxEventNameLen)
	}
	// The timestamp keys apply to the transform's timestamp output.
	validateMapping(ps, p, Table{Where: t.Where, Emit: t.Emit, TimestampUnit: t.TimestampUnit, TimestampZone: t.TimestampZone}, true)
}

// transformColumn names the transform output a mapping key corresponds to.
func transformColumn(key string) string {
	switch key {
	case "name_value":
		return "name"
	case "properties_columns", "exclude":
		return "properties"
	}
	return key
}

// validateBackfill checks a table's backfill settings.
func validateBackfill(ps *problems, p string, t Table) {
	if t.Backfill == nil {
		return
	}
	if t.Backfill.Since <= 0 {
		ps.add(p+".backfill.since", 0, `required; how far back to send rows, e.g. "7d"`)
	}
	if t.BackfillColumn() == "" {
		if t.Transform != "" {
			ps.add(p+".backfill.column", 0, "required with a transform whose timestamp is not a plain column of changes (like c.created_at AS timestamp): name the table's column the window is measured on (a timestamptz, timestamp or date column, or epoch time with timestamp_unit), e.g. column: created_at")
		} else {
			ps.add(p+".backfill.column", 0, "required without timestamp: name the column the window is measured on, e.g. column: created_at, or set the table's timestamp")
		}
	}
}

func validateSource(ps *problems, s *Source) {
	switch {
	case strings.TrimSpace(s.DSN) == "":
		ps.add("source.dsn", 0, `required; the libpq connection string of the database to stream from, e.g. "postgres://pgsignal@db.internal:5432/app" (keep the password in PGPASSWORD or a .pgpass file)`)
	default:
		if err := checkDSN(s.DSN); err != nil {
			ps.add("source.dsn", 0, "%v", err)
		}
	}
	oneOf(ps, "source.mode", s.Mode, ModeFull, ModeReadOnly)
	oneOf(ps, "source.method", s.Method, MethodLogical, MethodQuery)
	if s.Method == MethodQuery && s.PollInterval < 10*time.Millisecond {
		ps.add("source.poll_interval", 0, "%s is too short: use at least 10ms, or remove the key to poll every %s", s.PollInterval, DefaultPollInterval)
	}
	if s.Mode == ModeReadOnly && s.StateFile == "" {
		ps.add("source.state_file", 0, "empty; read-only mode keeps its state in this file: remove the key to use the default %q, or set a path", DefaultStateFile)
	}
	oneOf(ps, "source.on_slot_lost", s.OnSlotLost, SlotLostError, SlotLostRecreate)
	switch {
	case s.Slot == "":
		ps.add("source.slot", 0, "empty; remove the key to use the default %q, or set a slot name", DefaultSlot)
	case !validSlotName(s.Slot):
		ps.add("source.slot", 0, "invalid replication slot name %q: use 1 to %d lower-case letters, digits and underscores", short(s.Slot), MaxIdentifierLen)
	}
	identifier(ps, "source.publication", s.Publication, DefaultPublication)
	identifier(ps, "source.schema", s.Schema, DefaultSchema)
	validateTLS(ps, s)
	if s.ReceiveTimeout != 0 && s.ReceiveTimeout < time.Second {
		ps.add("source.receive_timeout", 0, "%s is too short: use at least 1s, or remove the key to derive it from the server's wal_sender_timeout", s.ReceiveTimeout)
	}
	if s.SSH != nil {
		validateSSH(ps, s.SSH)
	}
}

// sslModes are libpq's sslmode values, weakest first.
var sslModes = []string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}

// tlsSetting is a TLS key of `source` and the libpq parameter it sets.
type tlsSetting struct {
	param string
	value *string
}

// tlsSettings returns the TLS keys of s.
func tlsSettings(s *Source) []tlsSetting {
	return []tlsSetting{{"sslmode", &s.SSLMode}, {"sslrootcert", &s.SSLRootCert}, {"sslcert", &s.SSLCert}, {"sslkey", &s.SSLKey}}
}

// validateTLS checks the TLS keys against the DSN and, when they agree,
// writes them into s.DSN. A key may repeat a setting of the DSN, but only
// with the same value. None of these values is a secret.
func validateTLS(ps *problems, s *Source) {
	before := len(ps.list)
	if s.SSLMode != "" {
		oneOf(ps, "source.sslmode", s.SSLMode, sslModes...)
	}
	if strings.TrimSpace(s.DSN) == "" || checkDSN(s.DSN) != nil {
		return // already reported
	}
	for _, t := range tlsSettings(s) {
		if *t.value == "" {
			continue
		}
		if v, ok := dsnParam(s.DSN, t.param); ok && v != *t.value {
			ps.add("source."+t.param, 0, "%q conflicts with %s %q in source.dsn; set it in only one of them", short(*t.value), t.param, short(v))
		}
	}
	if mode, ok := dsnParam(s.DSN, "sslmode"); ok && s.SSLMode == "" && !slices.Contains(sslModes, mode) {
		ps.add("source.dsn", 0, "unknown sslmode %q; use %s", short(mode), quotedList(sslModes))
	}
	if len(ps.list) > before {
		return
	}
	for _, t := range tlsSettings(s) {
		if _, ok := dsnParam(s.DSN, t.param); *t.value != "" && !ok {
			s.DSN = withParam(s.DSN, t.param, *t.value)
		}
	}
}

// validateSSH checks the `source.ssh` section.
func validateSSH(ps *problems, s *SSH) {
	const p = "source.ssh."
	if strings.TrimSpace(s.Host) == "" {
		ps.add(p+"host", 0, "required; the host name or IP address of the SSH bastion the database is reached through")
	}
	between(ps, p+"port", s.Port, 1, 65535)
	if s.User == "" {
		ps.add(p+"user", 0, "required; the user to log in to the bastion as")
	}
	switch {
	case s.PrivateKeyFile != "" && s.PrivateKeyEnv != "":
		ps.add(p+"private_key_env", 0, "conflicts with private_key_file: set exactly one of them")
	case s.PrivateKeyFile == "" && s.PrivateKeyEnv == "":
		ps.add(p+"private_key_file", 0, "required: set private_key_file to a file holding the private key, or private_key_env to the name of an environment variable holding it")
	}
	envName(ps, p+"private_key_env", s.PrivateKeyEnv, "SSH_PRIVATE_KEY")
	envName(ps, p+"passphrase_env", s.PassphraseEnv, "SSH_KEY_PASSPHRASE")
	switch {
	case s.InsecureIgnoreHostKey && s.KnownHostsFile != "":
		ps.add(p+"insecure_ignore_host_key", 0, "conflicts with known_hosts_file: remove insecure_ignore_host_key to verify the host key")
	case !s.InsecureIgnoreHostKey && s.KnownHostsFile == "":
		ps.add(p+"known_hosts_file", 0, "required: the bastion's host key must be verified; write it with `ssh-keyscan -p %d %s > known_hosts` (and check its fingerprint), or set insecure_ignore_host_key: true (a man-in-the-middle could then read the database traffic)", s.Port, short(s.Host))
	}
}

// envName checks a setting that names an environment variable. The value is
// not quoted: a "${VAR}" reference would have put the secret itself there.
func envName(ps *problems, path, v, example string) {
	if v != "" && !validVarName(v) {
		ps.add(path, 0, "not an environment variable name: write the name of the variable, e.g. %s (not ${%s}, which would put the secret itself in the configuration)", example, example)
	}
}

// identifier checks the name of a database object that has a default.
func identifier(ps *problems, path, v, def string) {
	switch {
	case v == "":
		ps.add(path, 0, "empty; remove the key to use the default %q, or set a name", def)
	case len(v) > MaxIdentifierLen:
		ps.add(path, 0, "%q is %d bytes long; PostgreSQL names are at most %d bytes", short(v), len(v), MaxIdentifierLen)
	case strings.ContainsRune(v, 0):
		ps.add(path, 0, "contains a NUL character")
	}
}

func validateOneSignal(ps *problems, o *OneSignal) {
	switch {
	case o.AppID == "":
		ps.add("onesignal.app_id", 0, "required; the OneSignal App ID, a UUID found in the OneSignal dashboard under Settings > Keys & IDs")
	case !validUUID(o.AppID):
		hint := ""
		if strings.HasPrefix(o.AppID, "os_v2_") {
			hint = "; this looks like an API key, which belongs in onesignal.api_key"
		}
		// Not quoted: a misplaced API key must not be echoed.
		ps.add("onesignal.app_id", 0, "not a UUID: expected the App ID in the form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx (Settings > Keys & IDs in the OneSignal dashboard)%s", hint)
	}
	switch {
	case o.APIKey == "":
		ps.add("onesignal.api_key", 0, `required; the OneSignal App API key: write api_key: "${ONESIGNAL_API_KEY}" and set the variable, or set api_key_file to a file holding the key`)
	case strings.IndexFunc(o.APIKey, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		ps.add("onesignal.api_key", 0, "contains whitespace or control characters; check for a stray space or line break in the key")
	}
	validateURL(ps, "onesignal.url", o.URL)
	positive(ps, "onesignal.timeout", o.Timeout)
}

// validateURL checks an http(s) base URL.
func validateURL(ps *problems, path, s string) {
	if s == "" {
		ps.add(path, 0, "empty; remove the key to use the default %q", DefaultOneSignalURL)
		return
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		// url errors quote the URL, which may hold credentials.
		ps.add(path, 0, `not a valid URL; expected an http(s) URL like %q`, DefaultOneSignalURL)
	case u.User != nil:
		ps.add(path, 0, "must not contain credentials; the API key goes in onesignal.api_key")
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		ps.add(path, 0, "expected an http(s) URL like %q, got %q", DefaultOneSignalURL, short(s))
	case u.RawQuery != "" || u.Fragment != "":
		ps.add(path, 0, "must not have a query or fragment; give the base URL, like %q", DefaultOneSignalURL)
	}
}

func validateSink(ps *problems, s *Sink) {
	between(ps, "sink.batch_size", s.BatchSize, MinBatchSize, MaxBatchSize)
	between(ps, "sink.concurrency", s.Concurrency, MinConcurrency, MaxConcurrency)
	switch {
	case s.MaxPendingEvents < 1:
		ps.add("sink.max_pending_events", 0, "must be positive, got %d", s.MaxPendingEvents)
	case s.MaxPendingEvents < s.BatchSize:
		ps.add("sink.max_pending_events", 0, "%d is less than sink.batch_size (%d): raise max_pending_events or lower batch_size", s.MaxPendingEvents, s.BatchSize)
	}
	if s.MaxPendingBytes < MinMaxPendingBytes {
		ps.add("sink.max_pending_bytes", 0, `%d bytes is too small: the minimum is 1MiB (one full OneSignal request); did you forget a unit, as in "64MiB"?`, s.MaxPendingBytes)
	}
	if s.Linger < 0 {
		ps.add("sink.linger", 0, `must not be negative, got %s; use "0s" to send partial batches at once`, s.Linger)
	}
	positive(ps, "sink.max_backoff", s.MaxBackoff)
	oneOf(ps, "sink.unknown_user", s.UnknownUser, UnknownUserDeadLetter, UnknownUserDrop)
	if s.DeadLetterFile == "" {
		ps.add("sink.dead_letter_file", 0, "empty; remove the key to use the default %q, or set a path", DefaultDeadLetterFile)
	}
	if s.MaxEventAge < 0 {
		ps.add("sink.max_event_age", 0, "must not be negative, got %s; remove the key to send events however old", s.MaxEventAge)
	}
	oneOf(ps, "sink.stale", s.Stale, StaleDeadLetter, StaleDrop)
}

// validateListen checks server.listen: "" or host:port.
func validateListen(ps *problems, s string) {
	if s == "" {
		return
	}
	_, port, err := net.SplitHostPort(s)
	if err == nil {
		if n, perr := strconv.Atoi(port); perr != nil || n < 0 || n > 65535 {
			err = fmt.Errorf("bad port")
		}
	}
	if err != nil {
		ps.add("server.listen", 0, `expected host:port like "127.0.0.1:8187" or ":8187" (or "" to disable the server), got %q`, short(s))
	}
}

func validateTables(ps *problems, tables []Table) {
	if len(tables) == 0 {
		ps.add("tables", 0, `required; list at least one event table, e.g. "- table: public.user_events" with name (or name_value) and external_id`)
		return
	}
	first := map[string]int{}
	for i, t := range tables {
		p := index("tables", i)
		tp := p + ".table"
		switch {
		case t.Schema == "" || t.Name == "":
			ps.add(tp, 0, `required; the table to stream, as "schema.table" or "table" (the schema defaults to public)`)
		case len(t.Schema) > MaxIdentifierLen || len(t.Name) > MaxIdentifierLen:
			ps.add(tp, 0, "a name is longer than %d bytes, which PostgreSQL would truncate", MaxIdentifierLen)
		default:
			q := quoteIdent(t.Schema) + "." + quoteIdent(t.Name) // "a.b".c and a."b.c" differ
			if j, dup := first[q]; dup {
				ps.add(tp, 0, "%s is already configured at tables[%d]; each table may be listed once: merge the two entries or remove one", quoteIdent(t.Schema)+"."+quoteIdent(t.Name), j)
			} else {
				first[q] = i
			}
		}
		validateBackfill(ps, p, t)
		if t.TransformTimeout != 0 && (t.Transform == "" || t.TransformTimeout < 10*time.Millisecond) {
			ps.add(p+".transform_timeout", 0, "needs a transform and a duration of at least 10ms, e.g. 2m; remove the key for the default %s", DefaultTransformTimeout)
		}
		if t.Transform != "" {
			validateTransform(ps, p, t)
			continue
		}
		switch {
		case t.EventName != "" && t.EventNameValue != "":
			ps.add(p+".name_value", 0, "conflicts with name: set exactly one of name (a column holding the event name) or name_value (a constant event name)")
		case t.EventName == "" && t.EventNameValue == "":
			ps.add(p+".name", 0, "required: set name to the column holding the event name, or name_value to a constant event name")
		case t.EventNameValue != "":
			if n := utf8.RuneCountInString(t.NamePrefix + t.EventNameValue); n > MaxEventNameLen {
				ps.add(p+".name_value", 0, "the event name (name_prefix + name_value) is %d characters long; OneSignal allows at most %d", n, MaxEventNameLen)
			}
		default:
			if n := utf8.RuneCountInString(t.NamePrefix); n >= MaxEventNameLen {
				ps.add(p+".name_prefix", 0, "%d characters long, leaving no room for the name: OneSignal event names are at most %d characters", n, MaxEventNameLen)
			}
		}
		if t.ExternalID == "" {
			ps.add(p+".external_id", 0, "required; the column holding the OneSignal external_id of the user the event belongs to")
		}
		if len(t.Properties) > 1 && !t.PropertiesIsList {
			ps.add(p+".properties", 0, "several columns require PropertiesIsList (in the file, a YAML list)")
		}
		seen := map[string]int{}
		for j, col := range t.Properties {
			cp := index(p+".properties", j)
			if !t.PropertiesIsList {
				cp = p + ".properties"
			}
			if col == "" {
				ps.add(cp, 0, "empty column name")
				continue
			}
			if k, dup := seen[col]; dup {
				ps.add(cp, 0, "column %q is already listed at properties[%d]; remove one", short(col), k)
				continue
			}
			seen[col] = j
		}
		validateMapping(ps, p, t, false)
	}
}

// validateMapping checks a table's richer mapping keys: properties_columns,
// exclude, timestamp_zone, timestamp_unit, where and emit. With transform,
// the timestamp keys need no timestamp column (they apply to the
// transform's output).
func validateMapping(ps *problems, p string, t Table, transform bool) {
	if len(t.PropertiesColumns) > 0 && t.PropertiesIsList {
		ps.add(p+".properties_columns", 0, "conflicts with a list in properties: list every column in properties, or set properties to the json/jsonb column the columns are added to")
	}
	props := map[string]bool{}
	for _, c := range t.Properties {
		props[c] = true
	}
	seen := map[string]int{}
	for j, col := range t.PropertiesColumns {
		cp := index(p+".properties_columns", j)
		switch k, dup := seen[col]; {
		case col == "":
			ps.add(cp, 0, "empty column name")
		case dup:
			ps.add(cp, 0, "column %q is already listed at properties_columns[%d]; remove one", short(col), k)
		case props[col] && !t.PropertiesIsList:
			ps.add(cp, 0, "column %q is the json properties column itself; remove it", short(col))
		default:
			seen[col] = j
		}
	}
	if len(t.Exclude) > 0 && (len(t.Properties) != 1 || t.PropertiesIsList) {
		ps.add(p+".exclude", 0, "requires properties to be one json/jsonb column (written as a string, e.g. properties: event_data): exclude drops keys from its object")
	}
	seen = map[string]int{}
	for j, key := range t.Exclude {
		if k, dup := seen[key]; dup {
			ps.add(index(p+".exclude", j), 0, "key %q is already listed at exclude[%d]; remove one", short(key), k)
			continue
		}
		seen[key] = j
	}
	if t.TimestampUnit != "" {
		oneOf(ps, p+".timestamp_unit", t.TimestampUnit, TimestampUnitSeconds, TimestampUnitMillis)
		if t.Timestamp == "" && !transform {
			ps.add(p+".timestamp_unit", 0, "requires timestamp: set timestamp to the column holding the epoch time, or remove the key")
		}
	}
	if t.TimestampZone != "" {
		switch {
		case t.Timestamp == "" && !transform:
			ps.add(p+".timestamp_zone", 0, "requires timestamp: set timestamp to the timestamp or date column read in this zone, or remove the key")
		case t.TimestampUnit != "":
			ps.add(p+".timestamp_zone", 0, "conflicts with timestamp_unit: an epoch time is the same in every zone; remove timestamp_zone")
		case t.TimestampZone == "Local":
			ps.add(p+".timestamp_zone", 0, `"Local" depends on the machine pgsignal runs on; name the zone, e.g. "Europe/Paris"`)
		default:
			if _, err := time.LoadLocation(t.TimestampZone); err != nil {
				ps.add(p+".timestamp_zone", 0, `unknown time zone %q; use an IANA zone name like "UTC" or "America/New_York"`, short(t.TimestampZone))
			}
		}
	}
	if t.Where != "" && strings.TrimSpace(t.Where) == "" {
		ps.add(p+".where", 0, "empty filter; write a boolean SQL expression over the table's columns, e.g. \"event_name = 'purchase'\", or remove the key to stream every row")
	}
	if t.Emit != nil {
		if len(t.Emit) == 0 {
			ps.add(p+".emit", 0, "empty list; write [insert] or [insert, update], or remove the key to emit inserts")
		}
		seen = map[string]int{}
		insert := false
		for j, e := range t.Emit {
			ep := index(p+".emit", j)
			if k, dup := seen[e]; dup {
				ps.add(ep, 0, "%q is already listed at emit[%d]; remove one", short(e), k)
				continue
			}
			seen[e] = j
			insert = insert || e == EmitInsert
			oneOf(ps, ep, e, EmitInsert, EmitUpdate)
		}
		if len(t.Emit) > 0 && !insert {
			ps.add(p+".emit", 0, `must include "insert": updates are emitted in addition to inserts; write [insert, update]`)
		}
	}
}

// oneOf checks an enumerated setting.
func oneOf(ps *problems, path, v string, allowed ...string) {
	for _, a := range allowed {
		if v == a {
			return
		}
	}
	list := quotedList(allowed)
	if v == "" {
		ps.add(path, 0, "empty; use %s, or remove the key to use the default", list)
		return
	}
	ps.add(path, 0, "unknown value %q; use %s", short(v), list)
}

// quotedList lists values as `"a", "b" or "c"`.
func quotedList(values []string) string {
	quoted := make([]string, len(values))
	for i, a := range values {
		quoted[i] = strconv.Quote(a)
	}
	return strings.Join(quoted[:len(quoted)-1], ", ") + " or " + quoted[len(quoted)-1]
}

// between checks an integer range.
func between(ps *problems, path string, v, lo, hi int) {
	if v < lo || v > hi {
		ps.add(path, 0, "must be between %d and %d, got %d", lo, hi, v)
	}
}

// positive checks that a duration is greater than zero.
func positive(ps *problems, path string, d time.Duration) {
	if d <= 0 {
		ps.add(path, 0, "must be a positive duration like \"30s\", got %v", d)
	}
}
