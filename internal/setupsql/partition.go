package setupsql

import (
	"fmt"
	"strings"

	"github.com/pgsignal/pgsignal/internal/pgcat"
)

// viaRootStatement writes, into the publication's DO block, the statement
// that makes the publication publish via the partition root when a
// configured table is partitioned (PostgreSQL 13 or later; before that a
// partitioned table cannot be published and ADD TABLE says so). It must run
// before the ADD TABLE checks: without it pg_publication_tables lists the
// partitions, not the table.
func viaRootStatement(b *strings.Builder, o Options) {
	if len(o.Tables) == 0 {
		return
	}
	names := make([]string, len(o.Tables))
	for i, t := range o.Tables {
		names[i] = "(" + pgcat.QuoteLiteral(t.Schema) + ", " + pgcat.QuoteLiteral(t.Name) + ")"
	}
	b.WriteString("  IF current_setting('server_version_num')::int >= 130000 AND EXISTS (SELECT FROM pg_catalog.pg_class c\n")
	b.WriteString("      JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace\n")
	fmt.Fprintf(b, "      WHERE c.relkind = 'p' AND (n.nspname::text, c.relname::text) IN (%s)) THEN\n", strings.Join(names, ", "))
	fmt.Fprintf(b, "    ALTER PUBLICATION %s SET (publish_via_partition_root = true);\n", pgcat.QuoteIdent(o.Publication))
	b.WriteString("  END IF;\n")
}
