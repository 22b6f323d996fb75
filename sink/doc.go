// Package sink delivers events to OneSignal's Custom Events API: Client
// posts one request (client.go), Sink spreads events over lanes by user,
// batches them, retries what can succeed later, splits a batch on a 400 and
// turns what OneSignal refuses into dead letters (sink.go).
//
// Its contract with the stream: TrySubmit never blocks (false is
// backpressure; wait for Ready), and an event is reported handled (the
// handled callback, which feeds the checkpoint.Tracker) only once it is
// accepted by OneSignal or durably written by the DeadLetterStore. The
// dead-letter stores (deadletter.go: the table of the bookkeeping schema in
// full mode, a JSONL file in read-only mode) and the operator's list, replay
// and discard (admin.go) live here too. An event older than
// Config.MaxEventAge when its batch is formed, or before a retry, is not
// sent: it is dead-lettered or dropped, and handled (stale.go). sink/onesignaltest is the fake
// OneSignal the tests run against.
package sink
