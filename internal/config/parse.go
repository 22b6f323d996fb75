package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Load reads the YAML configuration file at path and parses it with Parse,
// taking environment variables from the process environment (os.LookupEnv:
// a variable set to "" counts as set). A relative onesignal.api_key_file is
// read relative to the directory of path, and the relative file paths of
// source.sslrootcert, sslcert, sslkey and source.ssh are made relative to it
// too.
//
// On failure the error wraps a *ValidationError listing every problem, or
// the error of reading the file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	c, err := parse(data, os.LookupEnv, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	return c, nil
}

// LoadForDatabase is Load for the commands that talk only to the database
// (status, dead-letters list and discard, setup): onesignal.api_key and
// onesignal.api_key_file are neither read nor required, so the OneSignal
// secret need not be present; OneSignal.APIKey is empty.
func LoadForDatabase(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	c, err := parseWith(data, os.LookupEnv, filepath.Dir(path), true)
	if err != nil {
		return nil, fmt.Errorf("load config %s: %w", path, err)
	}
	return c, nil
}

// Parse parses a YAML configuration, expands ${VAR} references with getenv,
// applies the defaults and validates the result. With getenv nil the process
// environment is used (os.LookupEnv); otherwise, since getenv cannot tell an
// unset variable from an empty one, a variable for which getenv returns ""
// counts as unset. A relative onesignal.api_key_file is read relative to the
// working directory.
//
// The error, if any, is a *ValidationError listing every problem found, in
// file order, each naming its key and line. Neither it nor Config.Warnings
// ever contains a secret.
func Parse(data []byte, getenv func(string) string) (*Config, error) {
	lookup := os.LookupEnv
	if getenv != nil {
		lookup = func(name string) (string, bool) {
			v := getenv(name)
			return v, v != ""
		}
	}
	return parse(data, lookup, "")
}

// ParseLookup is Parse with os.LookupEnv semantics: lookup reports whether a
// variable is set, so a variable set to "" expands to "" instead of being an
// error. A nil lookup means os.LookupEnv.
func ParseLookup(data []byte, lookup func(string) (string, bool)) (*Config, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	return parse(data, lookup, "")
}

// parse does the work of Load, Parse and ParseLookup; baseDir is the
// directory relative files are resolved against ("" for the working
// directory).
func parse(data []byte, lookup func(string) (string, bool), baseDir string) (*Config, error) {
	return parseWith(data, lookup, baseDir, false)
}

// parseWith is parse; noKey leaves the OneSignal API key out (see
// LoadForDatabase).
func parseWith(data []byte, lookup func(string) (string, bool), baseDir string, noKey bool) (*Config, error) {
	d := &decoder{
		noKey:   noKey,
		lookup:  lookup,
		baseDir: baseDir,
		lines:   map[string]int{},
		vars:    map[string][]string{},
	}
	c := Defaults()
	root, err := parseYAML(data)
	if err != nil {
		return nil, &ValidationError{Problems: []Problem{*err}}
	}
	d.root(root, &c)
	for _, p := range validate(&c) {
		if noKey && p.Path == "onesignal.api_key" {
			continue
		}
		if !d.hasFailed(p.Path) {
			d.probs.list = append(d.probs.list, p)
		}
	}
	d.finish()
	if len(d.probs.list) > 0 {
		return nil, d.probs.err()
	}
	c.Warnings = d.warnings
	c.lines = d.lines
	return &c, nil
}

// yamlErrorRE matches the messages of go.yaml.in/yaml/v3.
var yamlErrorRE = regexp.MustCompile(`^yaml: (?:line (\d+): )?(.*)$`)

// parseYAML decodes data into a node tree. It returns nil for an empty
// document, and a Problem with the line for a syntax error.
func parseYAML(data []byte) (*yaml.Node, *Problem) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, syntaxProblem(data, err)
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		return nil, &Problem{Line: next.Line, Msg: `a second YAML document starts here; put the whole configuration in one document (remove the "---" line)`}
	} else if !errors.Is(err, io.EOF) {
		return nil, syntaxProblem(data, err)
	}
	if len(doc.Content) == 0 {
		return nil, nil
	}
	return doc.Content[0], nil
}

// syntaxProblem turns a YAML error into a Problem with the line it is on,
// correcting the library's line numbers where they are known to be off.
func syntaxProblem(data []byte, err error) *Problem {
	m := yamlErrorRE.FindStringSubmatch(err.Error())
	if m == nil {
		return &Problem{Msg: "YAML syntax error: " + err.Error()}
	}
	msg := m[2]
	line, _ := strconv.Atoi(m[1])
	switch {
	case strings.HasPrefix(msg, "did not find expected"):
		// Parser errors report the 0-based line of the enclosing block,
		// not the line that is wrong: find an over-indented line below
		// it, or say where to look.
		line++
		if bad, why := misIndented(data, line); bad > 0 {
			return &Problem{Line: bad, Msg: "YAML syntax error: " + msg + "; " + why}
		}
		return &Problem{Line: line, Msg: "YAML syntax error: " + msg + fmt.Sprintf("; check the indentation of the lines after line %d", line)}
	case strings.HasPrefix(msg, "unknown anchor"):
		if name, ok := strings.CutPrefix(msg, "unknown anchor '"); ok {
			name = strings.TrimSuffix(name, "' referenced")
			line = lineOf(data, "*"+name)
		}
	case line == 0 && (strings.HasPrefix(msg, "found ") || strings.HasPrefix(msg, "mapping values") ||
		strings.HasPrefix(msg, "block sequence") || strings.HasPrefix(msg, "could not find")):
		// Marks on the first line (0-based 0) are not printed.
		line = 1
	}
	hint := ""
	if strings.Contains(msg, "cannot start any token") && line > 0 && strings.Contains(lineText(data, line), "\t") {
		hint = "; YAML does not allow tabs: indent with spaces"
	}
	return &Problem{Line: line, Msg: "YAML syntax error: " + msg + hint}
}

// misIndented returns the first line at or after the line before the
// 1-based line from whose indentation fits no block: deeper than the line
// before it although that line opens none, or shallower but aligned with
// no enclosing block. It returns 0 when every line fits, and what is wrong
// with the line. The lines above are read only to know the open blocks.
func misIndented(data []byte, from int) (int, string) {
	lines := strings.Split(string(data), "\n")
	var levels []int // indentation of the open blocks, innermost last
	prevOpens := false
	for i := 0; i < len(lines); i++ {
		// Before the error every indentation is taken as given.
		lenient := i+1 < from-1
		text := lines[i]
		if j := strings.Index(text, " #"); j >= 0 {
			text = text[:j]
		}
		trimmed := strings.TrimSpace(text)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			continue
		}
		indent := len(text) - len(strings.TrimLeft(text, " "))
		switch top := len(levels) - 1; {
		case top < 0:
			levels = append(levels, indent)
		case indent > levels[top]:
			if !prevOpens && !lenient {
				return i + 1, "this line is indented deeper than the line before it, which opens no block: align it with the keys above"
			}
			levels = append(levels, indent)
		case indent < levels[top]:
			for len(levels) > 0 && levels[len(levels)-1] > indent {
				levels = levels[:len(levels)-1]
			}
			if len(levels) == 0 || levels[len(levels)-1] != indent {
				if !lenient {
					return i + 1, "this line's indentation matches no enclosing block: align it with the keys it belongs with"
				}
				levels = append(levels, indent)
			}
		}
		prevOpens = strings.HasSuffix(trimmed, ":") || strings.HasSuffix(trimmed, "|") || strings.HasSuffix(trimmed, ">")
		if strings.HasPrefix(trimmed, "- ") {
			// The keys of a list item line up after its "- ".
			levels = append(levels, indent+2)
		}
	}
	return 0, ""
}

// lineOf returns the 1-based line where s first occurs in data, or 0.
func lineOf(data []byte, s string) int {
	i := bytes.Index(data, []byte(s))
	if i < 0 {
		return 0
	}
	return bytes.Count(data[:i], []byte("\n")) + 1
}

// lineText returns the text of the 1-based line n of data.
func lineText(data []byte, n int) string {
	lines := bytes.Split(data, []byte("\n"))
	if n < 1 || n > len(lines) {
		return ""
	}
	return string(lines[n-1])
}

// decoder walks a YAML node tree against the configuration schema.
type decoder struct {
	// noKey leaves onesignal.api_key and api_key_file unread.
	noKey   bool
	lookup  func(string) (string, bool)
	baseDir string
	probs   problems
	// lines maps the path of every key seen to its line.
	lines map[string]int
	// vars maps paths to the environment variables their value references.
	vars map[string][]string
	// failed are the paths whose value could not be decoded; validation
	// problems within them would only repeat the news.
	failed []string
	// secrets are values that must never appear in a message.
	secrets  []string
	warnings []string
}

// field is a key of a mapping and the function decoding its value.
type field struct {
	key    string
	decode func(n *yaml.Node, path string)
}

// fail records a decoding problem at path.
func (d *decoder) fail(path string, line int, format string, args ...any) {
	d.probs.add(path, line, format, args...)
	d.failed = append(d.failed, path)
}

// hasFailed reports whether path is within a path that failed to decode.
func (d *decoder) hasFailed(path string) bool {
	for _, f := range d.failed {
		if within(path, f) {
			return true
		}
	}
	return false
}

// lineOf returns the line of the key at path, or 0.
func (d *decoder) lineOf(path string) int { return d.lines[path] }

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is an empty or null value.
func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// describe names the kind of a node for "expected X, got Y" messages.
// Scalars are quoted only when quote is set.
func describe(n *yaml.Node, quote bool) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing"
		}
		if quote {
			if n.Tag == "!!str" {
				return strconv.Quote(short(n.Value))
			}
			return short(n.Value)
		}
		switch n.Tag {
		case "!!int", "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		}
		return "a string"
	}
	return "an unsupported YAML node"
}

// pair is a key and its value in a mapping.
type pair struct {
	key, value *yaml.Node
}

// pairs returns the key/value pairs of mapping n, explicit keys first and
// then those brought in by merge keys ("<<: *anchor") that are not set
// explicitly.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	return d.collectPairs(n, path, map[*yaml.Node]bool{})
}

// collectPairs does the work of pairs. Each mapping is merged at most once:
// merging it again would add nothing, and nested merges could otherwise
// take exponential time.
func (d *decoder) collectPairs(n *yaml.Node, path string, visited map[*yaml.Node]bool) []pair {
	visited[n] = true
	var explicit, merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
			v = resolve(v)
			srcs := []*yaml.Node{v}
			if v.Kind == yaml.SequenceNode {
				srcs = v.Content
			}
			for _, s := range srcs {
				s = resolve(s)
				if s.Kind != yaml.MappingNode {
					d.fail(path, k.Line, "a merge key (<<) must refer to a mapping or a list of mappings, got %s", describe(s, false))
					continue
				}
				if !visited[s] {
					merged = append(merged, d.collectPairs(s, path, visited)...)
				}
			}
			continue
		}
		explicit = append(explicit, pair{k, v})
	}
	if len(merged) == 0 {
		return explicit
	}
	set := map[string]bool{}
	for _, p := range explicit {
		set[p.key.Value] = true
	}
	out := explicit
	for _, p := range merged {
		if !set[p.key.Value] {
			set[p.key.Value] = true
			out = append(out, p)
		}
	}
	return out
}

// mapping decodes mapping n at path against fields. A null value is an
// empty mapping. It reports unknown and duplicate keys.
func (d *decoder) mapping(n *yaml.Node, path string, fields []field) {
	n = resolve(n)
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.fail(path, n.Line, "expected a mapping of keys (%s), got %s", knownKeys(fields), describe(n, false))
		return
	}
	seen := map[string]int{}
	var suggested []string
	for _, p := range d.pairs(n, path) {
		k := resolve(p.key)
		if k.Kind != yaml.ScalarNode {
			d.fail(path, k.Line, "a key must be a plain string, got %s", describe(k, false))
			continue
		}
		kp := join(path, k.Value)
		if first, dup := seen[k.Value]; dup {
			d.fail(kp, k.Line, "duplicate key; it is already set at line %d: remove one of them", first)
			continue
		}
		seen[k.Value] = k.Line
		f, ok := findField(fields, k.Value)
		if !ok {
			msg := "unknown key; known keys: " + knownKeys(fields)
			if s := suggest(k.Value, fields); s != "" {
				msg = fmt.Sprintf("unknown key (did you mean %s?); known keys: %s", s, knownKeys(fields))
				suggested = append(suggested, s)
			}
			d.fail(kp, k.Line, "%s", msg)
			continue
		}
		d.lines[kp] = k.Line
		f.decode(resolve(p.value), kp)
	}
	// "did you mean external_id?" already says what "external_id: required"
	// would.
	for _, s := range suggested {
		if _, ok := seen[s]; !ok {
			d.failed = append(d.failed, join(path, s))
		}
	}
}

// findField returns the field named key.
func findField(fields []field, key string) (field, bool) {
	for _, f := range fields {
		if f.key == key {
			return f, true
		}
	}
	return field{}, false
}

// knownKeys lists the keys of fields, comma-separated.
func knownKeys(fields []field) string {
	keys := make([]string, len(fields))
	for i, f := range fields {
		keys[i] = f.key
	}
	return strings.Join(keys, ", ")
}

// suggest returns the known key closest to an unknown one, if it is close
// enough to be a typo.
func suggest(key string, fields []field) string {
	best, bestDist := "", 3
	lk := strings.ToLower(strings.ReplaceAll(key, "-", "_"))
	for _, f := range fields {
		if dist := editDistance(lk, f.key); dist < bestDist {
			best, bestDist = f.key, dist
		}
	}
	if bestDist > len(key)/3 && bestDist > 0 {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// scalar returns the expanded text of scalar n at path. A null value is "".
// secret marks values that must never be quoted in a message.
func (d *decoder) scalar(n *yaml.Node, path, want string, secret bool) (string, bool) {
	if isNull(n) {
		return "", true
	}
	if n.Kind != yaml.ScalarNode {
		d.fail(path, n.Line, "expected %s, got %s", want, describe(n, false))
		return "", false
	}
	s, vars, err := expand(n.Value, d.lookup, !secret)
	if len(vars) > 0 {
		d.vars[path] = vars
	}
	if err != nil {
		d.fail(path, n.Line, "%v", err)
		return "", false
	}
	return s, true
}

// str decodes a string value into dst.
func (d *decoder) str(dst *string, secret bool) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if s, ok := d.scalar(n, path, "a string", secret); ok {
			*dst = s
		}
	}
}

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

// integer decodes an integer value into dst.
func (d *decoder) integer(dst *int) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if isNull(n) {
			d.fail(path, n.Line, "expected an integer, got nothing; remove the key to use the default")
			return
		}
		s, ok := d.scalar(n, path, "an integer", false)
		if !ok {
			return
		}
		v, err := strconv.ParseInt(strings.ReplaceAll(strings.TrimSpace(s), "_", ""), 0, 0)
		if err != nil {
			if errors.Is(err, strconv.ErrRange) {
				d.fail(path, n.Line, "integer %s is out of range", short(s))
				return
			}
			d.fail(path, n.Line, "expected an integer, got %q", short(s))
			return
		}
		*dst = int(v)
	}
}

// duration decodes a Go duration string into dst.
func (d *decoder) duration(dst *time.Duration) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if isNull(n) {
			d.fail(path, n.Line, `expected a duration like "30s", got nothing; remove the key to use the default`)
			return
		}
		s, ok := d.scalar(n, path, "a duration", false)
		if !ok {
			return
		}
		v, ok := parseDuration(s)
		if !ok {
			d.fail(path, n.Line, "%s", durationError(s))
			return
		}
		*dst = v
	}
}

// size decodes a byte size into dst.
func (d *decoder) size(dst *int64) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if isNull(n) {
			d.fail(path, n.Line, `expected a size like "64MiB", got nothing; remove the key to use the default`)
			return
		}
		s, ok := d.scalar(n, path, "a size", false)
		if !ok {
			return
		}
		v, err := parseSize(s)
		if err != nil {
			d.fail(path, n.Line, "%v", err)
			return
		}
		*dst = v
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

// boolean decodes true or false into dst.
func (d *decoder) boolean(dst *bool) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if isNull(n) {
			d.fail(path, n.Line, "expected true or false, got nothing; remove the key to use the default (false)")
			return
		}
		s, ok := d.scalar(n, path, "true or false", false)
		if !ok {
			return
		}
		switch strings.ToLower(strings.TrimSpace(s)) {
		case "true":
			*dst = true
		case "false":
			*dst = false
		default:
			d.fail(path, n.Line, "expected true or false, got %q", short(s))
		}
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

// list decodes a non-empty YAML list of non-empty strings into dst; what
// names an item, example shows a list, ifEmpty says what to do about an
// empty list.
func (d *decoder) list(dst *[]string, what, example, ifEmpty string) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		if n.Kind != yaml.SequenceNode {
			d.fail(path, n.Line, "expected a list like %s, got %s", example, describe(n, false))
			return
		}
		if len(n.Content) == 0 {
			d.fail(path, n.Line, "empty list; %s", ifEmpty)
			return
		}
		*dst = []string{}
		for i, item := range n.Content {
			ip := index(path, i)
			item = resolve(item)
			d.lines[ip] = item.Line
			s, ok := d.scalar(item, ip, what, false)
			if !ok {
				continue
			}
			if s == "" {
				d.fail(ip, item.Line, "empty value; remove the item")
				continue
			}
			*dst = append(*dst, s)
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

// finish fills in lines of validation problems, notes the environment
// variables a bad value came from, sorts the problems and scrubs secrets
// from every message.
func (d *decoder) finish() {
	list := d.probs.list
	for i := range list {
		p := &list[i]
		if p.Line == 0 {
			p.Line = d.lines[p.Path]
		}
		if vars := d.vars[p.Path]; len(vars) > 0 && !strings.Contains(p.Msg, "environment variable") {
			p.Msg += fmt.Sprintf(" (the value comes from ${%s})", strings.Join(vars, "}, ${"))
		}
	}
	sortProblems(list, d.lineOf)
	for i := range list {
		list[i].Msg = d.scrub(list[i].Msg)
	}
	for i := range d.warnings {
		d.warnings[i] = d.scrub(d.warnings[i])
	}
}

// minSecretLen is the shortest secret scrubbed from messages; shorter ones
// would match ordinary words.
const minSecretLen = 4

// scrub replaces every known secret in msg with REDACTED. Messages are
// written not to contain secrets; this is the safety net.
func (d *decoder) scrub(msg string) string {
	for _, s := range d.secrets {
		if len(s) >= minSecretLen {
			msg = strings.ReplaceAll(msg, s, redacted)
		}
	}
	return msg
}
