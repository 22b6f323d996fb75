package codec

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgtype"
)

func TestAppendJSON(t *testing.T) {
	const unknownOID = 987654 // an enum, a domain, an extension type...
	tests := []struct {
		name string
		oid  uint32
		text string
		want string
	}{
		// bool
		{"bool true", pgtype.BoolOID, "t", `true`},
		{"bool false", pgtype.BoolOID, "f", `false`},
		{"bool spelled out", pgtype.BoolOID, "true", `"true"`},
		{"bool empty", pgtype.BoolOID, "", `""`},
		// integers
		{"int2 min", pgtype.Int2OID, "-32768", `-32768`},
		{"int4", pgtype.Int4OID, "42", `42`},
		{"int4 zero", pgtype.Int4OID, "0", `0`},
		{"int8 max", pgtype.Int8OID, "9223372036854775807", `9223372036854775807`},
		{"int8 min", pgtype.Int8OID, "-9223372036854775808", `-9223372036854775808`},
		{"oid", pgtype.OIDOID, "4294967295", `4294967295`},
		{"int4 not a number", pgtype.Int4OID, "12a", `"12a"`},
		{"int4 leading zero", pgtype.Int4OID, "012", `"012"`},
		{"int4 plus sign", pgtype.Int4OID, "+1", `"+1"`},
		{"int4 empty", pgtype.Int4OID, "", `""`},
		{"int4 minus only", pgtype.Int4OID, "-", `"-"`},
		// floats
		{"float4", pgtype.Float4OID, "1.5", `1.5`},
		{"float8 shortest", pgtype.Float8OID, "0.1", `0.1`},
		{"float8 exponent", pgtype.Float8OID, "1e+20", `1e+20`},
		{"float8 negative exponent", pgtype.Float8OID, "1.2345678901234567e-300", `1.2345678901234567e-300`},
		{"float8 upper-case exponent", pgtype.Float8OID, "2E-5", `2E-5`},
		{"float8 negative zero", pgtype.Float8OID, "-0", `-0`},
		{"float8 NaN", pgtype.Float8OID, "NaN", `"NaN"`},
		{"float8 Infinity", pgtype.Float8OID, "Infinity", `"Infinity"`},
		{"float8 -Infinity", pgtype.Float8OID, "-Infinity", `"-Infinity"`},
		{"float4 NaN", pgtype.Float4OID, "NaN", `"NaN"`},
		{"float8 trailing dot", pgtype.Float8OID, "1.", `"1."`},
		{"float8 leading dot", pgtype.Float8OID, ".5", `".5"`},
		{"float8 bare exponent", pgtype.Float8OID, "1e", `"1e"`},
		// numeric keeps every digit
		{"numeric exact", pgtype.NumericOID, "123456789012345678901234567890.000000000000000000001", `123456789012345678901234567890.000000000000000000001`},
		{"numeric trailing zeros", pgtype.NumericOID, "24.990", `24.990`},
		{"numeric negative", pgtype.NumericOID, "-0.000001", `-0.000001`},
		{"numeric NaN", pgtype.NumericOID, "NaN", `"NaN"`},
		{"numeric Infinity", pgtype.NumericOID, "Infinity", `"Infinity"`},
		{"numeric -Infinity", pgtype.NumericOID, "-Infinity", `"-Infinity"`},
		// json and jsonb are embedded as they are
		{"json object with white space", pgtype.JSONOID, `{"a" : [1, 2]}`, `{"a" : [1, 2]}`},
		{"jsonb object", pgtype.JSONBOID, `{"a": 1, "b": null}`, `{"a": 1, "b": null}`},
		{"jsonb string", pgtype.JSONBOID, `"str"`, `"str"`},
		{"jsonb number", pgtype.JSONBOID, `12.5`, `12.5`},
		{"json null", pgtype.JSONOID, `null`, `null`},
		// timestamptz becomes RFC 3339 in UTC
		{"timestamptz +00", pgtype.TimestamptzOID, "2024-01-02 03:04:05+00", `"2024-01-02T03:04:05Z"`},
		{"timestamptz fraction", pgtype.TimestamptzOID, "2024-01-02 03:04:05.123456+00", `"2024-01-02T03:04:05.123456Z"`},
		{"timestamptz trailing zeros dropped", pgtype.TimestamptzOID, "2024-01-02 03:04:05.5+00", `"2024-01-02T03:04:05.5Z"`},
		{"timestamptz +05:30", pgtype.TimestamptzOID, "2024-01-02 08:34:05+05:30", `"2024-01-02T03:04:05Z"`},
		{"timestamptz -08", pgtype.TimestamptzOID, "2024-01-02 03:04:05-08", `"2024-01-02T11:04:05Z"`},
		{"timestamptz crosses a day", pgtype.TimestamptzOID, "2024-01-01 23:30:00-01", `"2024-01-02T00:30:00Z"`},
		{"timestamptz LMT seconds offset", pgtype.TimestamptzOID, "1900-01-01 00:00:00+00:53:28", `"1899-12-31T23:06:32Z"`},
		{"timestamptz fraction and offset", pgtype.TimestamptzOID, "2024-06-30 23:59:59.999999+05:30", `"2024-06-30T18:29:59.999999Z"`},
		{"timestamptz infinity", pgtype.TimestamptzOID, "infinity", `"infinity"`},
		{"timestamptz -infinity", pgtype.TimestamptzOID, "-infinity", `"-infinity"`},
		{"timestamptz BC", pgtype.TimestamptzOID, "0044-03-15 12:00:00+00 BC", `"0044-03-15 12:00:00+00 BC"`},
		{"timestamptz year 10000", pgtype.TimestamptzOID, "10000-01-01 00:00:00+00", `"10000-01-01 00:00:00+00"`},
		// timestamp keeps its wall clock, without a zone
		{"timestamp", pgtype.TimestampOID, "2024-01-02 03:04:05", `"2024-01-02T03:04:05"`},
		{"timestamp fraction", pgtype.TimestampOID, "2024-01-02 03:04:05.123", `"2024-01-02T03:04:05.123"`},
		{"timestamp infinity", pgtype.TimestampOID, "infinity", `"infinity"`},
		{"timestamp short", pgtype.TimestampOID, "2024-01-02", `"2024-01-02"`},
		// date, time, interval, uuid, text... are strings
		{"date", pgtype.DateOID, "2024-01-02", `"2024-01-02"`},
		{"date infinity", pgtype.DateOID, "infinity", `"infinity"`},
		{"time", pgtype.TimeOID, "03:04:05", `"03:04:05"`},
		{"interval", pgtype.IntervalOID, "1 day 02:00:00", `"1 day 02:00:00"`},
		{"uuid", pgtype.UUIDOID, "123e4567-e89b-12d3-a456-426614174000", `"123e4567-e89b-12d3-a456-426614174000"`},
		{"text", pgtype.TextOID, `say "hi"\n`, `"say \"hi\"\\n"`},
		{"text empty", pgtype.TextOID, "", `""`},
		{"varchar with newline", pgtype.VarcharOID, "a\nb", `"a\nb"`},
		{"text that looks like an array", pgtype.TextOID, "{1,2}", `"{1,2}"`},
		{"unknown OID", unknownOID, "gold", `"gold"`},
		{"unknown OID braces", unknownOID, "{a,b}", `"{a,b}"`},
		// bytea (hex output) becomes base64
		{"bytea", pgtype.ByteaOID, `\x48656c6c6f`, `"SGVsbG8="`},
		{"bytea upper-case hex", pgtype.ByteaOID, `\xDEADBEEF`, `"3q2+7w=="`},
		{"bytea empty", pgtype.ByteaOID, `\x`, `""`},
		{"bytea odd hex", pgtype.ByteaOID, `\x123`, `"\\x123"`},
		{"bytea bad hex", pgtype.ByteaOID, `\xzz`, `"\\xzz"`},
		{"bytea escape format", pgtype.ByteaOID, `abc\000`, `"abc\\000"`},
		// arrays
		{"int4[] empty", pgtype.Int4ArrayOID, "{}", `[]`},
		{"int4[]", pgtype.Int4ArrayOID, "{1,2,3}", `[1,2,3]`},
		{"int4[] NULL", pgtype.Int4ArrayOID, "{1,NULL,3}", `[1,null,3]`},
		{"int4[] null lower-case", pgtype.Int4ArrayOID, "{null}", `[null]`},
		{"int4[][]", pgtype.Int4ArrayOID, "{{1,2},{3,4}}", `[[1,2],[3,4]]`},
		{"int4[][] empty inner", pgtype.Int4ArrayOID, "{{},{}}", `[[],[]]`},
		{"int4[][][]", pgtype.Int4ArrayOID, "{{{1}},{{2}}}", `[[[1]],[[2]]]`},
		{"int4[] bounds", pgtype.Int4ArrayOID, "[0:1]={1,2}", `[1,2]`},
		{"int4[][] bounds", pgtype.Int4ArrayOID, "[1:2][3:3]={{1},{2}}", `[[1],[2]]`},
		{"int8[]", pgtype.Int8ArrayOID, "{-9223372036854775808}", `[-9223372036854775808]`},
		{"bool[]", pgtype.BoolArrayOID, "{t,f,NULL}", `[true,false,null]`},
		{"float8[]", pgtype.Float8ArrayOID, "{1.5,NaN,Infinity,-Infinity,1e+20}", `[1.5,"NaN","Infinity","-Infinity",1e+20]`},
		{"numeric[]", pgtype.NumericArrayOID, "{0.10,NaN}", `[0.10,"NaN"]`},
		{"text[]", pgtype.TextArrayOID, `{a,b}`, `["a","b"]`},
		{"text[] quoted", pgtype.TextArrayOID, `{"a b","c,d","{x}"}`, `["a b","c,d","{x}"]`},
		{"text[] escapes", pgtype.TextArrayOID, `{"d\"e","back\\slash"}`, `["d\"e","back\\slash"]`},
		{"text[] NULL vs \"NULL\"", pgtype.TextArrayOID, `{NULL,"NULL"}`, `[null,"NULL"]`},
		{"text[] empty string after another quoted one", pgtype.TextArrayOID, `{"a b",""}`, `["a b",""]`},
		{"text[] unicode", pgtype.TextArrayOID, `{héllo,"wörld ✓"}`, `["héllo","wörld ✓"]`},
		{"text[] control characters", pgtype.TextArrayOID, "{\"a\tb\"}", `["a\tb"]`},
		{"text[][]", pgtype.TextArrayOID, `{{a,"b c"},{NULL,""}}`, `[["a","b c"],[null,""]]`},
		{"varchar[]", pgtype.VarcharArrayOID, `{x}`, `["x"]`},
		{"uuid[]", pgtype.UUIDArrayOID, `{123e4567-e89b-12d3-a456-426614174000}`, `["123e4567-e89b-12d3-a456-426614174000"]`},
		{"timestamptz[]", pgtype.TimestamptzArrayOID, `{"2024-01-02 08:34:05+05:30",infinity}`, `["2024-01-02T03:04:05Z","infinity"]`},
		{"timestamp[]", pgtype.TimestampArrayOID, `{"2024-01-02 03:04:05"}`, `["2024-01-02T03:04:05"]`},
		{"date[]", pgtype.DateArrayOID, `{2024-01-02,NULL}`, `["2024-01-02",null]`},
		{"bytea[]", pgtype.ByteaArrayOID, `{"\\x0102",NULL}`, `["AQI=",null]`},
		{"jsonb[]", pgtype.JSONBArrayOID, `{"{\"a\": 1}","[1, 2]",3}`, `[{"a": 1},[1, 2],3]`},
		{"json[] with escaped backslash", pgtype.JSONArrayOID, `{"{\"a\":\"b\\\\c\"}"}`, `[{"a":"b\\c"}]`},
		{"box[] uses semicolons", pgtype.BoxArrayOID, `{(1,1),(0,0);(3,3),(2,2)}`, `["(1,1),(0,0)","(3,3),(2,2)"]`},
		{"box[] single", pgtype.BoxArrayOID, `{(1,1),(0,0)}`, `["(1,1),(0,0)"]`},
		{"int4range[]", pgtype.Int4rangeArrayOID, `{"[1,3)",empty}`, `["[1,3)","empty"]`},
		{"int4multirange is not an array", pgtype.Int4multirangeOID, `{[1,3),[5,7)}`, `"{[1,3),[5,7)}"`},
		// malformed array text falls back to the whole text as a string
		{"array unterminated", pgtype.Int4ArrayOID, "{1,2", `"{1,2"`},
		{"array empty element", pgtype.Int4ArrayOID, "{1,,2}", `"{1,,2}"`},
		{"array trailing delimiter", pgtype.Int4ArrayOID, "{1,}", `"{1,}"`},
		{"array extra brace", pgtype.Int4ArrayOID, "{1}}", `"{1}}"`},
		{"array trailing text", pgtype.Int4ArrayOID, "{1}x", `"{1}x"`},
		{"array no braces", pgtype.Int4ArrayOID, "1,2", `"1,2"`},
		{"array empty text", pgtype.Int4ArrayOID, "", `""`},
		{"array open brace only", pgtype.Int4ArrayOID, "{", `"{"`},
		{"array bounds without =", pgtype.Int4ArrayOID, "[0:1]{1,2}", `"[0:1]{1,2}"`},
		{"array unterminated quote", pgtype.TextArrayOID, `{"abc}`, `"{\"abc}"`},
		{"array dangling backslash", pgtype.TextArrayOID, `{"abc\`, `"{\"abc\\"`},
		{"array text after quote", pgtype.TextArrayOID, `{"a"b}`, `"{\"a\"b}"`},
		{"box[] with comma delimiter", pgtype.BoxArrayOID, `{a,b}`, `["a,b"]`},
		{"array wrong nesting", pgtype.Int4ArrayOID, "{{1,2}", `"{{1,2}"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendJSON(nil, tt.oid, []byte(tt.text))
			if string(got) != tt.want {
				t.Errorf("AppendJSON(%d, %q) = %s, want %s", tt.oid, tt.text, got, tt.want)
			}
			if !json.Valid(got) {
				t.Errorf("AppendJSON(%d, %q) = %s: not valid JSON", tt.oid, tt.text, got)
			}
			// It appends: a prefix is kept, and the value is the same.
			prefixed := AppendJSON([]byte(`{"k":`), tt.oid, []byte(tt.text))
			if want := `{"k":` + tt.want; string(prefixed) != want {
				t.Errorf("with a prefix: %s, want %s", prefixed, want)
			}
		})
	}
}

func TestAppendJSONNull(t *testing.T) {
	for _, oid := range []uint32{pgtype.BoolOID, pgtype.Int4OID, pgtype.TextOID, pgtype.JSONBOID, pgtype.TimestamptzOID, pgtype.ByteaOID, pgtype.Int4ArrayOID, 987654} {
		if got := AppendJSON(nil, oid, nil); string(got) != "null" {
			t.Errorf("AppendJSON(%d, nil) = %s, want null", oid, got)
		}
		// An empty value is not NULL.
		if got := AppendJSON(nil, oid, []byte{}); string(got) == "null" {
			t.Errorf("AppendJSON(%d, empty) = null, want a non-null value", oid)
		}
	}
}

func TestAppendJSONArrayEmptyQuotedElement(t *testing.T) {
	tests := []struct {
		oid        uint32
		text, want string
	}{
		{pgtype.TextArrayOID, `{""}`, `[""]`},
		{pgtype.TextArrayOID, `{"",x}`, `["","x"]`},
		{pgtype.TextArrayOID, `{x,""}`, `["x",""]`},
		{pgtype.TextArrayOID, `{{""},{""}}`, `[[""],[""]]`},
		{pgtype.VarcharArrayOID, `{"",NULL}`, `["",null]`},
		{pgtype.ByteaArrayOID, `{""}`, `[""]`},
	}
	for _, tt := range tests {
		if got := AppendJSON(nil, tt.oid, []byte(tt.text)); string(got) != tt.want {
			t.Errorf("AppendJSON(%d, %s) = %s, want %s", tt.oid, tt.text, got, tt.want)
		}
	}
}

func TestAppendJSONTimestampNeedsEscaping(t *testing.T) {
	// PostgreSQL never prints a timestamp like these, but AppendJSON's
	// output must be valid JSON whatever the text (the mapper and the dead
	// letters embed it).
	for _, in := range []string{"2024-01-02 03:04:05\"", "2024-01-02 03:04:05\\", "2024-01-02 03:04:05\n"} {
		if got := AppendJSON(nil, pgtype.TimestampOID, []byte(in)); !json.Valid(got) {
			t.Errorf("AppendJSON(timestamp, %q) = %s: invalid JSON", in, got)
		}
	}
}

func TestAppendString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{`q"b\s/`, `"q\"b\\s/"`},
		{"\n\r\t", `"\n\r\t"`},
		{"\x00\x01\x08\x0c\x1f", `"\u0000\u0001\u0008\u000c\u001f"`},
		{"\x7f", "\"\x7f\""},
		{"<a href='x'>&amp;</a>", `"<a href='x'>&amp;</a>"`},
		{"\u2028\u2029", `"\u2028\u2029"`},
		{"a\u2028b", `"a\u2028b"`},
		{"héllo ✓ 😀", `"héllo ✓ 😀"`},
		{"\ufffd", "\"\ufffd\""},
		{"\xff", `"\ufffd"`},
		{"a\xffb\xfe", `"a\ufffdb\ufffd"`},
		{"\xe2\x82", `"\ufffd\ufffd"`},                     // truncated 3-byte sequence
		{"\xe2\x82x", `"\ufffd\ufffdx"`},                   // truncated then ASCII
		{"\xed\xa0\x80", `"\ufffd\ufffd\ufffd"`},           // UTF-16 surrogate encoded in UTF-8
		{"\xc0\xaf", `"\ufffd\ufffd"`},                     // overlong
		{"\xf4\x90\x80\x80", `"\ufffd\ufffd\ufffd\ufffd"`}, // above U+10FFFF
	}
	for _, tt := range tests {
		got := AppendString(nil, tt.in)
		if string(got) != tt.want {
			t.Errorf("AppendString(%q) = %s, want %s", tt.in, got, tt.want)
		}
		if gotB := AppendString(nil, []byte(tt.in)); !bytes.Equal(gotB, got) {
			t.Errorf("AppendString([]byte %q) = %s, string form %s", tt.in, gotB, got)
		}
		checkLikeEncodingJSON(t, tt.in, got)
	}
}

// checkLikeEncodingJSON asserts that out (AppendString of s) is valid JSON
// and decodes to the same string as encoding/json's encoding of s.
func checkLikeEncodingJSON(t *testing.T, s string, out []byte) {
	t.Helper()
	if !json.Valid(out) {
		t.Fatalf("AppendString(%q) = %s: invalid JSON", s, out)
	}
	std, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var got, want string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("unmarshal %s: %v", out, err)
	}
	if err := json.Unmarshal(std, &want); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("AppendString(%q) decodes to %q; encoding/json's %s decodes to %q", s, got, std, want)
	}
	if !utf8.Valid(out) {
		t.Fatalf("AppendString(%q) = %q: not valid UTF-8", s, out)
	}
	// Line and paragraph separators are escaped, as encoding/json does, so
	// the output can be embedded in JavaScript.
	if bytes.Contains(out, []byte("\u2028")) || bytes.Contains(out, []byte("\u2029")) {
		t.Fatalf("AppendString(%q) = %s: U+2028/U+2029 not escaped", s, out)
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\x00\u2028", "\xff\xfe", "héllo", "\xed\xa0\x80"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out := AppendString([]byte("["), s)
		if out[0] != '[' {
			t.Fatal("prefix lost")
		}
		checkLikeEncodingJSON(t, s, out[1:])
	})
}

// fuzzOIDs are the types FuzzAppendJSON picks from. The seed files in
// testdata/fuzz/FuzzAppendJSON pick by index: append new types at the end.
var fuzzOIDs = []uint32{
	pgtype.BoolOID, pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID, pgtype.OIDOID,
	pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID,
	pgtype.TimestamptzOID, pgtype.TimestampOID, pgtype.DateOID, pgtype.ByteaOID,
	pgtype.UUIDOID, pgtype.TextOID, pgtype.VarcharOID, 987654,
	pgtype.Int4ArrayOID, pgtype.Int8ArrayOID, pgtype.BoolArrayOID, pgtype.Float8ArrayOID,
	pgtype.NumericArrayOID, pgtype.TextArrayOID, pgtype.TimestamptzArrayOID, pgtype.TimestampArrayOID,
	pgtype.ByteaArrayOID, pgtype.BoxArrayOID, pgtype.UUIDArrayOID, pgtype.DateArrayOID,
	pgtype.JSONOID, pgtype.JSONBOID, pgtype.JSONArrayOID, pgtype.JSONBArrayOID,
}

func FuzzAppendJSON(f *testing.F) {
	seeds := []struct {
		oid  uint32
		text string
	}{
		{pgtype.Int4ArrayOID, "{{1,2},{3,NULL}}"},
		{pgtype.Int4ArrayOID, "[0:1]={1,2}"},
		{pgtype.TextArrayOID, `{"a\"b",NULL,"NULL",""}`},
		{pgtype.BoxArrayOID, `{(1,1),(0,0);(3,3),(2,2)}`},
		{pgtype.TimestamptzOID, "2024-01-02 08:34:05.5+05:30"},
		{pgtype.TimestampOID, "2024-01-02 03:04:05"},
		{pgtype.ByteaOID, `\x0102`},
		{pgtype.Float8OID, "-Infinity"},
		{pgtype.NumericOID, "1.50"},
		{pgtype.JSONBOID, `{"a": [1, {"b": null}]}`},
		{pgtype.JSONBArrayOID, `{"{\"a\": 1}",2}`},
	}
	for _, s := range seeds {
		for i, oid := range fuzzOIDs {
			if oid == s.oid {
				f.Add(uint8(i), []byte(s.text), false)
			}
		}
	}
	f.Add(uint8(0), []byte(nil), true)
	f.Fuzz(func(t *testing.T, pick uint8, text []byte, isNull bool) {
		oid := fuzzOIDs[int(pick)%len(fuzzOIDs)]
		if isNull {
			text = nil
		} else if text == nil {
			text = []byte{}
		}
		out := AppendJSON([]byte("x"), oid, text)
		if out[0] != 'x' {
			t.Fatal("prefix lost")
		}
		out = out[1:]
		if !bytes.Equal(out, AppendJSON(nil, oid, text)) {
			t.Fatal("output depends on dst")
		}
		switch oid {
		case pgtype.JSONOID, pgtype.JSONBOID, pgtype.JSONArrayOID, pgtype.JSONBArrayOID:
			// json and jsonb text (also as array elements) is embedded as
			// is: PostgreSQL only ever sends valid JSON for them.
			return
		}
		if !json.Valid(out) {
			if oid == pgtype.TimestampOID || oid == pgtype.TimestampArrayOID {
			}
			t.Fatalf("AppendJSON(%d, %q) = %s: invalid JSON", oid, text, out)
		}
		if text == nil {
			if string(out) != "null" {
				t.Fatalf("NULL gave %s", out)
			}
			return
		}
		// Plain string types round-trip exactly (invalid UTF-8 aside).
		switch oid {
		case pgtype.TextOID, pgtype.VarcharOID, pgtype.UUIDOID, pgtype.DateOID, 987654:
			var s string
			if err := json.Unmarshal(out, &s); err != nil {
				t.Fatalf("AppendJSON(%d, %q) = %s: %v", oid, text, out, err)
			}
			if utf8.Valid(text) && s != string(text) {
				t.Fatalf("AppendJSON(%d, %q) decodes to %q", oid, text, s)
			}
		}
	})
}

func TestParseTimestamp(t *testing.T) {
	plus2 := time.FixedZone("+02", 2*3600)
	tests := []struct {
		name string
		oid  uint32
		text string
		loc  *time.Location
		want time.Time
	}{
		{"timestamptz utc", pgtype.TimestamptzOID, "2024-01-02 03:04:05+00", time.UTC, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"timestamptz ignores loc", pgtype.TimestamptzOID, "2024-01-02 03:04:05+00", plus2, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"timestamptz +05:30", pgtype.TimestamptzOID, "2024-01-02 08:34:05.25+05:30", time.UTC, time.Date(2024, 1, 2, 3, 4, 5, 250e6, time.UTC)},
		{"timestamptz -03", pgtype.TimestamptzOID, "2024-01-02 00:04:05-03", time.UTC, time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)},
		{"timestamptz micros", pgtype.TimestamptzOID, "2024-01-02 03:04:05.000001+00", time.UTC, time.Date(2024, 1, 2, 3, 4, 5, 1000, time.UTC)},
		{"timestamptz seconds offset", pgtype.TimestamptzOID, "1900-01-01 00:53:28+00:53:28", time.UTC, time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC)},
		{"timestamp in UTC", pgtype.TimestampOID, "2024-01-02 03:04:05.123456", time.UTC, time.Date(2024, 1, 2, 3, 4, 5, 123456000, time.UTC)},
		{"timestamp in +02", pgtype.TimestampOID, "2024-01-02 03:04:05", plus2, time.Date(2024, 1, 2, 1, 4, 5, 0, time.UTC)},
		{"date in UTC", pgtype.DateOID, "2024-02-29", time.UTC, time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)},
		{"date in +02", pgtype.DateOID, "2024-02-29", plus2, time.Date(2024, 2, 28, 22, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTimestamp(tt.oid, []byte(tt.text), tt.loc)
			if err != nil {
				t.Fatalf("ParseTimestamp: %v", err)
			}
			if !got.Equal(tt.want) {
				t.Errorf("ParseTimestamp(%q) = %v, want %v", tt.text, got.UTC(), tt.want)
			}
		})
	}
}

func TestParseTimestampErrors(t *testing.T) {
	tests := []struct {
		oid  uint32
		text string
		want string
	}{
		{pgtype.TimestamptzOID, "infinity", `cannot read "infinity" as a timestamp`},
		{pgtype.TimestamptzOID, "-infinity", `cannot read "-infinity" as a timestamp`},
		{pgtype.TimestamptzOID, "2024-01-02 03:04:05", `cannot read "2024-01-02 03:04:05" as a timestamp`},
		{pgtype.TimestamptzOID, "0044-03-15 12:00:00+00 BC", `cannot read "0044-03-15 12:00:00+00 BC" as a timestamp`},
		{pgtype.TimestampOID, "2024-01-02T03:04:05", `cannot read "2024-01-02T03:04:05" as a timestamp`},
		{pgtype.TimestampOID, "2024-01-02 03:04:05+00", `cannot read "2024-01-02 03:04:05+00" as a timestamp`},
		{pgtype.TimestampOID, "", `cannot read "" as a timestamp`},
		{pgtype.DateOID, "2024-02-30", `cannot read "2024-02-30" as a timestamp`},
		{pgtype.DateOID, "2024-01-02 03:04:05", `cannot read "2024-01-02 03:04:05" as a timestamp`},
		{pgtype.DateOID, "infinity", `cannot read "infinity" as a timestamp`},
		{pgtype.Int4OID, "2024-01-02", `type OID 23 is not a timestamp, timestamptz or date`},
		{pgtype.TextOID, "2024-01-02 03:04:05+00", `type OID 25 is not a timestamp, timestamptz or date`},
	}
	for _, tt := range tests {
		got, err := ParseTimestamp(tt.oid, []byte(tt.text), time.UTC)
		if err == nil {
			t.Errorf("ParseTimestamp(%d, %q) = %v, want error %q", tt.oid, tt.text, got, tt.want)
			continue
		}
		if err.Error() != tt.want {
			t.Errorf("ParseTimestamp(%d, %q) error = %q, want %q", tt.oid, tt.text, err, tt.want)
		}
		if !got.IsZero() {
			t.Errorf("ParseTimestamp(%d, %q) = %v with an error, want the zero time", tt.oid, tt.text, got)
		}
	}
}

// slowTimestamptz is parseTimestamptz without its fast path.
func slowTimestamptz(s string) (time.Time, bool) {
	for _, l := range tstzLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

func FuzzFastTimestamptz(f *testing.F) {
	for _, s := range []string{
		"2025-10-21 19:09:32.263412+00", "2024-01-01 00:00:00-05:30", "1900-01-01 00:00:00+00:19:32",
		"2023-02-30 00:00:00+00", "2024-02-29 12:34:56.789+02", "0001-01-01 00:00:00+00", "9999-12-31 23:59:59.999999-12",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := fastTimestamptz([]byte(s))
		slow, slowOK := slowTimestamptz(s)
		if ok && slowOK && !fast.Equal(slow) {
			t.Fatalf("%q: fast path %v, time.Parse %v", s, fast.UTC(), slow.UTC())
		}
		if ok && !slowOK && !offsetBeyondGo(s) {
			t.Fatalf("%q: fast path accepts (%v) what time.Parse refuses", s, fast.UTC())
		}
	})
}

// offsetBeyondGo reports whether the UTC offset at the end of s has hours
// over 24 or minutes or seconds over 60, which time.Parse refuses and the
// fast path accepts. PostgreSQL never prints one (its offsets stay within
// ±15:59:59), so the difference is harmless.
func offsetBeyondGo(s string) bool {
	i := strings.LastIndexAny(s, "+-")
	if i < 19 {
		return false
	}
	for j, part := range strings.Split(s[i+1:], ":") {
		n, err := strconv.Atoi(part)
		if err == nil && (j == 0 && n > 24 || j > 0 && n > 60) {
			return true
		}
	}
	return false
}
