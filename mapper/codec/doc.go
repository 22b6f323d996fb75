// Package codec turns PostgreSQL's text form of a value into JSON for an
// event: AppendJSON encodes one column value by its type OID, AppendString
// quotes a string, ParseTimestamp and AppendTimestampMillis read and write
// timestamps, and InZone pins a timestamp without time zone to the database's
// zone. It is used by the mapper, the SQL transforms and the backfill reader;
// it knows nothing of replication or of events.
package codec
