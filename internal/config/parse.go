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
