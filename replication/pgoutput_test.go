package replication

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// tupleCol is one column of a hand-built pgoutput TupleData.
type tupleCol struct {
	kind byte   // 'n', 't', 'u' or 'b'
	data []byte // for 't' and 'b'
}

func colNull() tupleCol           { return tupleCol{kind: 'n'} }
func colText(s string) tupleCol   { return tupleCol{kind: 't', data: []byte(s)} }
func colToast() tupleCol          { return tupleCol{kind: 'u'} }
func colBinary(b []byte) tupleCol { return tupleCol{kind: 'b', data: b} }

// insertMsg builds a pgoutput Insert message as the server sends it:
// 'I', relation id (Int32), 'N', column count (Int16), then per column its
// kind byte and, for 't' and 'b', an Int32 length and the bytes.
func insertMsg(rel uint32, cols ...tupleCol) []byte {
	b := []byte{'I'}
	b = binary.BigEndian.AppendUint32(b, rel)
	b = append(b, 'N')
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		b = append(b, c.kind)
		if c.kind == 't' || c.kind == 'b' {
			b = binary.BigEndian.AppendUint32(b, uint32(len(c.data)))
			b = append(b, c.data...)
		}
	}
	return b
}

// encodeInsert is the inverse of a successful parseInsert.
func encodeInsert(rel uint32, vals [][]byte) []byte {
	cols := make([]tupleCol, len(vals))
	for i, v := range vals {
		if v == nil {
			cols[i] = colNull()
		} else {
			cols[i] = tupleCol{kind: 't', data: v}
		}
	}
	return insertMsg(rel, cols...)
}

func TestParseInsert(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		rel  uint32
		want [][]byte // nil element: NULL
	}{
		{"no columns", insertMsg(16384), 16384, [][]byte{}},
		{"one text", insertMsg(1, colText("hello")), 1, [][]byte{[]byte("hello")}},
		{"null", insertMsg(2, colNull()), 2, [][]byte{nil}},
		{"empty string", insertMsg(3, colText("")), 3, [][]byte{{}}},
		{"null and empty side by side", insertMsg(4, colNull(), colText(""), colNull(), colText("x")), 4, [][]byte{nil, {}, nil, []byte("x")}},
		{"max relation id", insertMsg(0xFFFFFFFF, colText("1")), 0xFFFFFFFF, [][]byte{[]byte("1")}},
		{"binary-looking text", insertMsg(5, colText("\x00\xff'n't")), 5, [][]byte{[]byte("\x00\xff'n't")}},
		{"value with kind bytes inside", insertMsg(6, colText("ntub"), colText("N")), 6, [][]byte{[]byte("ntub"), []byte("N")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rel, vals, err := parseInsert(tt.msg, nil)
			if err != nil {
				t.Fatalf("parseInsert: %v", err)
			}
			if rel != tt.rel {
				t.Errorf("relation = %d, want %d", rel, tt.rel)
			}
			if len(vals) != len(tt.want) {
				t.Fatalf("got %d values, want %d", len(vals), len(tt.want))
			}
			for i := range vals {
				if (vals[i] == nil) != (tt.want[i] == nil) {
					t.Errorf("value %d: NULL = %v, want NULL = %v", i, vals[i] == nil, tt.want[i] == nil)
				}
				if !bytes.Equal(vals[i], tt.want[i]) {
					t.Errorf("value %d = %q, want %q", i, vals[i], tt.want[i])
				}
			}
		})
	}
}

func TestParseInsertAliasesAndReuses(t *testing.T) {
	msg := insertMsg(7, colText("abc"), colText("de"))
	buf := make([][]byte, 0, 8)
	_, vals, err := parseInsert(msg, buf)
	if err != nil {
		t.Fatal(err)
	}
	if &vals[:1][0] != &buf[:1][0] {
		t.Error("parseInsert did not reuse the vals buffer it was given")
	}
	// Values alias the message, with their capacity clipped so that an
	// append cannot overwrite the next column.
	if &vals[0][0] != &msg[13] {
		t.Error("value 0 does not alias the message")
	}
	if cap(vals[0]) != 3 {
		t.Errorf("cap(value 0) = %d, want 3", cap(vals[0]))
	}
	_ = append(vals[0], 'X')
	if !bytes.Equal(vals[1], []byte("de")) {
		t.Errorf("appending to value 0 changed value 1 to %q", vals[1])
	}

	// A second call with the returned slice starts afresh.
	_, vals, err = parseInsert(insertMsg(7, colNull()), vals)
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != 1 || vals[0] != nil {
		t.Errorf("second parse = %q, want [NULL]", vals)
	}
}

func TestParseInsertErrors(t *testing.T) {
	long := insertMsg(1, colText("abc"))
	binary.BigEndian.PutUint32(long[9:], 0xFFFFFFFF) // length far past the end
	over := insertMsg(1, colText("abc"))
	binary.BigEndian.PutUint32(over[9:], 4) // one byte past the end
	tests := []struct {
		name  string
		msg   []byte
		want  string
		short bool // errors.Is(err, errShortMessage)
	}{
		{"nil", nil, "pgoutput message is truncated", true},
		{"not an insert", append([]byte{'U'}, insertMsg(1)[1:]...), "pgoutput message is truncated", true},
		{"old tuple marker K", append(insertMsg(1)[:5:5], 'K', 0, 0), "insert message: expected new tuple marker 'N', got 'K'", false},
		{"old tuple marker O", append(insertMsg(1)[:5:5], 'O', 0, 0), "insert message: expected new tuple marker 'N', got 'O'", false},
		{"unchanged toast", insertMsg(1, colText("a"), colToast()), "insert message: column 1 is an unchanged TOAST value", false},
		{"binary value", insertMsg(1, colBinary([]byte{0, 0, 0, 1})), "insert message: column 0 is in binary format", false},
		{"unknown kind", insertMsg(1, colNull(), colNull(), tupleCol{kind: 'x'}), "insert message: column 2 has unknown kind 'x'", false},
		{"kind zero", insertMsg(1, tupleCol{kind: 0}), `insert message: column 0 has unknown kind '\x00'`, false},
		{"length past the end", long, "pgoutput message is truncated", true},
		{"length one past the end", over, "pgoutput message is truncated", true},
		{"fewer columns than announced", insertMsg(1, colText("a"), colNull())[:len(insertMsg(1, colText("a"), colNull()))-1], "pgoutput message is truncated", true},
		{"one trailing byte", append(insertMsg(1, colText("a")), 'n'), "insert message: 1 trailing bytes", false},
		{"trailing column", append(insertMsg(1, colText("a")), insertMsg(1, colText("bc"))[8:]...), "insert message: 7 trailing bytes", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rel, _, err := parseInsert(tt.msg, nil)
			if err == nil {
				t.Fatalf("parseInsert(%q) succeeded, want error %q", tt.msg, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error = %q, want %q", err, tt.want)
			}
			if errors.Is(err, errShortMessage) != tt.short {
				t.Errorf("errors.Is(err, errShortMessage) = %v, want %v", !tt.short, tt.short)
			}
			if rel != 0 {
				t.Errorf("relation = %d on error, want 0", rel)
			}
		})
	}
}

func TestParseInsertTruncatedAtEveryOffset(t *testing.T) {
	msgs := [][]byte{
		insertMsg(42),
		insertMsg(42, colText("hello"), colNull(), colText(""), colText("a longer value, with \x00 bytes")),
		insertMsg(0x01020304, colNull(), colNull()),
		insertMsg(9, colText(string(bytes.Repeat([]byte{'n'}, 300)))),
	}
	for _, msg := range msgs {
		if _, _, err := parseInsert(msg, nil); err != nil {
			t.Fatalf("full message %q: %v", msg, err)
		}
		for i := 0; i < len(msg); i++ {
			if _, _, err := parseInsert(msg[:i:i], nil); err == nil {
				t.Errorf("message %q truncated to %d bytes parsed without error", msg, i)
			}
		}
	}
}

func FuzzParseInsert(f *testing.F) {
	f.Add(insertMsg(16384))
	f.Add(insertMsg(16384, colText("42"), colText("purchase"), colNull(), colText(`{"a": 1}`)))
	f.Add(insertMsg(1, colText(""), colNull(), colToast()))
	f.Add(insertMsg(1, colBinary([]byte{1, 2})))
	f.Add([]byte("I\x00\x00\x00\x01N\xff\xfft\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		rel, vals, err := parseInsert(msg, nil)
		if err != nil {
			if rel != 0 {
				t.Fatalf("relation %d returned with error %v", rel, err)
			}
			return
		}
		// A message that parses is exactly the encoding of what it parsed
		// to: nothing is skipped, invented or reordered.
		if again := encodeInsert(rel, vals); !bytes.Equal(again, msg) {
			t.Fatalf("parseInsert(%q) = %d, %q; encoding that gives %q", msg, rel, vals, again)
		}
		for i, v := range vals {
			if v != nil && cap(v) != len(v) {
				t.Fatalf("value %d has cap %d > len %d: an append would overwrite the message", i, cap(v), len(v))
			}
		}
	})
}

func TestPublicationSQL(t *testing.T) {
	tests := []struct {
		name   string
		pub    string
		tables []TableRef
		want   string
	}{
		{"one table", "pgsignal", []TableRef{{"public", "events"}},
			`CREATE PUBLICATION "pgsignal" FOR TABLE "public"."events" WITH (publish = 'insert');`},
		{"two tables", "pub", []TableRef{{"public", "events"}, {"billing", "purchases"}},
			`CREATE PUBLICATION "pub" FOR TABLE "public"."events", "billing"."purchases" WITH (publish = 'insert');`},
		{"odd names", `my "pub"`, []TableRef{{"odd; name", `ta"ble`}, {"Upper", "a.b"}},
			`CREATE PUBLICATION "my ""pub""" FOR TABLE "odd; name"."ta""ble", "Upper"."a.b" WITH (publish = 'insert');`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PublicationSQL(tt.pub, tt.tables); got != tt.want {
				t.Errorf("PublicationSQL =\n  %s\nwant\n  %s", got, tt.want)
			}
		})
	}
}

func TestTableRef(t *testing.T) {
	r := TableRef{Schema: `we"ird`, Name: "odd; name"}
	if got, want := r.String(), `we"ird.odd; name`; got != want {
		t.Errorf("String() = %s, want %s", got, want)
	}
	if got, want := r.Quoted(), `"we""ird"."odd; name"`; got != want {
		t.Errorf("Quoted() = %s, want %s", got, want)
	}
}

func TestRelation(t *testing.T) {
	rel := NewRelation(16384, "app", "events", []Column{
		{Name: "id", TypeOID: 20, Key: true},
		{Name: "kind", TypeOID: 25},
		{Name: "", TypeOID: 25},
	})
	if got, want := rel.QualifiedName(), "app.events"; got != want {
		t.Errorf("QualifiedName() = %s, want %s", got, want)
	}
	tests := []struct {
		col  string
		want int
	}{
		{"id", 0}, {"kind", 1}, {"", 2}, {"missing", -1}, {"ID", -1}, {"Kind", -1},
	}
	for _, tt := range tests {
		if got := rel.Index(tt.col); got != tt.want {
			t.Errorf("Index(%q) = %d, want %d", tt.col, got, tt.want)
		}
	}
}
