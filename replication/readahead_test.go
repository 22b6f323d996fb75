package replication

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"

	"testing"
	"time"
)

// unixPair returns the two ends of a Unix stream socket: server writes as
// the walsender does (its send buffer set to sndbuf bytes), client reads.
func unixPair(t *testing.T, sndbuf int) (server, client net.Conn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	if sndbuf > 0 {
		if err := server.(*net.UnixConn).SetWriteBuffer(sndbuf); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	return server, client
}

// sendMessages writes n messages of size bytes, each with its own write
// (as the walsender sends each pgoutput message), within limit; it returns
// how many were written when the limit passed.
func sendMessages(c net.Conn, n, size int, limit time.Duration) (int, error) {
	_ = c.SetWriteDeadline(time.Now().Add(limit))
	msg := bytes.Repeat([]byte{'m'}, size)
	for i := range n {
		if _, err := c.Write(msg); err != nil {
			return i, err
		}
	}
	return n, nil
}

// TestReadAheadDrainsTheSocket: the peer (the walsender) writes 5,000 small
// messages, each with its own send, into a socket with the kernel's default
// send buffer while the stream reads nothing. Read directly, the socket takes
// a few hundred and the writer blocks; read ahead, all 5,000 are written and
// held, and then read back byte for byte.
func TestReadAheadDrainsTheSocket(t *testing.T) {
	const n, size = 5000, 100
	t.Run("direct", func(t *testing.T) {
		server, _ := unixPair(t, 212992)
		sent, err := sendMessages(server, n, size, 300*time.Millisecond)
		t.Logf("figures: without read-ahead the writer sent %d of %d messages before blocking", sent, n)
		if err == nil || sent == n {
			t.Fatalf("the writer was not blocked (sent %d of %d): the test shows nothing on this kernel", sent, n)
		}
	})
	t.Run("read ahead", func(t *testing.T) {
		server, client := unixPair(t, 212992)
		ra := newReadAheadConn(client, 0)
		defer ra.Close()
		if _, err := server.Write([]byte{'s'}); err != nil {
			t.Fatal(err)
		}
		one := make([]byte, 1)
		if _, err := io.ReadFull(ra, one); err != nil {
			t.Fatal(err)
		}
		sent, err := sendMessages(server, n, size, 10*time.Second)
		if err != nil || sent != n {
			t.Fatalf("the writer sent %d of %d messages: %v", sent, n, err)
		}
		waitFor(t, func() bool { return ra.Buffered() == n*size })
		got := make([]byte, n*size)
		if _, err := io.ReadFull(ra, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, bytes.Repeat([]byte{'m'}, n*size)) {
			t.Fatal("the bytes read differ from the bytes sent")
		}
	})
}

// TestReadAheadKeepsEveryByteInOrder: 13 MiB of random bytes in writes of
// random sizes, read in reads of random sizes by a reader that stalls now
// and then, go round the 4 MiB buffer three times: every byte arrives once,
// in order, and the buffer never holds more than its bound.
func TestReadAheadKeepsEveryByteInOrder(t *testing.T) {
	server, client := unixPair(t, 0)
	ra := newReadAheadConn(client, 50*time.Microsecond)
	defer ra.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 13<<20+12345)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	go func() {
		w := rand.New(rand.NewPCG(3, 4))
		for off := 0; off < len(data); {
			k := min(len(data)-off, 1+w.IntN(40000))
			if _, err := server.Write(data[off : off+k]); err != nil {
				return
			}
			off += k
		}
		server.Close()
	}()
	r := rand.New(rand.NewPCG(5, 6))
	h := sha256.New()
	buf := make([]byte, 300000)
	total, maxBuffered := 0, 0
	for {
		if r.IntN(50) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
		maxBuffered = max(maxBuffered, ra.Buffered())
		k, err := ra.Read(buf[:1+r.IntN(len(buf)-1)])
		h.Write(buf[:k])
		total += k
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	want := sha256.Sum256(data)
	if total != len(data) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("read %d bytes (want %d), digest equal %v", total, len(data), bytes.Equal(h.Sum(nil), want[:]))
	}
	if maxBuffered > readAheadSize {
		t.Fatalf("%d bytes buffered, over the bound of %d", maxBuffered, readAheadSize)
	}
	t.Logf("figures: %d bytes, at most %d buffered", total, maxBuffered)
	// EOF stays.
	if _, err := ra.Read(buf); !errors.Is(err, io.EOF) {
		t.Fatalf("read after EOF: %v, want EOF", err)
	}
}

// TestReadAheadDeadlines: the read deadline behaves as a net.Conn's (pgconn
// and the stream rely on it): a read with nothing buffered times out at the
// deadline with a net.Error whose Timeout is true (pgconn keeps the
// connection after such an error), and what arrives later
// is still read; a deadline in the past fails a read at once even with
// bytes buffered, which are read after it is cleared; a read waiting is cut
// short by a deadline set from another goroutine (the stream's stop).
func TestReadAheadDeadlines(t *testing.T) {
	server, client := unixPair(t, 0)
	ra := newReadAheadConn(client, 0)
	defer ra.Close()
	buf := make([]byte, 16)

	_ = ra.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	start := time.Now()
	_, err := ra.Read(buf)
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read with nothing to read: %v, want a timeout", err)
	}
	if took := time.Since(start); took < 45*time.Millisecond {
		t.Fatalf("timed out after %s, before the 50ms deadline", took)
	}

	if _, err := server.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return ra.Buffered() == 3 })
	_ = ra.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := ra.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline with bytes buffered: %v, want a timeout", err)
	}
	_ = ra.SetReadDeadline(time.Time{})
	if k, err := ra.Read(buf); err != nil || string(buf[:k]) != "abc" {
		t.Fatalf("read after the timeouts: %q, %v; want \"abc\"", buf[:k], err)
	}

	done := make(chan error, 1)
	go func() {
		_, err := ra.Read(buf)
		done <- err
	}()
	time.Sleep(50 * time.Millisecond)
	_ = ra.SetReadDeadline(time.Now())
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("interrupted read: %v, want a timeout", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting read was not interrupted by its deadline")
	}
	_ = ra.SetReadDeadline(time.Time{})
	if _, err := server.Write([]byte("d")); err != nil {
		t.Fatal(err)
	}
	if k, err := ra.Read(buf); err != nil || string(buf[:k]) != "d" {
		t.Fatalf("read after the interruption: %q, %v; want \"d\"", buf[:k], err)
	}
}

// TestReadAheadCloseEndsTheGoroutine: Close wakes a waiting read (which
// reports the connection closed) and ends the goroutine that reads ahead,
// also when it waits for room.
func TestReadAheadCloseEndsTheGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	for _, full := range []bool{false, true} {
		server, client := unixPair(t, 0)
		ra := newReadAheadConn(client, 0)
		if _, err := server.Write([]byte{'x'}); err != nil {
			t.Fatal(err)
		}
		one := make([]byte, 1)
		if _, err := ra.Read(one); err != nil {
			t.Fatal(err)
		}
		if full {
			// Fill the buffer: the goroutine waits for room.
			go func() { _, _ = sendMessages(server, 1, readAheadSize+readAheadMin, 10*time.Second) }()
			waitFor(t, func() bool { return ra.Buffered() > readAheadSize-readAheadMin })
		}
		done := make(chan error, 1)
		go func() {
			var err error
			for err == nil {
				_, err = ra.Read(make([]byte, 1<<20))
			}
			done <- err
		}()
		time.Sleep(20 * time.Millisecond)
		if err := ra.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("read after Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not wake the read")
		}
		server.Close()
	}
	waitFor(t, func() bool { return runtime.NumGoroutine() <= before })
}

// TestReadAheadDialerOnlyForUnixSockets: a Unix-socket connection reads
// ahead; a TCP one is left as it is (its kernel buffers already let the
// sender run ahead).
func TestReadAheadDialerOnlyForUnixSockets(t *testing.T) {
	server, client := unixPair(t, 0)
	_ = server
	var made []*readAheadConn
	dial := readAheadDialer(func(_ context.Context, network, _ string) (net.Conn, error) {
		if network == "unix" {
			return client, nil
		}
		return &net.TCPConn{}, nil
	}, func(c *readAheadConn) { made = append(made, c) })
	c, err := dial(context.Background(), "unix", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*readAheadConn); !ok || len(made) != 1 || made[0] != c {
		t.Fatalf("unix: got %T, made %v", c, made)
	}
	c, err = dial(context.Background(), "tcp", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := c.(*net.TCPConn); !ok || len(made) != 2 || made[1] != nil {
		t.Fatalf("tcp: got %T, made %v", c, made)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
