package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"
)

// column decodes a column name into dst; an explicitly empty one is an
// error, with how to leave the setting out.
func (d *decoder) column(dst *string, ifOmitted string) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		s, ok := d.scalar(n, path, "a column name", false)
		if !ok {
			return
		}
		if s == "" {
			d.fail(path, n.Line, "empty column name; %s", ifOmitted)
			return
		}
		*dst = s
	}
}

// root decodes the whole document into c.
func (d *decoder) root(n *yaml.Node, c *Config) {
	if n == nil {
		return
	}
	d.mapping(n, "", []field{
		{"source", d.source(&c.Source)},
		{"onesignal", d.onesignal(&c.OneSignal)},
		{"sink", d.sink(&c.Sink)},
		{"shutdown_timeout", d.duration(&c.ShutdownTimeout)},
		{"stall_timeout", d.duration(&c.StallTimeout)},
		{"server", func(n *yaml.Node, path string) {
			d.mapping(n, path, []field{{"listen", d.str(&c.Server.Listen, false)}})
		}},
		{"log", func(n *yaml.Node, path string) {
			d.mapping(n, path, []field{
				{"level", d.str(&c.Log.Level, false)},
				{"format", d.str(&c.Log.Format, false)},
			})
		}},
		{"tables", d.tables(&c.Tables)},
	})
}

// source decodes the `source` section.
func (d *decoder) source(s *Source) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		stateFileSet := false
		defer func() {
			// The default state file lives next to the configuration file,
			// like every relative path written in it.
			if !stateFileSet && d.baseDir != "" && s.StateFile == DefaultStateFile {
				s.StateFile = filepath.Join(d.baseDir, DefaultStateFile)
			}
		}()
		d.mapping(n, path, []field{
			{"dsn", func(n *yaml.Node, path string) {
				v, ok := d.scalar(n, path, "a connection string", true)
				if !ok {
					return
				}
				s.DSN = v
				d.secrets = append(d.secrets, dsnPasswords(v)...)
				for _, pw := range dsnPasswords(n.Value) {
					d.secrets = append(d.secrets, literalParts(pw)...)
				}
				if dsnHasLiteralPassword(n.Value) {
					d.warnings = append(d.warnings, "source.dsn contains a password written literally in the config file; prefer PGPASSWORD, a ${VAR} reference or a .pgpass file")
				}
			}},
			{"mode", d.str(&s.Mode, false)},
			{"slot", d.str(&s.Slot, false)},
			{"publication", d.str(&s.Publication, false)},
			{"schema", d.str(&s.Schema, false)},
			{"on_slot_lost", d.str(&s.OnSlotLost, false)},
			{"failover", d.boolean(&s.Failover)},
			{"sslmode", d.str(&s.SSLMode, false)},
			{"sslrootcert", d.file(&s.SSLRootCert, "system")},
			{"sslcert", d.file(&s.SSLCert, "")},
			{"sslkey", d.file(&s.SSLKey, "")},
			{"ssh", d.ssh(&s.SSH)},
			{"receive_timeout", d.duration(&s.ReceiveTimeout)},
			{"method", d.str(&s.Method, false)},
			{"poll_interval", d.duration(&s.PollInterval)},
			{"state_file", func(n *yaml.Node, path string) {
				stateFileSet = true
				d.file(&s.StateFile, "")(n, path)
			}},
		})
	}
}

// file decodes a file path into dst. A relative path is taken relative to
// the directory of the configuration file; keep is a value that is not a
// path ("" for none).
func (d *decoder) file(dst *string, keep string) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		s, ok := d.scalar(n, path, "a file path", false)
		if !ok {
			return
		}
		if s != "" && s != keep && !filepath.IsAbs(s) && d.baseDir != "" {
			s = filepath.Join(d.baseDir, s)
		}
		*dst = s
	}
}

// ssh decodes the `source.ssh` section. A null section means no tunnel.
func (d *decoder) ssh(dst **SSH) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if isNull(n) {
			return
		}
		s := &SSH{Port: DefaultSSHPort}
		d.mapping(n, path, []field{
			{"host", d.str(&s.Host, false)},
			{"port", d.integer(&s.Port)},
			{"user", d.str(&s.User, false)},
			{"private_key_file", d.file(&s.PrivateKeyFile, "")},
			{"private_key_env", d.envVar(&s.PrivateKeyEnv, "the private key")},
			{"passphrase_env", d.envVar(&s.PassphraseEnv, "the passphrase of the private key")},
			{"known_hosts_file", d.file(&s.KnownHostsFile, "")},
			{"insecure_ignore_host_key", d.boolean(&s.InsecureIgnoreHostKey)},
		})
		if d.hasFailed(join(path, "insecure_ignore_host_key")) {
			// Whether known_hosts_file is required is unknown.
			d.failed = append(d.failed, join(path, "known_hosts_file"))
		}
		if !d.hasFailed(path) {
			*dst = s
		}
	}
}

// envVar decodes the name of an environment variable holding a secret
// (what) into dst, and checks that the variable is set. The variable's
// value joins the secrets scrubbed from messages. The name is treated as a
// secret too: "${VAR}" by mistake would make it the secret itself.
func (d *decoder) envVar(dst *string, what string) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		s, ok := d.scalar(n, path, "an environment variable name", true)
		if !ok {
			return
		}
		*dst = s
		if !validVarName(s) {
			d.secrets = append(d.secrets, s)
			return // reported by validate
		}
		v, set := d.lookup(s)
		if !set || v == "" {
			d.fail(path, n.Line, "environment variable %s is not set; export it with %s", s, what)
			return
		}
		d.secrets = append(d.secrets, v)
	}
}

// onesignal decodes the `onesignal` section, reading api_key_file.
func (d *decoder) onesignal(o *OneSignal) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		var keyFile string
		keySet, fileSet := false, false
		if d.noKey {
			ignore := func(*yaml.Node, string) {}
			d.mapping(n, path, []field{
				{"app_id", d.str(&o.AppID, false)}, {"api_key", ignore}, {"api_key_file", ignore},
				{"url", d.str(&o.URL, false)}, {"timeout", d.duration(&o.Timeout)},
			})
			return
		}
		d.mapping(n, path, []field{
			{"app_id", d.str(&o.AppID, false)},
			{"api_key", func(n *yaml.Node, path string) {
				keySet = !isNull(n) && (n.Kind != yaml.ScalarNode || n.Value != "")
				v, ok := d.scalar(n, path, "a string", true)
				if !ok {
					return
				}
				o.APIKey = v
				d.secrets = append(d.secrets, v)
				if !isNull(n) && n.Kind == yaml.ScalarNode {
					d.secrets = append(d.secrets, literalParts(n.Value)...)
				}
				if v != "" && !strings.Contains(n.Value, "${") {
					d.warnings = append(d.warnings, `onesignal.api_key is written literally in the config file; prefer "${ONESIGNAL_API_KEY}" or api_key_file`)
				}
			}},
			{"api_key_file", func(n *yaml.Node, path string) {
				fileSet = true
				d.str(&keyFile, false)(n, path)
			}},
			{"url", func(n *yaml.Node, path string) {
				if v, ok := d.scalar(n, path, "a URL", false); ok {
					o.URL = strings.TrimRight(v, "/")
					if o.URL == "" {
						o.URL = v
					}
				}
			}},
			{"timeout", d.duration(&o.Timeout)},
		})
		if !fileSet || d.hasFailed(join(path, "api_key_file")) {
			return
		}
		fp := join(path, "api_key_file")
		line := d.lines[fp]
		if keySet {
			d.fail(fp, line, "conflicts with onesignal.api_key (line %d): set only one of them", d.lines[join(path, "api_key")])
			d.failed = append(d.failed, join(path, "api_key"))
			return
		}
		if keyFile == "" {
			d.fail(fp, line, "empty path; set it to a file holding the App API key, or remove it and set api_key")
			return
		}
		if !filepath.IsAbs(keyFile) && d.baseDir != "" {
			keyFile = filepath.Join(d.baseDir, keyFile)
		}
		data, err := os.ReadFile(keyFile)
		if err != nil {
			d.fail(fp, line, "cannot read the API key: %v; check the path and its permissions", err)
			d.failed = append(d.failed, join(path, "api_key"))
			return
		}
		key := strings.TrimSpace(string(data))
		d.secrets = append(d.secrets, key)
		if key == "" {
			d.fail(fp, line, "%s is empty; write the App API key into it", keyFile)
			d.failed = append(d.failed, join(path, "api_key"))
			return
		}
		o.APIKey = key
		// Problems with the key are reported at api_key_file.
		d.lines[join(path, "api_key")] = line
	}
}

// sink decodes the `sink` section.
func (d *decoder) sink(s *Sink) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		d.mapping(n, path, []field{
			{"batch_size", d.integer(&s.BatchSize)},
			{"linger", d.duration(&s.Linger)},
			{"concurrency", d.integer(&s.Concurrency)},
			{"max_pending_events", d.integer(&s.MaxPendingEvents)},
			{"max_pending_bytes", d.size(&s.MaxPendingBytes)},
			{"max_backoff", d.duration(&s.MaxBackoff)},
			{"unknown_user", d.str(&s.UnknownUser, false)},
			{"dead_letter_file", d.str(&s.DeadLetterFile, false)},
			{"max_event_age", d.duration(&s.MaxEventAge)},
			{"stale", d.str(&s.Stale, false)},
		})
	}
}

// tables decodes the `tables` list.
func (d *decoder) tables(dst *[]Table) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if isNull(n) {
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n.Line, `expected a list of tables (each item starting with "- table: ..."), got %s`, describe(n, false))
			return
		}
		for i, item := range n.Content {
			ip := index(path, i)
			item = resolve(item)
			d.lines[ip] = item.Line
			var t Table
			d.table(item, ip, &t)
			*dst = append(*dst, t)
		}
	}
}

// table decodes one item of `tables`.
func (d *decoder) table(n *yaml.Node, path string, t *Table) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, n.Line, "expected a table (a mapping with table, name or name_value, external_id, ...), got %s", describe(n, false))
		return
	}
	d.mapping(n, path, []field{
		{"table", func(n *yaml.Node, path string) {
			s, ok := d.scalar(n, path, `a table name ("schema.table" or "table")`, false)
			if !ok || s == "" {
				return
			}
			schema, name, err := parseTableName(s)
			if err != nil {
				d.fail(path, n.Line, "%v", err)
				return
			}
			t.Schema, t.Name = schema, name
		}},
		{"name", d.column(&t.EventName, "set the column holding the event name, or use name_value for a constant name")},
		{"name_value", func(n *yaml.Node, path string) {
			s, ok := d.scalar(n, path, "an event name", false)
			if !ok {
				return
			}
			if s == "" {
				d.fail(path, n.Line, "empty event name; set the constant event name, or use name for a column holding it")
				d.failed = append(d.failed, parentPath(path)+".name")
				return
			}
			t.EventNameValue = s
		}},
		{"name_prefix", d.str(&t.NamePrefix, false)},
		{"external_id", d.str(&t.ExternalID, false)},
		{"timestamp", d.column(&t.Timestamp, "remove the key to use the commit time of the transaction")},
		{"properties", func(n *yaml.Node, path string) { d.properties(n, path, t) }},
		{"properties_columns", d.list(&t.PropertiesColumns, "a column name", "[plan, price]", "list at least one column, or remove the key")},
		{"exclude", d.list(&t.Exclude, "a property name", "[internal_id, debug]", "list at least one key of the json properties, or remove the key")},
		{"timestamp_zone", d.str(&t.TimestampZone, false)},
		{"timestamp_unit", d.str(&t.TimestampUnit, false)},
		{"where", d.str(&t.Where, false)},
		{"emit", d.list(&t.Emit, "an operation", "[insert, update]", `write [insert] or [insert, update], or remove the key to emit inserts`)},
		{"transform", d.str(&t.Transform, false)},
		{"backfill", d.backfill(&t.Backfill)},
		{"transform_timeout", d.duration(&t.TransformTimeout)},
		{"cursor", d.column(&t.Cursor, "remove the key with source.method: logical")},
	})
}

// backfill decodes a table's `backfill: {since: 7d, column: created_at}`.
func (d *decoder) backfill(dst **Backfill) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if isNull(n) {
			return
		}
		b := &Backfill{}
		d.mapping(n, path, []field{
			{"since", func(n *yaml.Node, path string) {
				s, ok := d.scalar(n, path, `a window like "7d" or "36h"`, false)
				if !ok {
					return
				}
				v, err := ParseSince(s)
				if err != nil {
					d.fail(path, n.Line, "%v", err)
					return
				}
				b.Since = v
			}},
			{"column", d.column(&b.Column, "remove the key to measure the window on the table's timestamp column")},
		})
		if !d.hasFailed(path) {
			*dst = b
		}
	}
}

// properties decodes `properties`: one column name, or a list of them.
func (d *decoder) properties(n *yaml.Node, path string, t *Table) {
	if n.Kind == yaml.SequenceNode {
		t.PropertiesIsList = true
		if len(n.Content) == 0 {
			d.fail(path, n.Line, "empty list; list at least one column, or remove the key to send no properties")
			return
		}
		for i, item := range n.Content {
			ip := index(path, i)
			item = resolve(item)
			d.lines[ip] = item.Line
			s, ok := d.scalar(item, ip, "a column name", false)
			if !ok {
				continue
			}
			if s == "" {
				d.fail(ip, item.Line, "empty column name; remove the item")
				continue
			}
			t.Properties = append(t.Properties, s)
		}
		return
	}
	s, ok := d.scalar(n, path, "a column name or a list of column names", false)
	if !ok {
		return
	}
	if s == "" {
		d.fail(path, n.Line, "empty column name; remove the key to send no properties")
		return
	}
	t.Properties = []string{s}
	if strings.Contains(s, ",") {
		d.warnings = append(d.warnings, fmt.Sprintf("%s (line %d): %q is read as ONE column name; to send several columns write a YAML list, e.g. [a, b]", path, n.Line, short(s)))
	}
}
