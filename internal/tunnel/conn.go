package tunnel

import (
	"io"
	"net"
)

// conn is the database end of a forwarded channel. An SSH channel has no
// deadlines, which pgconn needs to interrupt a read; its end of a net.Pipe
// has them, and two goroutines copy between the pipe and the channel.
type conn struct {
	net.Conn
	remote net.Addr
}

// RemoteAddr returns the database's address as given to Dial: pgconn dials
// it again (through the tunnel) to send a cancel request.
func (c *conn) RemoteAddr() net.Addr { return c.remote }

// dialedAddr is a "host:port" reached through the tunnel.
type dialedAddr string

func (a dialedAddr) Network() string { return "tcp" }
func (a dialedAddr) String() string  { return string(a) }

// bridge returns a deadline-capable connection relaying to ch. The relay
// ends when either side closes; Close ends every relay.
func (t *Tunnel) bridge(ch net.Conn, addr string) (net.Conn, error) {
	local, far := net.Pipe()
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		_ = ch.Close()
		return nil, ErrClosed
	}
	t.conns[far] = struct{}{}
	t.wg.Add(2)
	t.mu.Unlock()
	go func() {
		// Database to pgconn. When the channel ends, closing far ends the
		// other copy and gives pgconn io.EOF.
		defer t.wg.Done()
		_, _ = io.Copy(far, ch)
		_ = far.Close()
		t.mu.Lock()
		delete(t.conns, far)
		t.mu.Unlock()
	}()
	go func() {
		// pgconn to the database. When pgconn closes its end, closing the
		// channel ends the other copy.
		defer t.wg.Done()
		_, _ = io.Copy(ch, far)
		_ = ch.Close()
	}()
	return &conn{Conn: local, remote: dialedAddr(addr)}, nil
}
