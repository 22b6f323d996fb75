package transform

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgsignal/pgsignal/internal/pgcat"
)

// trial evaluates c once, on a sample row of its table (a row of NULLs when
// the table is empty or cannot be read), in a read-only transaction that is
// rolled back, with the transform's statement timeout. It finds what only
// running reveals: a write (nextval(), a function that writes: SQLSTATE
// 25006), a joined table the user may not read (42501), a function that is
// missing at run time. An error of the sample row's data (a failed cast on
// it, a division by zero) or a timeout on it says nothing about the
// transform and passes.
func trial(ctx context.Context, pc *pgconn.PgConn, c *compiled) error {
	vals := make([][]byte, len(c.rel.Columns))
	if len(c.rel.Columns) > 0 {
		cols := make([]string, len(c.rel.Columns))
		for i, col := range c.rel.Columns {
			cols[i] = pgcat.QuoteIdent(col.Name)
		}
		res := pc.ExecParams(ctx, `SELECT `+strings.Join(cols, ", ")+` FROM `+pgcat.QuoteIdent(c.spec.Schema)+"."+pgcat.QuoteIdent(c.spec.Table)+` LIMIT 1`,
			nil, nil, nil, nil).Read()
		if res.Err == nil && len(res.Rows) == 1 && len(res.Rows[0]) == len(vals) {
			vals = res.Rows[0]
		}
	}
	begin := `BEGIN ISOLATION LEVEL READ COMMITTED READ ONLY; SET LOCAL statement_timeout = ` + strconv.FormatInt(c.spec.timeout().Milliseconds(), 10)
	if _, err := pc.Exec(ctx, begin).ReadAll(); err != nil {
		return fmt.Errorf("run the transform on a sample row: begin: %w", err)
	}
	params, oids := batchParams(c, []Input{{Rel: c.rel, Values: vals}}, []int{0})
	rr := pc.ExecParams(ctx, c.st.sql, params, oids, binaryFormat, nil)
	for rr.NextRow() {
	}
	_, err := rr.Close()
	if _, rerr := pc.Exec(ctx, `ROLLBACK`).ReadAll(); rerr != nil && err == nil {
		return fmt.Errorf("run the transform on a sample row: rollback: %w", rerr)
	}
	var pe *pgconn.PgError
	if err == nil || !errors.As(err, &pe) {
		return err
	}
	if isStatementTimeout(err) || (pe.Code != pgcat.ReadOnlySQLTransaction && isRowError(pe)) {
		return nil
	}
	msg := fmt.Sprintf("it fails when run (once, on a sample row, in a rolled-back read-only transaction): %s (SQLSTATE %s)", pe.Message, pe.Code)
	if pe.Detail != "" {
		msg += "; " + pe.Detail
	}
	switch {
	case pe.Code == pgcat.ReadOnlySQLTransaction:
		msg += "; transforms run in read-only sessions and may run more than once for a row: they must not write (no nextval(), setval(), INSERT or function that writes)"
	case pe.Code == pgcat.InsufficientPrivilege:
		msg += "; grant the pgsignal user SELECT (or EXECUTE) on what the transform reads"
	case pe.Hint != "":
		msg += "; " + pe.Hint
	}
	return &compileError{msg: msg, err: err}
}

// isRowError reports whether pe is an error of the rows' data (rowError).
func isRowError(pe *pgconn.PgError) bool {
	_, ok := rowError(pe)
	return ok
}
