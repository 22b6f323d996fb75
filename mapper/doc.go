// Package mapper turns decoded rows into OneSignal custom events by the
// configured per-table rules.
//
// Map is a pure function of its input: no I/O, no clock, no shared mutable
// state beyond a cache of compiled plans. A row that cannot become an event
// (NULL name or external_id, an unparsable timestamp, properties that are not
// a JSON object, an event over OneSignal's 2024-byte limit, a mapped column
// missing from the table) becomes an event with Reject set: the sink writes
// it to the dead letters with that reason, and the stream goes on.
package mapper
