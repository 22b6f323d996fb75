package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Column is one column of a published relation.
type Column struct {
	Name    string
	TypeOID uint32
	// TypeMod is the type modifier (e.g. varchar's length), -1 for none.
	TypeMod int32
	// Key reports whether the column is part of the replica identity.
	Key bool
}

// Relation describes a published table as the server last announced it. A
// new Relation value is created every time the server resends it (after a
// schema change), so a *Relation can key caches.
type Relation struct {
	ID        uint32
	Namespace string
	Name      string
	Columns   []Column
	index     map[string]int
	qualified string // Namespace + "." + Name, made by NewRelation
}

// QualifiedName returns "namespace.name" (unquoted).
func (r *Relation) QualifiedName() string {
	if r.qualified != "" {
		return r.qualified
	}
	return r.Namespace + "." + r.Name
}

// Index returns the position of the named column, or -1.
func (r *Relation) Index(name string) int {
	if i, ok := r.index[name]; ok {
		return i
	}
	return -1
}

// NewRelation builds a Relation (used by the stream and by tests).
func NewRelation(id uint32, namespace, name string, cols []Column) *Relation {
	r := &Relation{ID: id, Namespace: namespace, Name: name, Columns: cols, index: make(map[string]int, len(cols)),
		qualified: namespace + "." + name}
	for i, c := range cols {
		r.index[c.Name] = i
	}
	return r
}

// errShortMessage is returned for a truncated pgoutput message.
var errShortMessage = errors.New("pgoutput message is truncated")

// parseInsert decodes a pgoutput Insert message ('I') into its relation id
// and column values, without copying: each value aliases msg. A NULL is a nil
// slice; an empty string is a non-nil empty slice. Unchanged TOAST values
// cannot occur in an insert and are reported as an error, as are binary
// values (the stream asks for text).
func parseInsert(msg []byte, vals [][]byte) (uint32, [][]byte, error) {
	if len(msg) < 1+4+1+2 || msg[0] != 'I' {
		return 0, vals, errShortMessage
	}
	rel := binary.BigEndian.Uint32(msg[1:5])
	if msg[5] != 'N' {
		return 0, vals, fmt.Errorf("insert message: expected new tuple marker 'N', got %q", msg[5])
	}
	vals, off, unchanged, err := parseTuple(msg, 6, vals[:0], "insert")
	if err != nil {
		return 0, vals, err
	}
	if unchanged >= 0 {
		return 0, vals, fmt.Errorf("insert message: column %d is an unchanged TOAST value", unchanged)
	}
	if off != len(msg) {
		return 0, vals, fmt.Errorf("insert message: %d trailing bytes", len(msg)-off)
	}
	return rel, vals, nil
}

// parseTuple decodes TupleData at msg[off:] (column count, then the
// columns), appending the values to vals. unchanged is the index of the
// first unchanged TOAST value ('u', given as nil), or -1; when marks is not
// nil, every such index is appended to it.
func parseTuple(msg []byte, off int, vals [][]byte, what string, marks ...*[]int) (out [][]byte, end, unchanged int, err error) {
	unchanged = -1
	if off+2 > len(msg) {
		return vals, off, unchanged, errShortMessage
	}
	n := int(binary.BigEndian.Uint16(msg[off : off+2]))
	off += 2
	for i := 0; i < n; i++ {
		if off >= len(msg) {
			return vals, off, unchanged, errShortMessage
		}
		kind := msg[off]
		off++
		switch kind {
		case 'n':
			vals = append(vals, nil)
		case 'u':
			if unchanged < 0 {
				unchanged = i
			}
			if len(marks) > 0 {
				*marks[0] = append(*marks[0], i)
			}
			vals = append(vals, nil)
		case 't':
			if off+4 > len(msg) {
				return vals, off, unchanged, errShortMessage
			}
			l := int(binary.BigEndian.Uint32(msg[off : off+4]))
			off += 4
			if l < 0 || off+l > len(msg) {
				return vals, off, unchanged, errShortMessage
			}
			vals = append(vals, msg[off:off+l:off+l])
			off += l
		case 'b':
			return vals, off, unchanged, fmt.Errorf("%s message: column %d is in binary format", what, i)
		default:
			return vals, off, unchanged, fmt.Errorf("%s message: column %d has unknown kind %q", what, i, kind)
		}
	}
	return vals, off, unchanged, nil
}

// parseUpdate decodes a pgoutput Update message ('U') into the new tuple's
// values (aliasing msg, like parseInsert). An unchanged TOAST value is taken
// from the old tuple when the message carries one (REPLICA IDENTITY FULL);
// otherwise missing is its column index (-1 when none is missing), and
// unchangedCols, when given, receives the indexes of every such column.
func parseUpdate(msg []byte, vals, old [][]byte, unchangedCols ...*[]int) (rel uint32, newVals, oldVals [][]byte, missing int, err error) {
	missing = -1
	if len(msg) < 1+4+1 || msg[0] != 'U' {
		return 0, vals, old, missing, errShortMessage
	}
	rel = binary.BigEndian.Uint32(msg[1:5])
	off := 5
	old = old[:0]
	full := false
	if msg[off] == 'K' || msg[off] == 'O' {
		full = msg[off] == 'O'
		old, off, _, err = parseTuple(msg, off+1, old, "update")
		if err != nil {
			return 0, vals, old, missing, err
		}
	}
	if off >= len(msg) || msg[off] != 'N' {
		return 0, vals, old, missing, errors.New("update message: expected new tuple marker 'N'")
	}
	var marks []int
	vals, off, unchanged, err := parseTuple(msg, off+1, vals[:0], "update", &marks)
	if err != nil {
		return 0, vals, old, missing, err
	}
	if off != len(msg) {
		return 0, vals, old, missing, fmt.Errorf("update message: %d trailing bytes", len(msg)-off)
	}
	if unchanged >= 0 {
		if !full || len(old) != len(vals) {
			if len(unchangedCols) > 0 {
				*unchangedCols[0] = marks
			}
			return rel, vals, old, unchanged, nil
		}
		// With REPLICA IDENTITY FULL the old tuple holds every value.
		for _, i := range marks {
			vals[i] = old[i]
		}
	}
	return rel, vals, old, missing, nil
}
