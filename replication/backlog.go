package replication

// backlogBytes is how far behind the server's WAL end the stream must read
// to be reading a backlog (after a pause, an outage, a bulk load) rather
// than keeping up with the writes.
const backlogBytes = 1 << 20

// BacklogSink is implemented by a Sink that trades latency for larger
// batches while the stream reads a backlog (sink.Sink does).
type BacklogSink interface {
	SetBacklog(backlog bool)
}

// noteBacklog tells the sink, when it changes, whether the stream reads a
// backlog: the message at WAL position at is more than backlogBytes behind
// the server's WAL end.
func (s *Stream) noteBacklog(at, end uint64) {
	b := end > at && end-at > backlogBytes
	if b == s.backlog {
		return
	}
	s.backlog = b
	if bs, ok := s.sink.(BacklogSink); ok {
		bs.SetBacklog(b)
	}
}
