package replication

import (
	"context"
	"net"
	"os"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// Read-ahead. Over a Unix socket the walsender can have only about 200
// pgoutput messages in flight: the kernel charges every send(2) its whole
// buffer, about 1 KiB for a short row, against net.core.wmem_default
// (212,992 bytes by default). A reader that reads the socket only between
// handling what it read leaves the walsender blocked on a full socket while
// it handles, and itself waiting while the woken walsender decodes: the two
// take turns instead of running at once. Measured on W2 (200,000 one-row
// transactions, PostgreSQL 15, 2 vCPUs), pgsignal then kept the machine
// only 57 % busy and reached 0.40 of pg_recvlogical's rate; with a 4 MiB
// wmem_default, the same binary reached 0.78.
//
// readAheadConn reads the connection on a goroutine of its own into a
// bounded buffer (readAheadSize), so that the socket is drained while the
// stream handles what came before. It is the connection pgconn sees
// (beneath TLS, when TLS is on): deadlines apply to the reads of the
// buffer, as for a net.Conn, and the goroutine's own reads have none (a
// silent network is noticed by the reader's deadline, and Close ends the
// goroutine).
const (
	// readAheadSize bounds the bytes read ahead of the stream.
	readAheadSize = 4 << 20
	// readAheadMin is the least room the goroutine reads into (except the
	// end of the ring): it waits for the stream to free more.
	readAheadMin = 64 << 10
)

type readAheadConn struct {
	net.Conn
	window time.Duration // read coalescing, see coalesceWindow

	mu  sync.Mutex
	buf []byte
	// r and w count the bytes taken by Read and read from the network:
	// buf[r%len : w%len] (wrapping) is buffered.
	r, w uint64
	err  error // the network's error, returned once the buffer is empty
	// consumerWaits and fillerWaits: a side is waiting for the other to
	// signal data (data) or room (room).
	consumerWaits, fillerWaits bool
	data, room                 chan struct{}

	deadline  deadline
	closeOnce sync.Once
	closed    chan struct{}
}

func newReadAheadConn(c net.Conn, window time.Duration) *readAheadConn {
	ra := &readAheadConn{
		Conn:     c,
		window:   window,
		buf:      make([]byte, readAheadSize),
		data:     make(chan struct{}, 1),
		room:     make(chan struct{}, 1),
		closed:   make(chan struct{}),
		deadline: newDeadline(),
	}
	go ra.fill()
	return ra
}

// readAheadDialer wraps dial so that every Unix-socket connection it makes
// reads ahead; each is also given to made (nil for a TCP connection, whose
// kernel buffers already let the walsender run ahead: up to net.ipv4.tcp_wmem
// and tcp_rmem, megabytes, autotuned). The last one made is the one used.
func readAheadDialer(dial pgconn.DialFunc, made func(*readAheadConn)) pgconn.DialFunc {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		if network != "unix" {
			made(nil)
			return c, nil
		}
		ra := newReadAheadConn(c, coalesceWindowUnix)
		made(ra)
		return ra, nil
	}
}

// readsAhead tells whether conn reads ahead (a Unix-socket connection made
// by ConnectReplication for a stream).
func readsAhead(conn *pgconn.PgConn) bool {
	_, ok := conn.Conn().(*readAheadConn)
	return ok
}

// Read returns buffered bytes, waiting for some until the read deadline.
func (c *readAheadConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		select {
		case <-c.closed:
			return 0, net.ErrClosed
		case <-c.deadline.wait():
			return 0, os.ErrDeadlineExceeded
		default:
		}
		c.mu.Lock()
		if n := c.w - c.r; n > 0 {
			size := uint64(len(c.buf))
			off := c.r % size
			k := copy(p, c.buf[off:min(off+n, size)])
			c.r += uint64(k)
			wake := c.fillerWaits && size-(c.w-c.r) >= readAheadMin
			if wake {
				c.fillerWaits = false
			}
			c.mu.Unlock()
			if wake {
				signal(c.room)
			}
			return k, nil
		}
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return 0, err
		}
		c.consumerWaits = true
		c.mu.Unlock()
		select {
		case <-c.data:
		case <-c.deadline.wait():
		case <-c.closed:
		}
	}
}

// Buffered returns the number of bytes read from the network and not yet
// taken by Read.
func (c *readAheadConn) Buffered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.w - c.r)
}

// fill reads the network into the buffer until an error (Close included).
func (c *readAheadConn) fill() {
	size := uint64(len(c.buf))
	for {
		c.mu.Lock()
		for size-(c.w-c.r) < readAheadMin {
			c.fillerWaits = true
			c.mu.Unlock()
			select {
			case <-c.room:
			case <-c.closed:
				return
			}
			c.mu.Lock()
		}
		off := c.w % size
		end := min(size, off+size-(c.w-c.r))
		c.mu.Unlock()

		n, err := c.Conn.Read(c.buf[off:end])
		at := time.Now()

		c.mu.Lock()
		c.w += uint64(n)
		if err != nil {
			c.err = err
		}
		wake := c.consumerWaits
		c.consumerWaits = false
		c.mu.Unlock()
		if wake {
			signal(c.data)
		}
		if err != nil {
			return
		}
		// Coalescing: after a read that brought little (the stream keeps
		// up), the next waits for the window to pass.
		if c.window > 0 && n < coalesceBytes {
			time.Sleep(time.Until(at.Add(c.window)))
		}
	}
}

// signal wakes the waiter of ch, if any, without blocking.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Close closes the connection, which ends the read-ahead goroutine.
func (c *readAheadConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// SetDeadline sets the read deadline (of the buffer) and the write deadline.
func (c *readAheadConn) SetDeadline(t time.Time) error {
	c.deadline.set(t)
	return c.Conn.SetWriteDeadline(t)
}

// SetReadDeadline sets the deadline of Read: the network is read ahead
// regardless.
func (c *readAheadConn) SetReadDeadline(t time.Time) error {
	c.deadline.set(t)
	return nil
}

// deadline is a read deadline as a channel that is closed when it passes
// (as net.Pipe keeps its deadlines).
type deadline struct {
	mu     *sync.Mutex
	timer  *time.Timer
	cancel chan struct{} // closed once the deadline has passed
}

func newDeadline() deadline {
	return deadline{mu: new(sync.Mutex), cancel: make(chan struct{})}
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait for it to close cancel
	}
	d.timer = nil
	closed := isClosed(d.cancel)
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		cancel := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(cancel) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

var _ net.Conn = (*readAheadConn)(nil)
