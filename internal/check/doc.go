// Package check is pgsignal's "test connection": it checks, item by item,
// everything pgsignal needs from the database and from OneSignal, and says
// for each failure how to fix it (the SQL or the configuration to change).
//
// Contract: Run never writes to the database and creates no OneSignal event
// (it posts an empty batch). It returns one Item per check, in a fixed
// order: an item that cannot run because an earlier one failed is reported
// as skipped, with the reason. The report is OK when no item failed;
// warnings are advice and do not fail it. No secret (the database password,
// the API key) appears in any item.
package check
