package app

import (
	"context"
	"sort"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/replication"
)

// tableHealth holds the error conditions of the configured tables that
// leave the process running but make rows fail: a mapped column renamed or
// dropped (every row of the table becomes a dead letter), and the relation
// error that stops the run (a table replaced, renamed or taken out of the
// publication). Each fails /readyz and is counted.
type tableHealth struct {
	mu       sync.Mutex
	mapping  map[string]string // table → why its rows cannot be mapped
	relation string            // the relation error that stops the run
	detected uint64            // conditions detected
	relErr   error
}

var (
	descTableErrors = prometheus.NewDesc("pgsignal_table_errors",
		"Configured tables whose rows cannot become events now (a mapped column renamed or dropped, a table replaced or taken out of the publication).", nil, nil)
	descTableErrorsTotal = prometheus.NewDesc("pgsignal_table_errors_total",
		"Table error conditions detected (see pgsignal_table_errors).", nil, nil)
)

// Describe implements prometheus.Collector.
func (h *tableHealth) Describe(ch chan<- *prometheus.Desc) {
	ch <- descTableErrors
	ch <- descTableErrorsTotal
}

// Collect implements prometheus.Collector.
func (h *tableHealth) Collect(ch chan<- prometheus.Metric) {
	h.mu.Lock()
	n, total := len(h.mapping), h.detected
	if h.relation != "" {
		n++
	}
	h.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(descTableErrors, prometheus.GaugeValue, float64(n))
	ch <- prometheus.MustNewConstMetric(descTableErrorsTotal, prometheus.CounterValue, float64(total))
}

// planned records the mapping state of a table's new definition (the
// mapper's OnPlan): a problem is logged at error once, when it appears,
// and cleared when a definition maps again.
func (h *tableHealth) planned(log *zap.Logger, table, problem string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mapping == nil {
		h.mapping = map[string]string{}
	}
	prev, had := h.mapping[table]
	switch {
	case problem == "" && had:
		delete(h.mapping, table)
		log.Info("table maps again", zap.String("table", table))
	case problem != "" && prev != problem:
		h.mapping[table] = problem
		h.detected++
		log.Error("no row of the table can become an event: each becomes a dead letter until the table or the configuration is fixed",
			zap.String("table", table), zap.String("problem", problem))
	}
}

// failRelation records the relation error that stops the run.
func (h *tableHealth) failRelation(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.relErr == nil {
		h.relErr, h.relation = err, err.Error()
		h.detected++
	}
}

// err returns the relation error, if any.
func (h *tableHealth) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.relErr
}

// problem returns what /readyz reports, "" when every table is fine.
func (h *tableHealth) problem() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	if h.relation != "" {
		out = append(out, h.relation)
	}
	tables := make([]string, 0, len(h.mapping))
	for t := range h.mapping {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	for _, t := range tables {
		out = append(out, "table "+t+": "+h.mapping[t])
	}
	return strings.Join(out, "; ")
}

// relationWatch returns the watch of the configured tables' relations; in
// full mode it keeps them in the bookkeeping schema.
func (a *App) relationWatch(tables []replication.PublishedTable, full bool) *replication.RelationWatch {
	cfg := a.opts.Config
	rw := &replication.RelationWatch{Publication: cfg.Source.Publication, Logger: a.log.Named("relations")}
	rw.Filters = map[replication.TableRef]string{}
	for _, t := range tables {
		rw.Tables = append(rw.Tables, t.TableRef)
		rw.Filters[t.TableRef] = t.Where
	}
	if full {
		rw.Schema, rw.Slot, rw.Resend = cfg.Source.Schema, cfg.Source.Slot, true
	}
	return rw
}

// watchRelations reads the catalog until ctx ends; a relation error is
// logged, fails /readyz and stops the run gracefully (what was received is
// delivered and confirmed; the rows the error is about were never
// received), and Run returns it.
func (a *App) watchRelations(ctx context.Context, rw *replication.RelationWatch, pool *pgxpool.Pool) {
	err := rw.Run(ctx, pool, a.opts.RelationCheck)
	if err == nil {
		return
	}
	a.obs.health.failRelation(err)
	a.log.Error("stopping: a configured table cannot be streamed", zap.Error(err))
	a.Stop()
}

// warnUpdatesIntoFilter says, at start, when an insert-only table with a
// where shares a publication that publishes updates (another table emits
// them): PostgreSQL then sends an UPDATE that moves a row into the filter
// as an INSERT, which becomes an event, as the README says.
func warnUpdatesIntoFilter(log *zap.Logger, tables []replication.PublishedTable) {
	var emitting, filtered []string
	for _, t := range tables {
		switch {
		case t.Updates:
			emitting = append(emitting, t.Display())
		case t.Where != "":
			filtered = append(filtered, t.Display())
		}
	}
	if len(emitting) > 0 && len(filtered) > 0 {
		log.Warn("the publication publishes updates, so an UPDATE that moves a row of an insert-only table with a where into its filter arrives as an INSERT and becomes an event (see README, Row filters)",
			zap.Strings("insert_only_filtered", filtered), zap.Strings("emitting_updates", emitting))
	}
}
