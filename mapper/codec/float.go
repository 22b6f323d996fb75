package codec

import (
	"strconv"
)

// Servers before PostgreSQL 12 print float4 and float8 with
// extra_float_digits = 3 as %.9g and %.17g (0.1::float8 is
// 0.100000000000000006); from 12 on any positive extra_float_digits gives
// the shortest text that reads back as the same value (0.1). Both read
// back as the same binary value, but an event should not carry 17 digits
// from an old server where a new one sends 0.1.

// shortestFloatMin is the number of significant digits above which a
// float's text is rewritten: PostgreSQL 12+ prints at most 17 for a float8
// (< 12: 18 with extra_float_digits = 3), so a float8 text of 12+ is kept
// byte for byte; a float4 has at most 9 either way, and 12+'s own text of
// 7 to 9 digits reads back to itself.
var shortestFloatMin = map[int]int{32: 6, 64: 17}

// appendShortestFloat appends the JSON number text, a float4 (bits 32) or
// float8 (bits 64) as PostgreSQL prints it, in PostgreSQL 12's shortest
// form when it has more significant digits than that form could need, or
// is written out in full where that form has an exponent. It
// returns false when text is not a finite number.
func appendShortestFloat(dst, text []byte, bits int) ([]byte, bool) {
	if !isJSONNumber(text) {
		return dst, false
	}
	limit := 15 // PostgreSQL 12+ prints a decimal exponent from here on as e+XX
	if bits == 32 {
		limit = 6
	}
	if significantDigits(text) <= shortestFloatMin[bits] && integerDigits(text) <= limit {
		return append(dst, text...), true
	}
	f, err := strconv.ParseFloat(string(text), bits)
	if err != nil {
		return append(dst, text...), true
	}
	// PostgreSQL 12+ (float8out, float4out) prints the shortest digits in
	// fixed notation when the decimal exponent is in [-4, 15) for a float8,
	// [-4, 6) for a float4, else as d.ddde+XX with at least two exponent
	// digits: Go's 'e' form.
	e := strconv.AppendFloat(nil, f, 'e', -1, bits)
	exp := 0
	for i := len(e) - 1; i >= 0; i-- {
		if e[i] == 'e' {
			exp, _ = strconv.Atoi(string(e[i+1:]))
			break
		}
	}
	if exp < -4 || exp >= limit {
		return append(dst, e...), true
	}
	return strconv.AppendFloat(dst, f, 'f', -1, bits), true
}

// significantDigits counts the digits of a number's mantissa, leading zeros
// left out.
func significantDigits(text []byte) int {
	n, lead := 0, true
	for _, c := range text {
		switch {
		case c == 'e' || c == 'E':
			return n
		case c == '0' && lead:
		case c >= '0' && c <= '9':
			lead = false
			n++
		}
	}
	return n
}

// integerDigits counts the digits before the decimal point of a number in
// fixed notation, leading zeros left out (0 for a number with an exponent).
func integerDigits(text []byte) int {
	n := 0
	for _, c := range text {
		switch {
		case c == 'e' || c == 'E':
			return 0
		case c == '.':
			return n
		case c == '0' && n == 0:
		case c >= '0' && c <= '9':
			n++
		}
	}
	return n
}
