// Package onesignaltest is a faithful fake of OneSignal's Custom Events API,
// for tests, the demo and benchmarks. It implements the contract in
// onesignal-api.md: the same paths, authentication, validation limits,
// responses and error bodies as the real service, plus fault injection.
//
// A Server is an http.Handler (New) or a local HTTP server on a loopback
// address (Start). It serves POST /apps/{app_id}/custom_events and the older
// POST /apps/{app_id}/integrations/custom_events, and answers:
//
//   - 404 for any other path, 405 for a method other than POST and GET;
//   - for GET (the fake's own addition, not OneSignal's API): 200 with
//     {"count","duplicates","events":[...]}, the last ?limit (at most
//     10,000) accepted events, so a person can see what was sent;
//   - 403 with AccessDeniedBody when the "Authorization: Key <key>" header is
//     missing or wrong (the scheme is case-insensitive);
//   - 400 when the app id is not the configured one;
//   - 413 when the body is over MaxBodyBytes (1 MB); the real client must never
//     send such a body, so the fake detects it;
//   - 400 with {"errors":["events[i]: ...", ...]} when the body is malformed or
//     any event fails validation (name, ids, timestamp, properties/payload,
//     MaxEventBytes, idempotency_key) or the Options.Reject hook; no event of
//     such a request is recorded;
//   - 400 with EmptyBatchBody for a request without events when
//     Options.RejectEmptyBatch is set (OneSignal documents no answer for it);
//   - 202 with {} when every event was accepted, or 202 with per-event
//     "not found" errors for events whose external_id is in the unknown-user
//     set (SetUnknownUsers); those events are not recorded.
//
// Field names match exactly (case-sensitive), a repeated field keeps its last
// value, unknown fields are ignored and a null optional field counts as
// absent. properties and payload are accepted as aliases, but not together.
//
// Accepted events are recorded in arrival order (Events) unless
// Options.CountOnly is set. An event whose idempotency_key was accepted within
// Options.DedupWindow is answered as a success but dropped and counted
// (Duplicates), as OneSignal does.
//
// Faults (SetFaults) are chosen per request from a seeded RNG, after routing
// and authentication and before the body is read: 500s, 429s with
// Retry-After, TCP resets, stalls, added latency, and 403 after N requests.
//
// Every method is safe for concurrent use. Close stops the listener, wakes
// stalled handlers (they answer 503) and waits for every handler to return.
package onesignaltest
