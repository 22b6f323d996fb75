package app

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/pgsignal/pgsignal/internal/pgtest"
	"github.com/pgsignal/pgsignal/internal/store"
)

// Instances starting at once create the bookkeeping schema at once: every
// one of them must succeed (before, all but one could fail with 23505 or
// 42P07 on the catalog entries of the schema, a table or a type).
func TestEnsureSchemaConcurrently(t *testing.T) {
	pg := pgtest.New(t, pgtest.Options{})
	ctx := context.Background()
	const rounds, instances = 10, 8
	failed := 0
	for round := range rounds {
		schema := fmt.Sprintf("census_%d", round)
		var wg sync.WaitGroup
		errs := make([]error, instances)
		start := make(chan struct{})
		for i := range instances {
			// A pool per instance, connected before the start signal.
			pool, err := pgxpool.New(ctx, pg.DSN(""))
			if err != nil {
				t.Fatal(err)
			}
			defer pool.Close()
			if err := pool.Ping(ctx); err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = store.EnsureSchema(ctx, pool, schema)
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				failed++
				t.Errorf("round %d, instance %d: %v", round, i, err)
			}
		}
	}
	t.Logf("figures: %d rounds of %d concurrent schema creations, %d failed", rounds, instances, failed)
}
