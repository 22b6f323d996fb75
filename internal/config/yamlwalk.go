package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

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

// present is scalar for a value that may not be null (what, e.g. "an
// integer", and like, e.g. ` like "30s"`, word the error).
func (d *decoder) present(n *yaml.Node, path, what, like string) (string, bool) {
	if isNull(n) {
		d.fail(path, n.Line, "expected %s%s, got nothing; remove the key to use the default", what, like)
		return "", false
	}
	return d.scalar(n, path, what, false)
}

// integer decodes an integer value into dst.
func (d *decoder) integer(dst *int) func(*yaml.Node, string) {
	return func(n *yaml.Node, path string) {
		s, ok := d.present(n, path, "an integer", "")
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
		s, ok := d.present(n, path, "a duration", ` like "30s"`)
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
		s, ok := d.present(n, path, "a size", ` like "64MiB"`)
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
