// Package pgcat is pgsignal's one home for facts about PostgreSQL itself:
// how identifiers and literals are quoted (QuoteIdent, QuoteLiteral for SQL,
// QuoteReplLiteral for replication-protocol commands), the SQLSTATE codes the
// program reacts to (named constants, Code, Is and IsDataError) and the
// queries of pg_replication_slots that more than one command needs.
// It depends on pgx only; every stage and command may use it.
package pgcat
