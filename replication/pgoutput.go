package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Column is one column of a published relation.
type Column struct {
	Name    string
	TypeOID uint32
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
}

// QualifiedName returns "namespace.name" (unquoted).
func (r *Relation) QualifiedName() string { return r.Namespace + "." + r.Name }

// Index returns the position of the named column, or -1.
func (r *Relation) Index(name string) int {
	if i, ok := r.index[name]; ok {
		return i
	}
	return -1
}

// NewRelation builds a Relation (used by the stream and by tests).
func NewRelation(id uint32, namespace, name string, cols []Column) *Relation {
	r := &Relation{ID: id, Namespace: namespace, Name: name, Columns: cols, index: make(map[string]int, len(cols))}
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
	n := int(binary.BigEndian.Uint16(msg[6:8]))
	off := 8
	vals = vals[:0]
	for i := 0; i < n; i++ {
		if off >= len(msg) {
			return 0, vals, errShortMessage
		}
		kind := msg[off]
		off++
		switch kind {
		case 'n':
			vals = append(vals, nil)
		case 't':
			if off+4 > len(msg) {
				return 0, vals, errShortMessage
			}
			l := int(binary.BigEndian.Uint32(msg[off : off+4]))
			off += 4
			if l < 0 || off+l > len(msg) {
				return 0, vals, errShortMessage
			}
			vals = append(vals, msg[off:off+l:off+l])
			off += l
		case 'u':
			return 0, vals, fmt.Errorf("insert message: column %d is an unchanged TOAST value", i)
		case 'b':
			return 0, vals, fmt.Errorf("insert message: column %d is in binary format", i)
		default:
			return 0, vals, fmt.Errorf("insert message: column %d has unknown kind %q", i, kind)
		}
	}
	if off != len(msg) {
		return 0, vals, fmt.Errorf("insert message: %d trailing bytes", len(msg)-off)
	}
	return rel, vals, nil
}

// quoteIdent quotes a SQL identifier.
func quoteIdent(s string) string {
	return `"` + strings.ReplaceAll(s, `"`, `""`) + `"`
}

// quoteLiteral quotes a SQL string literal (for the few commands of the
// replication protocol that take no parameters).
func quoteLiteral(s string) string {
	return `'` + strings.ReplaceAll(s, `'`, `''`) + `'`
}
