package onesignaltest

import "bytes"

// The functions below walk JSON that checkBody accepted (as json.Valid
// would): they only find where values start and end, and do not check syntax
// again. Offsets point at the first byte of a value (no leading space).

// skipSpace returns the offset of the first non-space byte of b at or after
// i.
func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipString returns the offset just past the string starting at b[i] == '"'.
func skipString(b []byte, i int) int {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		i += j
		// The quote ends the string unless an odd number of backslashes
		// escapes it; the opening quote bounds the count.
		n := 0
		for k := i - 1; b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return i + 1
		}
		i++
	}
}

// skipValue returns the offset just past the value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	default: // number, true, false, null
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return i
			}
			i++
		}
		return i
	}
}

// eachMember calls fn with the raw key (quoted) and raw value of each member
// of the object starting at b[i] == '{', in order.
func eachMember(b []byte, i int, fn func(key, value []byte)) {
	i = skipSpace(b, i+1)
	if b[i] == '}' {
		return
	}
	for {
		keyEnd := skipString(b, i)
		key := b[i:keyEnd]
		i = skipSpace(b, keyEnd)
		i = skipSpace(b, i+1) // past ':'
		end := skipValue(b, i)
		fn(key, b[i:end])
		i = skipSpace(b, end)
		if b[i] != ',' {
			return // '}'
		}
		i = skipSpace(b, i+1)
	}
}

// eachElement calls fn with each raw element of the array b, in order.
func eachElement(b []byte, fn func(raw []byte)) {
	i := skipSpace(b, 1)
	if b[i] == ']' {
		return
	}
	for {
		end := skipValue(b, i)
		fn(b[i:end])
		i = skipSpace(b, end)
		if b[i] != ',' {
			return // ']'
		}
		i = skipSpace(b, i+1)
	}
}

// keyText returns the text of the raw JSON string key. It aliases key unless
// the key has escapes.
func keyText(key []byte) []byte {
	inner := key[1 : len(key)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return inner
	}
	s, _ := decodeString(key)
	return []byte(s)
}
