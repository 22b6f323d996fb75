package config

import (
	"strings"

	"go.yaml.in/yaml/v3"
)

// Redacted returns c as YAML in the layout of the configuration file, with
// the API key and any password in the DSN replaced by "REDACTED", for logs
// and "show config" output. Durations and sizes are written in the file's
// notation and table names are quoted where needed, so the text reads back
// with Parse (apart from the secrets, and "$", which is not escaped).
func (c *Config) Redacted() string {
	type table struct {
		Table      string `yaml:"table"`
		Name       string `yaml:"name,omitempty"`
		NameValue  string `yaml:"name_value,omitempty"`
		NamePrefix string `yaml:"name_prefix,omitempty"`
		ExternalID string `yaml:"external_id"`
		Timestamp  string `yaml:"timestamp,omitempty"`
		Properties any    `yaml:"properties,omitempty"`
		Cursor     string `yaml:"cursor,omitempty"`
	}
	type ssh struct {
		Host                  string `yaml:"host"`
		Port                  int    `yaml:"port"`
		User                  string `yaml:"user"`
		PrivateKeyFile        string `yaml:"private_key_file,omitempty"`
		PrivateKeyEnv         string `yaml:"private_key_env,omitempty"`
		PassphraseEnv         string `yaml:"passphrase_env,omitempty"`
		KnownHostsFile        string `yaml:"known_hosts_file,omitempty"`
		InsecureIgnoreHostKey bool   `yaml:"insecure_ignore_host_key,omitempty"`
	}
	type doc struct {
		Source struct {
			DSN         string `yaml:"dsn"`
			Mode        string `yaml:"mode"`
			Slot        string `yaml:"slot"`
			Publication string `yaml:"publication"`
			Schema      string `yaml:"schema"`
			OnSlotLost  string `yaml:"on_slot_lost"`
			Failover    bool   `yaml:"failover,omitempty"`
			SSLMode     string `yaml:"sslmode,omitempty"`
			SSLRootCert string `yaml:"sslrootcert,omitempty"`
			SSLCert     string `yaml:"sslcert,omitempty"`
			SSLKey      string `yaml:"sslkey,omitempty"`
			SSH         *ssh   `yaml:"ssh,omitempty"`
			// ReceiveTimeout is "" when derived from the server.
			ReceiveTimeout string `yaml:"receive_timeout,omitempty"`
			// Method, PollInterval and StateFile are written where they
			// apply.
			Method       string `yaml:"method,omitempty"`
			PollInterval string `yaml:"poll_interval,omitempty"`
			StateFile    string `yaml:"state_file,omitempty"`
		} `yaml:"source"`
		OneSignal struct {
			AppID   string `yaml:"app_id"`
			APIKey  string `yaml:"api_key"`
			URL     string `yaml:"url"`
			Timeout string `yaml:"timeout"`
		} `yaml:"onesignal"`
		Sink struct {
			BatchSize        int    `yaml:"batch_size"`
			Linger           string `yaml:"linger"`
			Concurrency      int    `yaml:"concurrency"`
			MaxPendingEvents int    `yaml:"max_pending_events"`
			MaxPendingBytes  string `yaml:"max_pending_bytes"`
			MaxBackoff       string `yaml:"max_backoff"`
			UnknownUser      string `yaml:"unknown_user"`
			DeadLetterFile   string `yaml:"dead_letter_file"`
			MaxEventAge      string `yaml:"max_event_age,omitempty"`
			Stale            string `yaml:"stale,omitempty"`
		} `yaml:"sink"`
		ShutdownTimeout string `yaml:"shutdown_timeout"`
		StallTimeout    string `yaml:"stall_timeout"`
		Server          struct {
			Listen string `yaml:"listen"`
		} `yaml:"server"`
		Log struct {
			Level  string `yaml:"level"`
			Format string `yaml:"format"`
		} `yaml:"log"`
		Tables []table `yaml:"tables"`
	}
	var d doc
	d.Source.DSN = redactDSN(c.Source.DSN)
	d.Source.Mode = c.Source.Mode
	if c.Source.Method == MethodQuery {
		d.Source.Method = c.Source.Method
		d.Source.PollInterval = c.Source.PollInterval.String()
	}
	if c.Source.Mode == ModeReadOnly {
		d.Source.StateFile = c.Source.StateFile
	}
	d.Source.Slot = c.Source.Slot
	d.Source.Publication = c.Source.Publication
	d.Source.Schema = c.Source.Schema
	d.Source.OnSlotLost = c.Source.OnSlotLost
	d.Source.Failover = c.Source.Failover
	d.Source.SSLMode = c.Source.SSLMode
	d.Source.SSLRootCert = c.Source.SSLRootCert
	d.Source.SSLCert = c.Source.SSLCert
	d.Source.SSLKey = c.Source.SSLKey
	if c.Source.ReceiveTimeout > 0 {
		d.Source.ReceiveTimeout = c.Source.ReceiveTimeout.String()
	}
	if s := c.Source.SSH; s != nil {
		d.Source.SSH = &ssh{
			Host: s.Host, Port: s.Port, User: s.User,
			PrivateKeyFile: s.PrivateKeyFile, PrivateKeyEnv: s.PrivateKeyEnv, PassphraseEnv: s.PassphraseEnv,
			KnownHostsFile: s.KnownHostsFile, InsecureIgnoreHostKey: s.InsecureIgnoreHostKey,
		}
	}
	d.OneSignal.AppID = c.OneSignal.AppID
	if c.OneSignal.APIKey != "" {
		d.OneSignal.APIKey = redacted
	}
	d.OneSignal.URL = c.OneSignal.URL
	d.OneSignal.Timeout = c.OneSignal.Timeout.String()
	d.Sink.BatchSize = c.Sink.BatchSize
	d.Sink.Linger = c.Sink.Linger.String()
	d.Sink.Concurrency = c.Sink.Concurrency
	d.Sink.MaxPendingEvents = c.Sink.MaxPendingEvents
	d.Sink.MaxPendingBytes = formatSize(c.Sink.MaxPendingBytes)
	d.Sink.MaxBackoff = c.Sink.MaxBackoff.String()
	d.Sink.UnknownUser = c.Sink.UnknownUser
	d.Sink.DeadLetterFile = c.Sink.DeadLetterFile
	if c.Sink.MaxEventAge > 0 {
		d.Sink.MaxEventAge = c.Sink.MaxEventAge.String()
		d.Sink.Stale = c.Sink.Stale
	}
	d.ShutdownTimeout = c.ShutdownTimeout.String()
	d.StallTimeout = c.StallTimeout.String()
	d.Server.Listen = c.Server.Listen
	d.Log.Level = c.Log.Level
	d.Log.Format = c.Log.Format
	for _, t := range c.Tables {
		out := table{
			Table:      quoteIdent(t.Schema) + "." + quoteIdent(t.Name),
			Name:       t.EventName,
			NameValue:  t.EventNameValue,
			Cursor:     t.Cursor,
			NamePrefix: t.NamePrefix,
			ExternalID: t.ExternalID,
			Timestamp:  t.Timestamp,
		}
		switch {
		case t.PropertiesIsList:
			out.Properties = t.Properties
		case len(t.Properties) == 1:
			out.Properties = t.Properties[0]
		}
		d.Tables = append(d.Tables, out)
	}
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&d); err != nil {
		// Encoding plain strings and integers does not fail.
		return "# cannot encode the configuration: " + err.Error() + "\n"
	}
	_ = enc.Close()
	out := b.String()
	// Safety net: the key must not appear even where it does not belong.
	if len(c.OneSignal.APIKey) >= minSecretLen {
		out = strings.ReplaceAll(out, c.OneSignal.APIKey, redacted)
	}
	return out
}

// literalParts returns the text of a secret as written in the file with
// its ${NAME} references taken out: the literal pieces, and the defaults of
// ${NAME:-default}. They are the secrets to scrub from messages; the names
// of the variables are not secret, and messages cite them ("the value comes
// from ${NAME}").
func literalParts(raw string) []string {
	var parts []string
	for {
		i := strings.Index(raw, "${")
		if i < 0 {
			break
		}
		end := strings.IndexByte(raw[i:], '}')
		if end < 0 {
			break // an unterminated reference: keep it all
		}
		if raw[:i] != "" {
			parts = append(parts, raw[:i])
		}
		if _, def, ok := strings.Cut(raw[i+2:i+end], ":-"); ok && def != "" {
			parts = append(parts, def)
		}
		raw = raw[i+end+1:]
	}
	if raw != "" {
		parts = append(parts, raw)
	}
	return parts
}
