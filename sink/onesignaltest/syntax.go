package onesignaltest

import "unicode/utf8"

// bodyCheck is the verdict of checkBody on a request body.
type bodyCheck uint8

const (
	bodyOK      bodyCheck = iota // one JSON value, in UTF-8
	bodyNotJSON                  // json.Valid rejects it
	bodyNotUTF8                  // json.Valid accepts it, utf8.Valid does not
)

// maxNestingDepth is encoding/json's limit on arrays and objects open at
// once: json.Valid rejects a document that opens one more.
const maxNestingDepth = 10000

// checkBody checks b in one pass, without allocating, as
// json.Valid(b) && utf8.Valid(b) would in two: it returns bodyNotJSON
// exactly when json.Valid(b) is false, else bodyNotUTF8 exactly when
// utf8.Valid(b) is false, else bodyOK.
//
// The grammar is RFC 8259's as encoding/json implements it: one value with
// optional space (' ', '\t', '\n', '\r') around it; no more than
// maxNestingDepth arrays and objects open at once; \u escapes take any four
// hex digits (a lone surrogate passes). Outside strings a byte that is not
// ASCII is a syntax error, so only the bytes of strings are decoded as
// UTF-8. A string that is not UTF-8 is noted and the scan goes on: a syntax
// error after it still makes the verdict bodyNotJSON, as json.Valid is the
// first check.
func checkBody(b []byte) bodyCheck {
	var (
		isObject [maxNestingDepth/64 + 1]uint64 // bit d: the container at depth d is an object
		depth    int                            // containers open
		utf8OK   = true
		ok       bool
		i        int
	)
value:
	for {
		// A value starts at the first byte at or after b[i] that is not
		// space.
		i = skipSpace(b, i)
		if i >= len(b) {
			return bodyNotJSON
		}
		switch c := b[i]; c {
		case '{', '[':
			if depth == maxNestingDepth {
				return bodyNotJSON
			}
			if c == '{' {
				isObject[depth/64] |= 1 << (depth % 64)
			} else {
				isObject[depth/64] &^= 1 << (depth % 64)
			}
			depth++
			i = skipSpace(b, i+1)
			if i < len(b) && b[i] == c+2 { // '}' is '{'+2, ']' is '['+2
				depth--
				i++
				break // an empty container is a whole value
			}
			if c == '{' {
				if i, ok = checkKey(b, i); !ok {
					utf8OK = false
				}
				if i < 0 {
					return bodyNotJSON
				}
			}
			continue value // the first member's value or element
		case '"':
			if i, ok = checkString(b, i); !ok {
				utf8OK = false
			}
		case 't':
			i = checkLiteral(b, i, "true")
		case 'f':
			i = checkLiteral(b, i, "false")
		case 'n':
			i = checkLiteral(b, i, "null")
		default:
			i = checkNumber(b, i)
		}
		if i < 0 {
			return bodyNotJSON
		}
		// After a value: close the containers it ends, up to the next
		// value or the end of the body.
		for {
			i = skipSpace(b, i)
			if depth == 0 {
				switch {
				case i < len(b):
					return bodyNotJSON // something after the top-level value
				case !utf8OK:
					return bodyNotUTF8
				}
				return bodyOK
			}
			if i >= len(b) {
				return bodyNotJSON
			}
			object := isObject[(depth-1)/64]>>((depth-1)%64)&1 != 0
			switch c := b[i]; {
			case c == ',' && object:
				if i, ok = checkKey(b, skipSpace(b, i+1)); !ok {
					utf8OK = false
				}
				if i < 0 {
					return bodyNotJSON
				}
				continue value
			case c == ',':
				i++
				continue value
			case c == '}' && object, c == ']' && !object:
				depth--
				i++
			default:
				return bodyNotJSON
			}
		}
	}
}

// checkKey checks the member name starting at b[i] and the colon after it.
// It returns the offset past the colon, or -1 on a syntax error; ok is false
// when the name is not UTF-8.
func checkKey(b []byte, i int) (end int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return -1, true
	}
	i, ok = checkString(b, i)
	if i < 0 {
		return -1, ok
	}
	i = skipSpace(b, i)
	if i >= len(b) || b[i] != ':' {
		return -1, ok
	}
	return i + 1, ok
}

// plainByte marks the bytes that stand for themselves in a JSON string:
// ASCII from 0x20 (0x7f included) but the quote and the backslash.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// checkString checks the string starting at b[i] == '"'. It returns the
// offset past its closing quote, or -1 on a syntax error (a control
// character, a bad escape, no closing quote); ok is false when the string
// is not UTF-8, which is not a syntax error.
func checkString(b []byte, i int) (end int, ok bool) {
	ok = true
	i++
	for i < len(b) {
		c := b[i]
		if plainByte[c] {
			i++
			continue
		}
		switch {
		case c == '"':
			return i + 1, ok
		case c == '\\':
			if i+1 >= len(b) {
				return -1, ok
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) || !isHex(b[i+5]) {
					return -1, ok
				}
				i += 6
			default:
				return -1, ok
			}
		case c < 0x20:
			return -1, ok
		default: // not ASCII
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				// Not UTF-8 (json.Valid takes any byte from 0x80 in a
				// string): note it and go on byte by byte, so that a
				// quote or backslash after it keeps its meaning.
				ok = false
			}
			i += size
		}
	}
	return -1, ok
}

// isHex reports whether c is a hex digit, in either case.
func isHex(c byte) bool {
	_, ok := hexVal(c)
	return ok
}

// checkLiteral returns the offset past lit at b[i], or -1 when b[i:] does
// not start with it.
func checkLiteral(b []byte, i int, lit string) int {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// checkNumber returns the offset past the number
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at b[i], or -1 when there
// is none. What follows it is for the caller to check.
func checkNumber(b []byte, i int) int {
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && '1' <= b[i] && b[i] <= '9':
		i = skipDigits(b, i+1)
	default:
		return -1
	}
	if i < len(b) && b[i] == '.' {
		j := skipDigits(b, i+1)
		if j == i+1 {
			return -1
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := skipDigits(b, i)
		if j == i {
			return -1
		}
		i = j
	}
	return i
}

// skipDigits returns the offset of the first byte at or after b[i] that is
// not a decimal digit.
func skipDigits(b []byte, i int) int {
	for i < len(b) && '0' <= b[i] && b[i] <= '9' {
		i++
	}
	return i
}
