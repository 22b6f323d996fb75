package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/replication"
)

// checkMappedColumns makes sure every column the configuration maps exists
// in its table before anything is created or streamed. A typo would
// otherwise turn every row into a dead letter while the slot moves past
// them. The error is a *config.ValidationError naming each key, its line
// and the columns the table has.
func checkMappedColumns(ctx context.Context, pool *pgxpool.Pool, cfg *config.Config) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("check the mapped columns: %w", err)
	}
	defer conn.Release()
	var problems []config.Problem
	for i, t := range cfg.Tables {
		mapped := t.MappedColumns()
		if len(mapped) == 0 {
			continue
		}
		tc, err := replication.ReadTableColumns(ctx, conn.Conn().PgConn(), replication.TableRef{Schema: t.Schema, Name: t.Name})
		if errors.Is(err, replication.ErrTableNotFound) {
			path := fmt.Sprintf("tables[%d].table", i)
			problems = append(problems, cfg.Problem(path, "the table %s.%s does not exist (or the user cannot see it); correct the name or create the table",
				t.Schema, t.Name))
			continue
		}
		if err != nil {
			return err
		}
		have := map[string]bool{}
		names := make([]string, len(tc.Rel.Columns))
		for j, c := range tc.Rel.Columns {
			have[c.Name] = true
			names[j] = strconv.Quote(c.Name)
		}
		for _, m := range mapped {
			if have[m.Column] {
				continue
			}
			path := fmt.Sprintf("tables[%d].%s", i, m.Key)
			problems = append(problems, cfg.Problem(path, "%s.%s has no column %q; its columns are %s. Correct the key and start again: nothing was streamed",
				t.Schema, t.Name, m.Column, strings.Join(names, ", ")))
		}
	}
	if len(problems) > 0 {
		return &config.ValidationError{Problems: problems}
	}
	return nil
}
