package replication

import (
	"io"
	"time"
)

// Read coalescing. The walsender sends every pgoutput message as soon as it
// is decoded (Begin, each row, Commit), so a reader that keeps up finds one
// or two messages per read: a stream of one-row transactions then costs a
// read system call, a trip through the Go scheduler and an epoll wait per
// message, most of pgsignal's CPU time. After a read that drained the socket
// (it did not fill the buffer: the reader has caught up), the next read waits
// until coalesceWindow has passed since that read, so that it finds what
// arrived meanwhile in one call, rather than failing (EAGAIN), parking and
// waking for the next message. A stream that has more to send than fits the
// buffer is never delayed, nor is a quiet one (its next read comes long after
// the last); the cost is at most coalesceWindow of added latency on a busy
// stream.
const (
	coalesceWindow = time.Millisecond
	// coalesceBytes is the least a read must ask for to be delayed: a
	// smaller one completes a message.
	coalesceBytes = 32 << 10
)

// coalescingReader delays a read that follows a small one closely (see
// coalesceWindow). It is read by one goroutine at a time.
type coalescingReader struct {
	r       io.Reader
	last    time.Time // when the last draining read returned
	drained bool      // the last read did not fill its buffer
}

func (c *coalescingReader) Read(p []byte) (int, error) {
	if c.drained && len(p) >= coalesceBytes {
		if d := coalesceWindow - time.Since(c.last); d > 0 {
			time.Sleep(d)
		}
	}
	n, err := c.r.Read(p)
	c.drained = n < len(p)
	if c.drained {
		c.last = time.Now()
	}
	return n, err
}
