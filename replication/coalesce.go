package replication

import (
	"io"
	"time"
)

// Read coalescing. The walsender sends every pgoutput message as soon as it
// is decoded (Begin, each row, Commit), so a reader that keeps up finds one
// or two messages per read: a stream of one-row transactions then costs a
// read system call, a trip through the Go scheduler and an epoll wait per
// message, most of pgsignal's CPU time. After a read that brought little
// (under coalesceBytes: a few messages, the reader has caught up), the next
// read waits until the window has passed since that read, so that it finds
// what arrived meanwhile in one call. A read that brought more is not
// followed by a wait. A quiet stream is not delayed either (its next read
// comes long after the last); the cost is at most the window of added
// latency on a busy stream.
//
// Over a Unix socket the walsender can have only about 200 messages in
// flight (the kernel charges each send its buffer, not its bytes), so there
// the window can make it wait; a shorter window there (200 µs) was measured
// and was worse: W2 over the socket at 0.52 of the limit instead of 0.62,
// with 45 % more of pgsignal's CPU per event, on a machine whose two cores
// were already busy.
const (
	coalesceWindow = time.Millisecond
	// coalesceBytes: a read that brought less is small; a read that asks
	// for less is never delayed (it completes a message).
	coalesceBytes = 4 << 10
)

// coalescingReader delays a read that follows a small one closely (see
// coalesceWindow). It is read by one goroutine at a time.
type coalescingReader struct {
	r io.Reader
	// beforeRead, when set, is called before every read of the network:
	// every message received so far has been handled (see Flusher).
	beforeRead func()
	last       time.Time // when the last small read returned
	small      bool      // the last read brought less than coalesceBytes
}

func (c *coalescingReader) Read(p []byte) (int, error) {
	if c.beforeRead != nil {
		c.beforeRead()
	}
	if c.small && len(p) >= coalesceBytes {
		if d := coalesceWindow - time.Since(c.last); d > 0 {
			time.Sleep(d)
		}
	}
	n, err := c.r.Read(p)
	c.small = n < coalesceBytes
	if c.small {
		c.last = time.Now()
	}
	return n, err
}
