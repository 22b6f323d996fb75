package store

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
)

// QueryStatus is what `pgsignal status` shows of the query method
// (source.method: query): where each table's polling stands. The query
// method has no replication slot.
type QueryStatus struct {
	// Available is false while the positions cannot be read; Note then
	// says why.
	Available bool   `json:"available"`
	Note      string `json:"note,omitempty"`
	// Tables are the configured tables' positions, in configuration order.
	Tables []QueryTablePosition `json:"tables,omitempty"`
}

// QueryTablePosition is one table's position in the query method.
type QueryTablePosition struct {
	// Table is the configured table, schema.name.
	Table string `json:"table"`
	// Position is the cursor value up to which every row was handled.
	Position string `json:"position"`
}

// QueryStatusSource says where the query method keeps its positions: the
// bookkeeping schema in full mode, the state file in read-only mode.
type QueryStatusSource struct {
	// Pool reaches the database; Schema is the bookkeeping schema (full
	// mode).
	Pool   *pgxpool.Pool
	Schema string
	// StateFile is source.state_file (read-only mode), "" in full mode.
	StateFile string
	// Tables are the configured tables, schema.name, in configuration
	// order.
	Tables []string
}

// ReadQueryStatus returns the query method's positions.
//
// HOOK (issue 16): the query method's source defines where it keeps its
// positions (<schema>.query_positions in full mode, the state file's
// "query" section in read-only mode: internal/store/query.go). Until it is
// merged, this reports them as not available, and `pgsignal status` says
// so; replace the body with the read of that table or section.
func ReadQueryStatus(ctx context.Context, src QueryStatusSource) (*QueryStatus, error) {
	_ = ctx
	return &QueryStatus{Note: "per-table positions are not available in this build"}, nil
}
