package store

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/statefile"
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
	// Name is the name the positions are stored under (source.slot).
	Name string
	// StateFile is source.state_file (read-only mode), "" in full mode.
	StateFile string
	// Tables are the configured tables, schema.name, in configuration
	// order.
	Tables []string
}

// ReadQueryStatus returns the query method's positions: the rows of
// <schema>.query_positions named src.Name in full mode, the state file's
// "query" section in read-only mode (as internal/app writes them).
func ReadQueryStatus(ctx context.Context, src QueryStatusSource) (*QueryStatus, error) {
	raw := map[string][]byte{}
	if src.StateFile != "" {
		f, err := statefile.Open(src.StateFile)
		if err != nil {
			return nil, err
		}
		var v struct {
			Tables map[string]json.RawMessage `json:"tables"`
		}
		ok, err := f.Get("query", &v)
		if err != nil {
			return nil, err
		}
		if !ok {
			return &QueryStatus{Note: "no position in " + src.StateFile + " yet: pgsignal run has not polled"}, nil
		}
		for t, p := range v.Tables {
			raw[t] = p
		}
	} else {
		var exists bool
		if err := src.Pool.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, queryPositionsTable(src.Schema)).Scan(&exists); err != nil {
			return nil, fmt.Errorf("look up %s: %w", queryPositionsTable(src.Schema), err)
		}
		if !exists {
			return &QueryStatus{Note: "no position in the bookkeeping schema yet: pgsignal run has not polled"}, nil
		}
		r, err := LoadQueryPositions(ctx, src.Pool, src.Schema, src.Name)
		if err != nil {
			return nil, err
		}
		raw = r
	}
	q := &QueryStatus{Available: true}
	for _, t := range src.Tables {
		q.Tables = append(q.Tables, QueryTablePosition{Table: t, Position: describeQueryPosition(raw[t])})
	}
	return q, nil
}

// describeQueryPosition words a stored table position ({"final": n |
// "none", "seen": [[from, to], ...]}).
func describeQueryPosition(b []byte) string {
	if b == nil {
		return "none stored yet"
	}
	var p struct {
		Final json.RawMessage `json:"final"`
		Seen  [][2]int64      `json:"seen"`
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return "unreadable (" + err.Error() + ")"
	}
	var out string
	if string(p.Final) == `"none"` {
		out = "the table was empty at the first poll"
	} else {
		out = "every row with a cursor up to " + string(p.Final) + " handled"
	}
	if len(p.Seen) > 0 {
		n := int64(0)
		for _, r := range p.Seen {
			n += r[1] - r[0] + 1
		}
		out += fmt.Sprintf("; %d values above it handled, up to %d", n, p.Seen[len(p.Seen)-1][1])
	}
	return out
}
