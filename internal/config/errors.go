package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Problem is one thing wrong with a configuration.
type Problem struct {
	// Path is the key as a dotted path, e.g. "tables[1].external_id" or
	// "onesignal.app_id"; "" means the file as a whole.
	Path string
	// Line is the 1-based line in the YAML file, 0 when unknown (a missing
	// key, or a Config built in Go).
	Line int
	// Msg says what is wrong and how to fix it. It never contains a secret.
	Msg string
}

// Error formats the problem as "path (line N): message".
func (p Problem) Error() string {
	var b strings.Builder
	switch {
	case p.Path != "" && p.Line > 0:
		fmt.Fprintf(&b, "%s (line %d): ", p.Path, p.Line)
	case p.Path != "":
		b.WriteString(p.Path + ": ")
	case p.Line > 0:
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	b.WriteString(p.Msg)
	return b.String()
}

// ValidationError is returned by Load, Parse and Validate. It lists every
// problem found, in file order where it is known.
type ValidationError struct {
	// Problems holds at least one problem.
	Problems []Problem
}

// Error lists the problems, one per line after the first when there are
// several.
func (e *ValidationError) Error() string {
	if len(e.Problems) == 1 {
		return "invalid configuration: " + e.Problems[0].Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "invalid configuration: %d problems:", len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  - " + p.Error())
	}
	return b.String()
}

// Unwrap returns the problems as errors, for errors.Is and errors.As.
func (e *ValidationError) Unwrap() []error {
	errs := make([]error, len(e.Problems))
	for i, p := range e.Problems {
		errs[i] = p
	}
	return errs
}

// problems collects Problems while a configuration is checked.
type problems struct {
	list []Problem
}

// add records a problem at path; line may be 0.
func (ps *problems) add(path string, line int, format string, args ...any) {
	ps.list = append(ps.list, Problem{Path: path, Line: line, Msg: fmt.Sprintf(format, args...)})
}

// err returns the collected problems as a *ValidationError, or nil.
func (ps *problems) err() error {
	if len(ps.list) == 0 {
		return nil
	}
	return &ValidationError{Problems: ps.list}
}

// sortProblems orders problems by file position. A problem without a line
// (typically a missing key) sorts at the line of its nearest ancestor that
// has one, e.g. "source.dsn: required" at the `source:` line; ties keep their
// order of discovery, which follows the order of the keys in the schema.
func sortProblems(list []Problem, lineOf func(path string) int) {
	key := make([]int, len(list))
	for i, p := range list {
		key[i] = p.Line
		for path := p.Path; key[i] == 0 && path != ""; {
			path = parentPath(path)
			key[i] = lineOf(path)
		}
	}
	idx := make([]int, len(list))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return key[idx[a]] < key[idx[b]] })
	sorted := make([]Problem, len(list))
	for i, j := range idx {
		sorted[i] = list[j]
	}
	copy(list, sorted)
}

// parentPath returns the path of the key containing path: "a.b[2]" for
// "a.b[2].c", "a.b" for "a.b[2]", "" for "a".
func parentPath(path string) string {
	if strings.HasSuffix(path, "]") {
		if i := strings.LastIndexByte(path, '['); i >= 0 {
			return path[:i]
		}
	}
	if i := strings.LastIndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return ""
}

// within reports whether path is base or a key inside it.
func within(path, base string) bool {
	if base == "" || path == base {
		return true
	}
	return strings.HasPrefix(path, base) && (path[len(base)] == '.' || path[len(base)] == '[')
}

// join builds "base.key", or "key" at the root.
func join(base, key string) string {
	if base == "" {
		return key
	}
	return base + "." + key
}

// index builds "base[i]".
func index(base string, i int) string { return base + "[" + strconv.Itoa(i) + "]" }
