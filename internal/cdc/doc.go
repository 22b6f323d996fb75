// Package cdc holds the small types every stage of pgsignal shares: the
// position of a row in the replication stream, the event that is delivered to
// OneSignal, and the dead letter that records an event that could not be.
//
// A Position orders everything: events are totally ordered by (commit LSN,
// ordinal), which is commit order. Every other package refers to rows and
// events by Position; none of them needs to know how the others work.
package cdc
