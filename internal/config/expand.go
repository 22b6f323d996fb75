package config

import (
	"fmt"
	"strings"
)

// expandError is a problem in a value's ${...} references. Its message never
// quotes the value, which may be a secret.
type expandError struct {
	msg string
}

func (e *expandError) Error() string { return e.msg }

// expand replaces "${VAR}" and "${VAR:-default}" in s with values from
// lookup; "$$" is a literal "$" and any other "$" is kept as it is. As in the
// shell, the default is used when VAR is unset or empty. It returns the
// names of the variables referenced. Every unset variable without a default
// is reported in one error. quote says whether the error may quote an
// invalid reference (false for values that may be secrets).
func expand(s string, lookup func(string) (string, bool), quote bool) (string, []string, error) {
	if !strings.Contains(s, "$") {
		return s, nil, nil
	}
	var (
		b       strings.Builder
		vars    []string
		missing []string
	)
	for i := 0; i < len(s); {
		c := s[i]
		if c != '$' || i+1 == len(s) {
			b.WriteByte(c)
			i++
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i += 2
			continue
		case '{':
		default:
			b.WriteByte('$')
			i++
			continue
		}
		end := strings.IndexByte(s[i+2:], '}')
		if end < 0 {
			return "", nil, &expandError{`unterminated "${": close the reference with "}", or write "$$" for a literal "$"`}
		}
		ref := s[i+2 : i+2+end] // between "${" and "}"
		name, def, hasDef := ref, "", false
		if k := strings.Index(ref, ":-"); k >= 0 {
			name, def, hasDef = ref[:k], ref[k+2:], true
		}
		if !validVarName(name) {
			detail := ""
			if quote {
				detail = fmt.Sprintf(" %q", "${"+ref+"}")
			}
			return "", nil, &expandError{fmt.Sprintf(`invalid environment variable reference%s: write ${NAME} or ${NAME:-default}, where NAME is letters, digits and underscores not starting with a digit; write "$$" for a literal "$"`, detail)}
		}
		if strings.Contains(def, "${") {
			return "", nil, &expandError{fmt.Sprintf("nested ${...} in the default of ${%s:-...} is not supported", name)}
		}
		vars = append(vars, name)
		v, ok := lookup(name)
		switch {
		case ok && v != "":
			b.WriteString(v)
		case hasDef:
			b.WriteString(def)
		case ok:
			// Set but empty, and no default: empty, like the shell.
		default:
			missing = append(missing, name)
		}
		i += 2 + end + 1
	}
	switch len(missing) {
	case 0:
		return b.String(), vars, nil
	case 1:
		n := missing[0]
		return "", vars, &expandError{fmt.Sprintf("environment variable %s is not set; export it, or give a default with ${%s:-default}", n, n)}
	default:
		return "", vars, &expandError{fmt.Sprintf("environment variables %s are not set; export them, or give defaults with ${NAME:-default}", strings.Join(missing, ", "))}
	}
}

// validVarName reports whether s is a shell-style variable name.
func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '_', 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}
