package app

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/cdc"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/mapper/transform"
	"github.com/pgsignal/pgsignal/replication"
)

// transforms adapts the SQL transforms to the stream's BatchMapper.
type transforms struct {
	t       *transform.Transformer
	updates map[replication.TableRef]bool // tables whose updates are events
}

var _ replication.BatchMapper = (*transforms)(nil)

// TransformSpec returns the transform of a configured table (one with
// Transform set); check builds its trial with it, so that it runs the
// transform exactly as run does.
func TransformSpec(t config.Table) transform.Spec {
	return transform.Spec{Schema: t.Schema, Table: t.Name, SQL: t.Transform,
		NamePrefix: t.NamePrefix, TimestampZone: t.TimestampZone, TimestampUnit: t.TimestampUnit,
		Timeout: t.TransformTimeout}
}

// TransformSpecs returns the transforms of the configured tables.
func TransformSpecs(cfg *config.Config) []transform.Spec {
	var specs []transform.Spec
	for _, t := range cfg.Tables {
		if t.Transform == "" {
			continue
		}
		specs = append(specs, TransformSpec(t))
	}
	return specs
}

// newTransforms prepares the configured transforms on their own read-only
// pool (nil when there are none; close the pool when done). A transform
// PostgreSQL cannot prepare is a configuration error.
func newTransforms(ctx context.Context, cfg *config.Config, src replication.Source) (replication.BatchMapper, *pgxpool.Pool, error) {
	specs := TransformSpecs(cfg)
	if len(specs) == 0 {
		return nil, nil, nil
	}
	pool, err := replication.NewTransformPool(ctx, src)
	if err != nil {
		return nil, nil, err
	}
	t, err := transform.New(pool, specs)
	if err != nil {
		pool.Close()
		return nil, nil, fmt.Errorf("transform: %w", err)
	}
	if err := t.Check(ctx); err != nil {
		pool.Close()
		return nil, nil, err
	}
	b := &transforms{t: t, updates: map[replication.TableRef]bool{}}
	for _, tb := range cfg.Tables {
		if tb.Transform != "" && tb.EmitsUpdates() {
			b.updates[replication.TableRef{Schema: tb.Schema, Name: tb.Name}] = true
		}
	}
	return b, pool, nil
}

// Batched implements replication.BatchMapper.
func (b *transforms) Batched(rel *replication.Relation, update bool) bool {
	return b.t.Handles(rel) && (!update || b.updates[rel.Key()])
}

// MapBatch implements replication.BatchMapper.
func (b *transforms) MapBatch(ctx context.Context, chs []*replication.Change) ([][]*cdc.Event, error) {
	in := make([]transform.Input, len(chs))
	for i, ch := range chs {
		in[i] = transform.Input{Rel: ch.Rel, Values: ch.Values, Pos: ch.Pos, CommitTime: ch.CommitTime, Key: ch.IdempotencyKey}
	}
	return b.t.Evaluate(ctx, in)
}

// UsesColumn implements replication.ColumnUser.
func (b *transforms) UsesColumn(rel *replication.Relation, col int) bool {
	return b.t.UsesColumn(rel, col)
}
