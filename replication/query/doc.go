// Package query is the query method's source (source.method: query): it
// polls each table by a cursor column (an integer with a unique index,
// filled from a sequence or identity) instead of decoding a replication
// slot, so it needs no slot, no publication and no REPLICATION attribute,
// and works on a hot standby of any version.
//
// Each Poll runs in one REPEATABLE READ, READ ONLY transaction: it reads
// the snapshot (pg_current_snapshot(), txid_current_snapshot() before
// PostgreSQL 13), the rows of the cursor values not seen yet below the
// highest value seen (transactions that took their values early and
// committed late), and the new rows above it, each through the cursor's
// index and under a LIMIT. Per table the Poller keeps a final watermark
// (every value at or below it was seen or will never be visible) and the
// values seen above it as ranges; a poll's highest value becomes final
// once the snapshots show that every transaction that could still commit
// a value below it has ended (see horizon). The caller sends the rows a
// poll returns and stores State only once their events are handled, so a
// restart never skips a row; keys are cdc.BackfillKey of the system
// identifier, the table and the primary key, so a re-read sends the same
// keys.
package query
