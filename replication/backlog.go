package replication

import "time"

// backlogAge is how long ago the transactions the stream reads must have
// committed for it to be reading a backlog (after a pause, an outage, a bulk
// load) rather than keeping up with the writes. (The XLogData header's WAL
// end is no measure of the distance: a logical walsender sends the
// change's own position there.)
const backlogAge = time.Second

// BacklogSink is implemented by a Sink that trades latency for larger
// batches while the stream reads a backlog (sink.Sink does).
type BacklogSink interface {
	SetBacklog(backlog bool)
}

// noteBacklog tells the sink, when it changes, whether the stream reads a
// backlog: whether the transaction it begins reading committed more than
// backlogAge ago (lag).
func (s *Stream) noteBacklog(lag time.Duration) {
	b := lag > backlogAge
	if b == s.backlog {
		return
	}
	s.backlog = b
	if bs, ok := s.sink.(BacklogSink); ok {
		bs.SetBacklog(b)
	}
}
