package onesignaltest

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// referenceCheck is what checkBody replaces: json.Valid, then utf8.Valid.
func referenceCheck(b []byte) bodyCheck {
	switch {
	case !json.Valid(b):
		return bodyNotJSON
	case !utf8.Valid(b):
		return bodyNotUTF8
	}
	return bodyOK
}

func (c bodyCheck) String() string {
	switch c {
	case bodyOK:
		return "ok"
	case bodyNotJSON:
		return "not JSON"
	case bodyNotUTF8:
		return "not UTF-8"
	}
	return fmt.Sprintf("bodyCheck(%d)", uint8(c))
}

// nest returns body inside n arrays, or inside n objects (each with one
// member "k") when object is set.
func nest(n int, object bool, body string) string {
	if object {
		return strings.Repeat(`{"k":`, n) + body + strings.Repeat(`}`, n)
	}
	return strings.Repeat(`[`, n) + body + strings.Repeat(`]`, n)
}

// checkBodyCases are the verdicts of json.Valid(b) && utf8.Valid(b) on
// bodies that probe each rule; they seed FuzzCheckBodyMatchesEncodingJSON.
var checkBodyCases = []struct {
	name string
	body string
	want bodyCheck
}{
	// Empty, space, top-level scalars.
	{"empty", ``, bodyNotJSON},
	{"space only", " \t\r\n", bodyNotJSON},
	{"space around", " \t\r\n{}\n\r\t ", bodyOK},
	{"form feed is not space", "\f1", bodyNotJSON},
	{"vertical tab is not space", "1\v", bodyNotJSON},
	{"no-break space is not space", "\u00a01", bodyNotJSON},
	{"byte order mark", "\ufeff{}", bodyNotJSON},
	{"NUL after value", "1\x00", bodyNotJSON},
	{"true", `true`, bodyOK},
	{"false", `false`, bodyOK},
	{"null", ` null `, bodyOK},
	{"string", `"s"`, bodyOK},
	{"True", `True`, bodyNotJSON},
	{"nul", `nul`, bodyNotJSON},
	{"nulll", `nulll`, bodyNotJSON},
	{"tru", `tru`, bodyNotJSON},
	{"fals", `fals`, bodyNotJSON},
	{"truefalse", `truefalse`, bodyNotJSON},
	{"literal then digit", `[true1]`, bodyNotJSON},

	// Numbers.
	{"0", `0`, bodyOK},
	{"-0", `-0`, bodyOK},
	{"-0.0e-0", `-0.0e-0`, bodyOK},
	{"01", `01`, bodyNotJSON},
	{"-01", `-01`, bodyNotJSON},
	{"00", `00`, bodyNotJSON},
	{"1.", `1.`, bodyNotJSON},
	{".5", `.5`, bodyNotJSON},
	{"-.5", `-.5`, bodyNotJSON},
	{"1e", `1e`, bodyNotJSON},
	{"1e+", `1e+`, bodyNotJSON},
	{"1e-", `1e-`, bodyNotJSON},
	{"1E-3", `1E-3`, bodyOK},
	{"1e+10", `1e+10`, bodyOK},
	{"1.5e10", `1.5e10`, bodyOK},
	{"12345678901234567890123", `12345678901234567890123`, bodyOK},
	{"1.e3", `1.e3`, bodyNotJSON},
	{"1e3.5", `1e3.5`, bodyNotJSON},
	{"1.0.0", `1.0.0`, bodyNotJSON},
	{"-", `-`, bodyNotJSON},
	{"--1", `--1`, bodyNotJSON},
	{"+1", `+1`, bodyNotJSON},
	{"0x1", `0x1`, bodyNotJSON},
	{"Infinity", `Infinity`, bodyNotJSON},
	{"NaN", `NaN`, bodyNotJSON},
	{"number then letter", `1a`, bodyNotJSON},
	{"minus in array", `[-]`, bodyNotJSON},
	{"01 in array", `[01]`, bodyNotJSON},
	{"numbers in array", `[0,-0,1.5,-2e-3,10]`, bodyOK},
	{"minus as member value", `{"a":-}`, bodyNotJSON},
	{"1. in object", `{"a":1.}`, bodyNotJSON},

	// Escapes.
	{`\"`, `"\""`, bodyOK},
	{`\\`, `"\\"`, bodyOK},
	{`\/`, `"\/"`, bodyOK},
	{`\b`, `"\b"`, bodyOK},
	{`\f`, `"\f"`, bodyOK},
	{`\n`, `"\n"`, bodyOK},
	{`\r`, `"\r"`, bodyOK},
	{`\t`, `"\t"`, bodyOK},
	{`every escape`, `"\"\\\/\b\f\n\r\t\u0041"`, bodyOK},
	{`\u lower hex`, `"\u00e9\uabcd"`, bodyOK},
	{`\u upper hex`, `"\u00E9\uABCD"`, bodyOK},
	{`\u lone surrogate`, `"\uD800"`, bodyOK},
	{`\u mixed case`, `"\uDeAd"`, bodyOK},
	{`\a`, `"\a"`, bodyNotJSON},
	{`\x41`, `"\x41"`, bodyNotJSON},
	{`\'`, `"\'"`, bodyNotJSON},
	{`\0`, `"\0"`, bodyNotJSON},
	{`\U`, `"\U0041"`, bodyNotJSON},
	{`\ space`, `"\ "`, bodyNotJSON},
	{`\u short`, `"\u12"`, bodyNotJSON},
	{`\u non-hex`, `"\u12G4"`, bodyNotJSON},
	{`\u non-hex last`, `"\u123g"`, bodyNotJSON},
	{`\u then quote`, `"\u"`, bodyNotJSON},
	{`\u truncated`, `"\u00`, bodyNotJSON},
	{`backslash at end`, `"\`, bodyNotJSON},
	{`escaped quote, no close`, `"\"`, bodyNotJSON},
	{`\\ then close`, `"\\"`, bodyOK},
	{`\ then non-ASCII`, "\"\\\u00e9\"", bodyNotJSON},
	{`escape in key`, `{"n\u0061me":1}`, bodyOK},
	{`bad escape in key`, `{"n\ame":1}`, bodyNotJSON},

	// Control characters and DEL.
	{"raw NUL", "\"\x00\"", bodyNotJSON},
	{"raw 0x1f", "\"\x1f\"", bodyNotJSON},
	{"raw tab", "\"\t\"", bodyNotJSON},
	{"raw newline", "\"a\nb\"", bodyNotJSON},
	{"raw DEL", "\"\x7f\"", bodyOK},
	{"raw control in key", "{\"\x01\":1}", bodyNotJSON},

	// UTF-8.
	{"two-byte", `"café"`, bodyOK},
	{"three-byte", `"€"`, bodyOK},
	{"four-byte", `"😀"`, bodyOK},
	{"U+2028", "\"\u2028\"", bodyOK},
	{"U+FFFD encoded", "\"\uFFFD\"", bodyOK},
	{"U+10FFFF", "\"\xf4\x8f\xbf\xbf\"", bodyOK},
	{"Latin-1 in string", "\"caf\xe9\"", bodyNotUTF8},
	{"0xff in string", "\"\xff\"", bodyNotUTF8},
	{"continuation alone", "\"\x80\"", bodyNotUTF8},
	{"lead then quote", "\"\xc3\"", bodyNotUTF8},
	{"lead then backslash escape", "\"\xc3\\\"\"", bodyNotUTF8},
	{"lead then control", "\"\xc3\x01\"", bodyNotJSON},
	{"truncated three-byte", "\"\xe2\x82\"", bodyNotUTF8},
	{"overlong slash", "\"\xc0\xaf\"", bodyNotUTF8},
	{"overlong NUL", "\"\xc0\x80\"", bodyNotUTF8},
	{"overlong three-byte", "\"\xe0\x80\xaf\"", bodyNotUTF8},
	{"overlong four-byte", "\"\xf0\x80\x80\xaf\"", bodyNotUTF8},
	{"surrogate D800", "\"\xed\xa0\x80\"", bodyNotUTF8},
	{"surrogate DFFF", "\"\xed\xbf\xbf\"", bodyNotUTF8},
	{"above U+10FFFF", "\"\xf4\x90\x80\x80\"", bodyNotUTF8},
	{"0xf5 lead", "\"\xf5\x80\x80\x80\"", bodyNotUTF8},
	{"not UTF-8 in key", "{\"\xff\":1}", bodyNotUTF8},
	{"not UTF-8 in nested string", "{\"a\":[1,{\"b\":\"\xe9\"}]}", bodyNotUTF8},
	{"not UTF-8 outside strings", "\xff", bodyNotJSON},
	{"not UTF-8 after value", "{}\xe9", bodyNotJSON},
	{"non-ASCII outside strings", "[\u00e9]", bodyNotJSON},
	{"not UTF-8, then syntax error", "[\"\xe9\",]", bodyNotJSON},
	{"not UTF-8, then trailing garbage", "\"\xe9\" x", bodyNotJSON},
	{"not UTF-8, then truncated", "[\"\xe9\"", bodyNotJSON},
	{"not UTF-8, unterminated", "\"\xe9", bodyNotJSON},

	// Truncated documents.
	{"open brace", `{`, bodyNotJSON},
	{"open bracket", `[`, bodyNotJSON},
	{"key only", `{"a"`, bodyNotJSON},
	{"key and colon", `{"a":`, bodyNotJSON},
	{"member, no close", `{"a":1`, bodyNotJSON},
	{"member and comma", `{"a":1,`, bodyNotJSON},
	{"element and comma", `[1,`, bodyNotJSON},
	{"unterminated string", `"abc`, bodyNotJSON},
	{"unterminated key", `{"abc`, bodyNotJSON},
	{"events, open", `{"events":[`, bodyNotJSON},
	{"lone quote", `"`, bodyNotJSON},

	// Structure and trailing garbage.
	{"empty object", `{}`, bodyOK},
	{"empty array", `[]`, bodyOK},
	{"empty containers with space", `{ "a" : [ ] , "b" : { } }`, bodyOK},
	{"trailing garbage", `{"events":[]} x`, bodyNotJSON},
	{"extra brace", `{}}`, bodyNotJSON},
	{"extra bracket", `[]]`, bodyNotJSON},
	{"two values", `1 1`, bodyNotJSON},
	{"two objects", `{}{}`, bodyNotJSON},
	{"trailing comma at top", `null,`, bodyNotJSON},
	{"two strings", `"a""b"`, bodyNotJSON},
	{"mismatched close", `[}`, bodyNotJSON},
	{"mismatched close, object", `{"a":1]`, bodyNotJSON},
	{"mismatched nested", `[{]}`, bodyNotJSON},
	{"no colon", `{"a" 1}`, bodyNotJSON},
	{"double colon", `{"a"::1}`, bodyNotJSON},
	{"bare key", `{a:1}`, bodyNotJSON},
	{"number key", `{1:2}`, bodyNotJSON},
	{"trailing comma, object", `{"a":1,}`, bodyNotJSON},
	{"trailing comma, array", `[1,]`, bodyNotJSON},
	{"leading comma, object", `{,}`, bodyNotJSON},
	{"leading comma, array", `[,1]`, bodyNotJSON},
	{"missing comma, object", `{"a":1 "b":2}`, bodyNotJSON},
	{"missing comma, array", `[1 2]`, bodyNotJSON},
	{"colon in array", `[1:2]`, bodyNotJSON},
	{"comma then close", `{"a":1, }`, bodyNotJSON},
	{"close as value", `{"a":}`, bodyNotJSON},
	{"repeated key", `{"a":1,"a":2}`, bodyOK},
	{"events body", `{"events":[{"name":"a\"b\\","external_id":"u","properties":{"x":[1,{"y":"}]"}],"z":null}}]}`, bodyOK},
	{"bench body", benchBody(2, func() int { return 7 }), bodyOK},

	// Nesting: encoding/json allows 10000 arrays and objects open at once.
	{"10000 arrays", nest(10000, false, ``), bodyOK},
	{"10001 arrays", nest(10001, false, ``), bodyNotJSON},
	{"10000 objects", nest(10000, true, `1`), bodyOK},
	{"10001 objects", nest(10001, true, `1`), bodyNotJSON},
	{"10000 mixed", nest(5000, true, nest(5000, false, ``)), bodyOK},
	{"10001 mixed", nest(5000, true, nest(5001, false, ``)), bodyNotJSON},
	{"alternating", strings.Repeat(`[{"a":`, 5000) + `1` + strings.Repeat(`}]`, 5000), bodyOK},
	{"alternating, wrong close", strings.Repeat(`[{"a":`, 100) + `1` + strings.Repeat(`]}`, 100), bodyNotJSON},
	{"10000 arrays, not UTF-8", nest(10000, false, "\"\xe9\""), bodyNotUTF8},
	{"10001 arrays, not UTF-8", nest(10001, false, "\"\xe9\""), bodyNotJSON},
	{"10001 open arrays, unclosed", strings.Repeat(`[`, 10001), bodyNotJSON},
	{"depth goes back down", nest(10000, false, ``) + `x`, bodyNotJSON},
	{"10000 deep twice", `[` + nest(9999, false, ``) + `,` + nest(9999, false, ``) + `]`, bodyOK},
	{"object at depth 64", nest(63, false, `{"a":[{"b":1}]}`), bodyOK},
	{"array in object at depth 64", nest(63, true, `[1,2]`), bodyOK},
}

func TestCheckBody(t *testing.T) {
	for _, tt := range checkBodyCases {
		t.Run(tt.name, func(t *testing.T) {
			b := []byte(tt.body)
			if ref := referenceCheck(b); ref != tt.want {
				t.Fatalf("json.Valid/utf8.Valid say %v, the table %v: fix the table", ref, tt.want)
			}
			if got := checkBody(b); got != tt.want {
				t.Errorf("checkBody(%.60q) = %v, want %v", tt.body, got, tt.want)
			}
		})
	}
}

// TestCheckBodyDoesNotAllocate checks the promise of one pass without
// allocation, on a realistic body and on the deepest one allowed.
func TestCheckBodyDoesNotAllocate(t *testing.T) {
	for _, body := range []string{
		benchBody(500, func() int { return 1 }),
		nest(maxNestingDepth, true, "\"\xe9\""),
	} {
		b := []byte(body)
		if n := testing.AllocsPerRun(10, func() { checkBody(b) }); n != 0 {
			t.Errorf("checkBody allocates %v times on a %d-byte body", n, len(b))
		}
	}
}

// TestParseBodyAnswers checks that a body that is neither JSON nor UTF-8
// gets the syntax error, as when json.Valid was the first check, and that
// the syntax error is encoding/json's.
func TestParseBodyAnswers(t *testing.T) {
	for _, tt := range []struct {
		body string
		want []string
	}{
		{"{\"events\":[\"\xe9\"]}", []string{"request body is not valid UTF-8"}},
		{"{\"events\":[\"\xe9\"]} x", []string{"request body is not valid JSON: invalid character 'x' after top-level value"}},
		{"{\"events\":[\"\xe9\"", []string{"request body is not valid JSON: unexpected end of JSON input"}},
		{"\xe9", []string{"request body is not valid JSON: invalid character 'é' looking for beginning of value"}},
		{`{"events":[01]}`, []string{"request body is not valid JSON: invalid character '1' after array element"}},
		{nest(10001, false, ``), []string{"request body is not valid JSON: invalid character '[' exceeded max depth"}},
	} {
		if _, got := parseBody([]byte(tt.body)); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parseBody(%.40q) = %q, want %q", tt.body, got, tt.want)
		}
	}
}

// FuzzCheckBodyMatchesEncodingJSON checks that checkBody's verdict is
// always json.Valid's, then utf8.Valid's.
func FuzzCheckBodyMatchesEncodingJSON(f *testing.F) {
	for _, tt := range checkBodyCases {
		f.Add([]byte(tt.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if got, want := checkBody(body), referenceCheck(body); got != want {
			t.Fatalf("checkBody(%q) = %v, json.Valid/utf8.Valid say %v", body, got, want)
		}
	})
}

// BenchmarkCheckBody compares checkBody with the two passes it replaces on
// a 500-event body.
func BenchmarkCheckBody(b *testing.B) {
	body := []byte(benchBody(500, func() int { return 1 }))
	for _, bm := range []struct {
		name  string
		check func([]byte) bodyCheck
	}{
		{"checkBody", checkBody},
		{"json.Valid+utf8.Valid", referenceCheck},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if bm.check(body) != bodyOK {
					b.Fatal("body rejected")
				}
			}
		})
	}
}
