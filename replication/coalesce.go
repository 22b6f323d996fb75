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
// flight (the kernel charges each send its buffer, not its bytes), so a wait
// there makes it wait too: a Unix-socket connection reads ahead
// (readAheadConn) and waits only coalesceWindowUnix after a small read. A
// window of 200 µs without reading ahead was measured worse than 1 ms on an
// older 2-vCPU VM (W2 over the socket 0.52 of the limit instead of 0.62).
const (
	coalesceWindow = time.Millisecond
	// coalesceWindowUnix is the window of a connection that reads ahead:
	// short, as the walsender fills the socket's ~200 messages in about
	// 0.4 ms at full speed. W2 over the socket (2 vCPUs): 50 µs made
	// 16,437 reads for 200,000 transactions against 88,024 with no window,
	// at the same rate and CPU per event; 200 µs made 10,847 at the same
	// rate, but a wait that long can fill half the socket.
	coalesceWindowUnix = 50 * time.Microsecond
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

// hookReader calls beforeRead before a read that finds nothing read ahead
// in ahead (the read would wait for the network).
type hookReader struct {
	r          io.Reader
	ahead      *readAheadConn
	beforeRead func()
}

func (h *hookReader) Read(p []byte) (int, error) {
	if h.beforeRead != nil && h.ahead.Buffered() == 0 {
		h.beforeRead()
	}
	return h.r.Read(p)
}
