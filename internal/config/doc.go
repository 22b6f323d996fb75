// Package config loads, defaults and validates pgsignal's YAML configuration
// file.
//
// Load reads a file and Parse parses bytes; both return a *Config with every
// default filled in, or an error listing every problem found at once. The
// error is a *ValidationError: each Problem names the key as a dotted path
// (for example "tables[1].external_id" or "onesignal.app_id"), the YAML line
// when it is known, what is wrong and how to fix it. Problems are sorted in
// file order.
//
// The file is decoded into a yaml.Node tree and walked against the package's
// own schema, so an unknown key, a wrong type or a duplicate key is reported
// with its full path and line instead of a Go type name.
//
// After YAML parsing, "${VAR}" and "${VAR:-default}" in every string value are
// replaced from the environment ("$$" is a literal "$"). Because expansion
// happens after parsing, a variable can never inject YAML structure.
//
// The TLS keys source.sslmode, sslrootcert, sslcert and sslkey (libpq's
// names) may also be written in source.dsn; a key written in both places
// must have the same value there. Parse and Validate write them into
// Source.DSN (as a URL query parameter or a quoted key=value pair, the rest
// of the DSN unchanged), so every connection made from the DSN uses them.
// source.ssh describes an SSH bastion to tunnel every connection through;
// it names where the private key is (a file or an environment variable),
// never the key itself.
//
// Secrets (the OneSignal API key, a password in the DSN) never appear in an
// error or warning. A secret written literally in the file is accepted but
// produces a warning in Config.Warnings; Config.Redacted prints a
// configuration with the secrets replaced.
//
// A Config built in Go (for example from Defaults) is checked with
// Config.Validate, which applies the same rules as Parse except those that
// only make sense for a file (unknown keys, types, environment expansion).
package config
