package check

import (
	"context"
	"strings"

	"github.com/pgsignal/pgsignal/replication"
)

// itemUpdates is the check that publishing updates breaks no UPDATE.
const itemUpdates = "updates"

// updateIdentity checks, when a table emits updates, that every table of
// the publication (and every configured table) has a replica identity:
// the publication then publishes updates, and PostgreSQL rejects the
// UPDATEs of a member table without one — the application's own writes.
func (r *runner) updateIdentity(ctx context.Context, d *db) {
	var refs []replication.TableRef
	emits := false
	for _, t := range d.tables {
		emits = emits || t.cfg.EmitsUpdates()
		if t.exists {
			refs = append(refs, replication.TableRef{Schema: t.cfg.Schema, Name: t.cfg.Name})
		}
	}
	if !emits {
		return
	}
	bad, err := replication.UpdateIdentityProblems(ctx, d.conn, r.cfg.Source.Publication, refs)
	if err != nil {
		r.queryFailed(itemUpdates, err)
		return
	}
	if len(bad) > 0 {
		r.fail(itemUpdates, "a table emits updates, so the publication publishes updates, and PostgreSQL would then reject every UPDATE of "+
			strings.Join(bad, ", ")+", which has no replica identity (pgsignal refuses to start)", replication.UpdateIdentityFix(bad))
		return
	}
	r.pass(itemUpdates, "every table of the publication has a replica identity: publishing updates breaks no UPDATE")
}
