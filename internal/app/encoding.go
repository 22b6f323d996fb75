package app

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
)

// warnEncoding logs a warning at start when the database is SQL_ASCII:
// PostgreSQL neither checks nor converts its text, so bytes that are not
// UTF-8 reach pgsignal as they are, and the rows holding them in a name,
// external_id or property become dead letters. It is advice, not a failure:
// a SQL_ASCII database that holds only UTF-8 works.
func warnEncoding(ctx context.Context, pool *pgxpool.Pool, log *zap.Logger) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return // the caller's next query reports it
	}
	defer conn.Release()
	if enc := conn.Conn().PgConn().ParameterStatus("server_encoding"); enc == "SQL_ASCII" {
		log.Warn("the database is SQL_ASCII: PostgreSQL does not check that its text is UTF-8; "+
			"a row whose name, external_id or properties hold bytes that are not valid UTF-8 becomes a dead letter "+
			"(sending it would make different users one). The database should use UTF8 (see pgsignal check)",
			zap.String("server_encoding", enc))
	}
}
