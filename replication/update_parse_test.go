package replication

import (
	"encoding/binary"
	"testing"
)

// tuple encodes TupleData: "n" NULL, "u" unchanged TOAST, anything else text.
func tuple(cols ...string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(cols)))
	for _, c := range cols {
		switch c {
		case "n", "u":
			b = append(b, c[0])
		default:
			b = append(b, 't')
			b = binary.BigEndian.AppendUint32(b, uint32(len(c)))
			b = append(b, c...)
		}
	}
	return b
}

func TestParseUpdate(t *testing.T) {
	msg := func(oldKind byte, old []byte, newT []byte) []byte {
		b := append([]byte{'U'}, 0, 0, 0, 7)
		if oldKind != 0 {
			b = append(append(b, oldKind), old...)
		}
		return append(append(b, 'N'), newT...)
	}
	cases := []struct {
		name    string
		m       []byte
		want    []string // "<nil>" for nil
		missing int
	}{
		{"no old tuple", msg(0, nil, tuple("1", "gold", "n")), []string{"1", "gold", "<nil>"}, -1},
		{"key only, unchanged toast", msg('K', tuple("1", "n", "n"), tuple("1", "gold", "u")), []string{"1", "gold", "<nil>"}, 2},
		{"replica identity full fills it", msg('O', tuple("1", "new", "long bio"), tuple("1", "gold", "u")), []string{"1", "gold", "long bio"}, -1},
		{"set to NULL stays NULL", msg('O', tuple("1", "new", "bio"), tuple("1", "n", "u")), []string{"1", "<nil>", "bio"}, -1},
	}
	for _, c := range cases {
		rel, vals, _, missing, err := parseUpdate(c.m, nil, nil)
		if err != nil || rel != 7 || missing != c.missing || len(vals) != len(c.want) {
			t.Fatalf("%s: rel %d missing %d vals %q err %v", c.name, rel, missing, vals, err)
		}
		for i, w := range c.want {
			got := "<nil>"
			if vals[i] != nil {
				got = string(vals[i])
			}
			if got != w {
				t.Fatalf("%s: column %d = %q, want %q", c.name, i, got, w)
			}
		}
	}
	for i := 1; i < len(cases[2].m); i++ {
		if _, _, _, _, err := parseUpdate(cases[2].m[:i], nil, nil); err == nil {
			t.Fatalf("truncated at %d: no error", i)
		}
	}
}
