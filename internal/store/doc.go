// Package store is the one home of pgsignal's bookkeeping in PostgreSQL
// (full mode): the schema's DDL (SchemaDDL, EnsureSchema), the checkpoint
// row of sync_state (TableStore, which implements checkpoint.Store), the
// backfills row, the runs rows, the dead_letters rows (written and read
// for sink's table adapters), the relations rows (replication's
// RelationWatch), and the reads `pgsignal status` makes. Its functions take
// the schema and slot as plain values and return plain structs; it depends
// only on the kernel (internal/cdc) and internal/pgcat.
package store
