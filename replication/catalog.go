package replication

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgconn"
)

// TableColumns is a table's definition as read from the catalog.
type TableColumns struct {
	// Rel has the columns pgoutput publishes (not dropped, not generated),
	// in order, with Key set on the primary key's; its ID is the table's
	// OID.
	Rel *Relation
	// PrimaryKey and ReplicaIdentity list the positions in Rel of the
	// primary key's columns and of the replica identity index's.
	PrimaryKey, ReplicaIdentity []int
}

// ErrTableNotFound is returned (wrapped) by ReadTableColumns when the table
// does not exist or the user cannot see it.
var ErrTableNotFound = errors.New("table not found")

// ReadTableColumns reads t's current definition. The error wraps
// ErrTableNotFound when the table does not exist.
func ReadTableColumns(ctx context.Context, conn *pgconn.PgConn, t TableRef) (*TableColumns, error) {
	generated := ""
	if serverMajor(conn.ParameterStatus("server_version")) >= 12 {
		generated = " AND a.attgenerated = ''"
	}
	sql := `SELECT c.oid, a.attname, a.atttypid, a.atttypmod,
  coalesce((SELECT a.attnum = ANY (x.indkey) FROM pg_catalog.pg_index x WHERE x.indrelid = c.oid AND x.indisprimary), false),
  coalesce((SELECT a.attnum = ANY (x.indkey) FROM pg_catalog.pg_index x WHERE x.indrelid = c.oid AND x.indisreplident), false)
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped` + generated + `
WHERE n.nspname = $1 AND c.relname = $2
ORDER BY a.attnum`
	res := conn.ExecParams(ctx, sql, [][]byte{[]byte(t.Schema), []byte(t.Name)}, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", t, res.Err)
	}
	if len(res.Rows) == 0 {
		return nil, fmt.Errorf("the table %s does not exist: %w", t, ErrTableNotFound)
	}
	var id uint64
	tc := &TableColumns{}
	var cols []Column
	for _, r := range res.Rows {
		var err error
		if id, err = strconv.ParseUint(string(r[0]), 10, 32); err != nil {
			return nil, fmt.Errorf("read the columns of %s: table OID %q: %w", t, r[0], err)
		}
		if r[1] == nil {
			continue // no columns
		}
		oid, err1 := strconv.ParseUint(string(r[2]), 10, 32)
		mod, err2 := strconv.ParseInt(string(r[3]), 10, 32)
		if err := errors.Join(err1, err2); err != nil {
			return nil, fmt.Errorf("read the columns of %s: column %q: %w", t, r[1], err)
		}
		inPK, inIdent := string(r[4]) == "t", string(r[5]) == "t"
		if inPK {
			tc.PrimaryKey = append(tc.PrimaryKey, len(cols))
		}
		if inIdent {
			tc.ReplicaIdentity = append(tc.ReplicaIdentity, len(cols))
		}
		cols = append(cols, Column{Name: string(r[1]), TypeOID: uint32(oid), TypeMod: int32(mod), Key: inPK})
	}
	tc.Rel = NewRelation(uint32(id), t.Schema, t.Name, cols)
	return tc, nil
}

// serverMajor returns the major version in a server_version such as "15.4
// (Debian 15.4-1)" or "9.6.24"; 0 when unknown.
func serverMajor(version string) int {
	end := 0
	for end < len(version) && version[end] >= '0' && version[end] <= '9' {
		end++
	}
	n, _ := strconv.Atoi(version[:end])
	return n
}
