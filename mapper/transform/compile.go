package transform

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/pgsignal/pgsignal/mapper"
	"github.com/pgsignal/pgsignal/replication"
)

// Names of the transform's output columns.
const (
	outName       = "name"
	outExternalID = "external_id"
	outTimestamp  = "timestamp"
	outProperties = "properties"
)

// compiled is a transform compiled against one version of its table.
type compiled struct {
	spec *spec
	rel  *replication.Relation
	st   statement
	// fields are the statement's result columns (the hidden ones first),
	// as Prepare described them.
	fields []pgconn.FieldDescription
	// out is the synthetic relation of the output columns (named like the
	// source table), and m maps its rows to events.
	out *replication.Relation
	m   *mapper.Mapper
	// reject, when set, is the reason every row of rel is rejected: the
	// transform does not compile for this version of the table.
	reject string
}

// outputError says why the transform's output columns are not usable.
type outputError struct{ msg string }

func (e *outputError) Error() string { return e.msg }

// compileError is a transform that does not compile, described for a
// person (where in the transform, detail, hint), wrapping the cause.
type compileError struct {
	msg string
	err error
}

func (e *compileError) Error() string { return e.msg }
func (e *compileError) Unwrap() error { return e.err }

// isCompileError reports whether err says that the transform (or the
// statement around it) is wrong for the table, not that the server or the
// connection failed: a syntax error or a missing object (class 42), a
// feature not supported (0A), an invalid constant (22), a missing schema
// (3F), or output columns pgsignal cannot use.
func isCompileError(err error) bool {
	var oe *outputError
	if errors.As(err, &oe) {
		return true
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return false
	}
	switch pe.Code[:2] {
	case "42", "0A", "22", "3F":
		return true
	}
	return false
}

// sameFailure reports whether two compile errors are the same failure.
func sameFailure(a, b error) bool {
	var pa, pb *pgconn.PgError
	if errors.As(a, &pa) && errors.As(b, &pb) {
		return pa.Code == pb.Code && pa.Message == pb.Message
	}
	var oa, ob *outputError
	if errors.As(a, &oa) && errors.As(b, &ob) {
		return oa.msg == ob.msg
	}
	return false
}

// compile resolves rel's column types, prepares the transform's statement
// for them and checks its output columns. Errors are *compileError when the
// statement was built (isCompileError tells whether the transform is at
// fault).
func compile(ctx context.Context, pc *pgconn.PgConn, s *spec, rel *replication.Relation) (*compiled, error) {
	types, err := typeNames(ctx, pc, rel.Columns)
	if err != nil {
		return nil, fmt.Errorf("resolve the column types of %s: %w", rel.QualifiedName(), err)
	}
	names := make([]string, len(rel.Columns))
	for i, c := range rel.Columns {
		names[i] = c.Name
	}
	c := &compiled{spec: s, rel: rel, st: buildStatement(s.sql, names, types)}
	sd, err := pc.Prepare(ctx, "", c.st.sql, nil)
	if err != nil {
		return nil, &compileError{msg: describe(c.st, s.sql, err), err: err}
	}
	if err := c.setOutput(sd.Fields); err != nil {
		return nil, &compileError{msg: err.Error(), err: err}
	}
	return c, nil
}

// describe renders a PostgreSQL error for a person: the message and
// SQLSTATE, where in the transform it is, the detail and the hint.
func describe(st statement, u userSQL, err error) string {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s (SQLSTATE %s)", pe.Message, pe.Code)
	if line, col, text, ok := st.locate(u, int(pe.Position)); ok {
		fmt.Fprintf(&b, " at line %d, column %d of the transform: %q", line, col, strings.TrimSpace(text))
	} else if pe.Position > 0 {
		fmt.Fprintf(&b, " at character %d of the statement pgsignal wraps the transform in", pe.Position)
	}
	if pe.Detail != "" {
		b.WriteString("; detail: " + pe.Detail)
	}
	if pe.Hint != "" {
		b.WriteString("; hint: " + pe.Hint)
	}
	return b.String()
}

// typeNames returns format_type(oid, typmod) of every column, in one query.
func typeNames(ctx context.Context, pc *pgconn.PgConn, cols []replication.Column) ([]string, error) {
	if len(cols) == 0 {
		return nil, nil
	}
	var oids, mods strings.Builder
	oids.WriteByte('{')
	mods.WriteByte('{')
	for i, c := range cols {
		if i > 0 {
			oids.WriteByte(',')
			mods.WriteByte(',')
		}
		oids.WriteString(strconv.FormatUint(uint64(c.TypeOID), 10))
		mods.WriteString(strconv.FormatInt(int64(c.TypeMod), 10))
	}
	oids.WriteByte('}')
	mods.WriteByte('}')
	res := pc.ExecParams(ctx, "SELECT pg_catalog.format_type(o, m) FROM unnest($1::oid[], $2::int4[]) WITH ORDINALITY u(o, m, i) ORDER BY i",
		[][]byte{[]byte(oids.String()), []byte(mods.String())}, nil, nil, nil).Read()
	if res.Err != nil {
		return nil, res.Err
	}
	if len(res.Rows) != len(cols) {
		return nil, fmt.Errorf("format_type returned %d rows for %d columns", len(res.Rows), len(cols))
	}
	types := make([]string, len(cols))
	for i, r := range res.Rows {
		if len(r) != 1 || r[0] == nil {
			return nil, fmt.Errorf("format_type returned no name for type OID %d", cols[i].TypeOID)
		}
		types[i] = string(r[0])
	}
	return types, nil
}

// setOutput checks the statement's result columns and builds the mapper of
// the output rows.
func (c *compiled) setOutput(fields []pgconn.FieldDescription) error {
	if len(fields) < hiddenFields || fields[0].Name != ordColumn || fields[1].Name != hitColumn || fields[2].Name != numColumn {
		return &outputError{"the statement around the transform lost its hidden columns (does the transform return a column named like __pgsignal_*?)"}
	}
	user := fields[hiddenFields:]
	s := c.spec
	rule := s.rule
	seen := map[string]bool{}
	cols := make([]replication.Column, len(user))
	for i, f := range user {
		name := f.Name
		if seen[name] {
			return &outputError{fmt.Sprintf("the transform returns the column %q twice", name)}
		}
		seen[name] = true
		cols[i] = replication.Column{Name: name, TypeOID: f.DataTypeOID, TypeMod: f.TypeModifier}
		switch name {
		case outName, outExternalID:
		case outTimestamp:
			if err := checkTimestamp(f.DataTypeOID, s.TimestampUnit); err != nil {
				return err
			}
			rule.Timestamp = outTimestamp
		case outProperties:
			if f.DataTypeOID != pgtype.JSONBOID && f.DataTypeOID != pgtype.JSONOID {
				return &outputError{fmt.Sprintf("the transform's %q column is of type %s, not json or jsonb: cast it to jsonb (e.g. to_jsonb(...) or jsonb_build_object(...))", name, typeName(f.DataTypeOID))}
			}
			rule.Properties = []string{outProperties}
		default:
			msg := fmt.Sprintf("the transform returns the column %q, which is not one of name, external_id, timestamp and properties", name)
			if name == "?column?" {
				msg += " (name the expression with AS)"
			}
			return &outputError{msg}
		}
	}
	for _, want := range []string{outName, outExternalID} {
		if !seen[want] {
			return &outputError{fmt.Sprintf("the transform returns no %q column (it must return name and external_id, and may return timestamp and properties)", want)}
		}
	}
	m, err := mapper.New([]mapper.Rule{rule})
	if err != nil {
		return fmt.Errorf("map the output of %s: %w", c.rel.QualifiedName(), err)
	}
	c.fields = fields
	c.out = replication.NewRelation(c.rel.ID, c.rel.Namespace, c.rel.Name, cols)
	c.m = m
	return nil
}

// checkTimestamp checks the type of the timestamp output column.
func checkTimestamp(oid uint32, unit string) error {
	if unit != "" {
		if mapper.IsEpochType(oid) {
			return nil
		}
		return &outputError{fmt.Sprintf("the transform's \"timestamp\" column is of type %s; with timestamp_unit %q it must be an integer or numeric (epoch time)", typeName(oid), unit)}
	}
	switch oid {
	case pgtype.TimestamptzOID, pgtype.TimestampOID, pgtype.DateOID:
		return nil
	}
	return &outputError{fmt.Sprintf("the transform's \"timestamp\" column is of type %s, not timestamptz, timestamp or date (or an integer with timestamp_unit)", typeName(oid))}
}

var typeMap = pgtype.NewMap()

// typeName names a built-in type, or gives its OID.
func typeName(oid uint32) string {
	if t, ok := typeMap.TypeForOID(oid); ok {
		return t.Name
	}
	return "OID " + strconv.FormatUint(uint64(oid), 10)
}

// sameFields reports whether a result's columns are those Prepare described.
func sameFields(a, b []pgconn.FieldDescription) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || a[i].DataTypeOID != b[i].DataTypeOID {
			return false
		}
	}
	return true
}
