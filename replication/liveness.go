package replication

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// minReceiveTimeout is the shortest receive timeout derived from the
// server's wal_sender_timeout.
const minReceiveTimeout = 10 * time.Second

// receiveTimeout is the silence after which a replication connection is
// presumed dead: the configured one, else twice the server's
// wal_sender_timeout (at least minReceiveTimeout), else (the server's
// timeout is off) DefaultTCPUserTimeout.
func receiveTimeout(configured, walSenderTimeout time.Duration) time.Duration {
	switch {
	case configured > 0:
		return configured
	case walSenderTimeout > 0:
		return max(2*walSenderTimeout, minReceiveTimeout)
	default:
		return DefaultTCPUserTimeout
	}
}

// liveness tracks how long the server has been silent while the stream
// read. After a third of the timeout of silence the stream pings the server
// (a status update asking for a reply, which a live walsender answers at
// once with a keepalive), again every third; after the whole timeout the
// connection is dead. Time spent away from reading (waiting for the sink,
// evaluating transforms) does not count: the server's messages wait in the
// socket meanwhile.
type liveness struct {
	timeout  time.Duration
	last     time.Time // last message, or when reading resumed
	lastPing time.Time
}

func newLiveness(timeout time.Duration) *liveness {
	return &liveness{timeout: timeout, last: time.Now()}
}

// resumed records that the stream reads again, at now: after a message it
// handled (which may have waited for room in the sink), or after a pause.
func (l *liveness) resumed(now time.Time) { l.last = now }

// pingDue reports that the server has been silent long enough, at now, to
// be asked for a keepalive.
func (l *liveness) pingDue(now time.Time) bool {
	third := l.timeout / 3
	return now.Sub(l.last) >= third && now.Sub(l.lastPing) >= third
}

func (l *liveness) pinged(now time.Time) { l.lastPing = now }

// dead reports that the server has been silent for the whole timeout.
func (l *liveness) dead() bool { return time.Since(l.last) >= l.timeout }

// closeConn closes a replication connection, waiting at most 5 seconds for
// the goodbye to be sent: a dead network must not hold a reconnect.
func closeConn(conn *pgconn.PgConn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}
