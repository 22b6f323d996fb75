package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// schemaSQL is the seed's event table, and the publication every reader uses.
const (
	schemaSQL = `CREATE SCHEMA analytics;
CREATE TABLE analytics.user_events (
  id              bigserial PRIMARY KEY,
  event_name      text,
  user_id         text,
  event_timestamp timestamptz DEFAULT now(),
  event_data      jsonb
);
CREATE PUBLICATION pgsignal FOR TABLE analytics.user_events WITH (publish = 'insert');`
	publication = "pgsignal"
)

// pgConf are the server settings on top of pgtest's (wal_level=logical,
// fsync=off, full_page_writes=off, shared_buffers=128MB): fewer checkpoints
// while the WAL of the big transactions is written, and no autovacuum waking
// up on the event table while a reader is timed. logical_decoding_work_mem
// keeps its default (64MB): larger transactions spill to disk, as in
// production.
var pgConf = map[string]string{
	"max_wal_size":       "8GB",
	"checkpoint_timeout": "30min",
	"autovacuum":         "off",
}

// bench holds what every workload shares.
type bench struct {
	opts   options
	stderr io.Writer
	t0     time.Time
	root   string // module root
	work   string // temporary directory: binary, configs, logs
	bin    string // pgsignal binary
	pgBin  string // PostgreSQL client binaries
	pg     *pgtest.Server
	db     *pgx.Conn // admin connection (one goroutine at a time)
	commit string    // git commit of the measured pgsignal ("" for -pgsignal)
	dirty  bool      // built from a working tree with changes
	source string    // where the measured pgsignal comes from
	load0  string
	// memProfile: the binary has --memprofile (with -cpuprofile DIR, each
	// run also writes DIR/<run>-pgsignal.allocs.pprof).
	memProfile bool
}

// newBench builds pgsignal, starts PostgreSQL and creates the schema. On
// error the returned bench (if any) must still be closed.
func newBench(ctx context.Context, o options, stderr io.Writer) (*bench, error) {
	b := &bench{opts: o, stderr: stderr, t0: time.Now(), load0: loadAvg()}
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return nil, errors.New("run the bench from inside the pgsignal module (scripts/bench.sh does)")
	}
	b.root = filepath.Dir(strings.TrimSpace(string(out)))
	if f := strings.Fields(b.load0); len(f) > 0 {
		if l, err := strconv.ParseFloat(f[0], 64); err == nil && l > 0.5*float64(runtime.NumCPU()) {
			b.logf("warning: load average %s on %d CPUs: other work competes with the bench and its figures will be noisy (-repeat 3 helps)", f[0], runtime.NumCPU())
		}
	}
	if b.work, err = os.MkdirTemp("", "pgsignal-bench-"); err != nil {
		return nil, fmt.Errorf("create work dir: %w", err)
	}
	for _, d := range []*string{&b.opts.perfDir, &b.opts.profDir} {
		if *d == "" {
			continue
		}
		if err := os.MkdirAll(*d, 0o755); err != nil {
			return b, fmt.Errorf("profile dir: %w", err)
		}
		if *d, err = filepath.Abs(*d); err != nil {
			return b, err
		}
	}
	if err := b.buildPgsignal(ctx); err != nil {
		return b, err
	}
	if b.opts.profDir != "" {
		// Older binaries have no --cpuprofile: run without it then.
		out, _ := exec.CommandContext(ctx, b.bin, "run", "-h").CombinedOutput()
		if !strings.Contains(string(out), "-cpuprofile") {
			b.logf("warning: this pgsignal has no --cpuprofile flag; -cpuprofile ignored")
			b.opts.profDir = ""
		}
		b.memProfile = strings.Contains(string(out), "-memprofile")
	}

	var logf func(string, ...any)
	if o.verbose {
		logf = b.logf
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	b.pg, err = pgtest.Start(sctx, pgtest.Options{Conf: pgConf, Logf: logf})
	if err != nil {
		return b, err
	}
	b.pgBin = b.pg.BinDir
	b.logf("PostgreSQL %d on 127.0.0.1:%d", b.pg.Version(), b.pg.Port())
	if b.db, err = pgx.Connect(sctx, b.pg.DSN("")); err != nil {
		return b, fmt.Errorf("connect: %w", err)
	}
	if _, err := b.db.Exec(sctx, schemaSQL); err != nil {
		return b, fmt.Errorf("create schema: %w", err)
	}
	return b, nil
}

// buildPgsignal builds the binary to measure (or takes -pgsignal's) and
// records where it came from.
func (b *bench) buildPgsignal(ctx context.Context) error {
	o := b.opts
	if o.pgsignal != "" {
		abs, err := filepath.Abs(o.pgsignal)
		if err != nil {
			return err
		}
		b.bin, b.source = abs, "binary "+abs
		return nil
	}
	src := b.root
	rev := "HEAD"
	if o.rev != "" {
		rev = o.rev
	}
	if c, err := exec.CommandContext(ctx, "git", "-C", b.root, "rev-parse", "--verify", rev+"^{commit}").Output(); err == nil {
		b.commit = strings.TrimSpace(string(c))
	} else if o.rev != "" {
		return fmt.Errorf("-rev %s: not a commit of %s", o.rev, b.root)
	}
	if o.rev == "" {
		b.source = "working tree"
		if s, err := exec.CommandContext(ctx, "git", "-C", b.root, "status", "--porcelain").Output(); err == nil {
			b.dirty = len(strings.TrimSpace(string(s))) > 0
		}
	} else {
		// git archive: the files of that commit, without touching the
		// repository or the working tree.
		b.source = "commit " + b.commit
		src = filepath.Join(b.work, "src")
		if err := os.Mkdir(src, 0o755); err != nil {
			return err
		}
		b.logf("extracting %s (git archive)", o.rev)
		cmd := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive --format=tar "$2" | tar -x -C "$3"`, "sh", b.root, b.commit, src)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git archive %s: %w\n%s", o.rev, err, out)
		}
	}
	b.bin = filepath.Join(b.work, "pgsignal")
	b.logf("building pgsignal from the %s (go build ./cmd/pgsignal)", b.source)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", b.bin, "./cmd/pgsignal")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build pgsignal: %w\n%s", err, out)
	}
	return nil
}

// close stops every child, PostgreSQL, and removes the work directory.
func (b *bench) close() error {
	killChildren()
	var errs []error
	if b.db != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = b.db.Close(ctx)
		cancel()
	}
	if b.pg != nil {
		if err := b.pg.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	if b.work != "" {
		if b.opts.keepLogs {
			b.logf("work directory kept: %s", b.work)
		} else if err := os.RemoveAll(b.work); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// logf prints a progress line on stderr with the time since the start.
func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.stderr, "[%6.1fs] %s\n", time.Since(b.t0).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) vlogf(format string, args ...any) {
	if b.opts.verbose {
		b.logf(format, args...)
	}
}

// exec runs one SQL statement on the admin connection, bounded by timeout.
func (b *bench) exec(ctx context.Context, timeout time.Duration, sql string, args ...any) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if _, err := b.db.Exec(ctx, sql, args...); err != nil {
		return fmt.Errorf("%s: %w", firstLine(sql), err)
	}
	return nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// The transports a reader connects over.
const (
	transportTCP  = "tcp"
	transportUnix = "unix"
)

// dsn returns the superuser's DSN for database "postgres" over transport:
// TCP loopback, or the server's Unix socket (as a sidecar on the
// database's host or pod would connect).
func (b *bench) dsn(transport string) string {
	if transport == transportUnix {
		return b.pg.SocketDSN("")
	}
	return b.pg.DSN("")
}

// currentLSN returns pg_current_wal_lsn().
func (b *bench) currentLSN(ctx context.Context) (pglogrepl.LSN, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var s string
	if err := b.db.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&s); err != nil {
		return 0, fmt.Errorf("current WAL position: %w", err)
	}
	return pglogrepl.ParseLSN(s)
}

// createSlots creates logical pgoutput slots, so that each decodes the WAL
// written from now on.
func (b *bench) createSlots(ctx context.Context, slots ...string) error {
	for _, s := range slots {
		if err := b.exec(ctx, 30*time.Second, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, s); err != nil {
			return err
		}
	}
	return nil
}

// dropSlots drops slots, waiting up to 10 s each for a reader's walsender to
// let go; errors are only logged (the cluster is thrown away anyway).
func (b *bench) dropSlots(ctx context.Context, slots ...string) {
	for _, s := range slots {
		if ctx.Err() != nil {
			return // interrupted: the cluster goes away with its slots
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := b.exec(ctx, 10*time.Second, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, s)
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				b.logf("warning: drop slot %s: %v", s, err)
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// prepare empties the event table and checkpoints, so that a workload starts
// from the same state and no checkpoint of an earlier one runs while a
// reader is timed.
func (b *bench) prepare(ctx context.Context) error {
	if err := b.exec(ctx, time.Minute, `TRUNCATE analytics.user_events`); err != nil {
		return err
	}
	return b.exec(ctx, 2*time.Minute, `CHECKPOINT`)
}

// slotMonitor polls a slot every few milliseconds: when it became active (a
// reader issued START_REPLICATION) and how much CPU its walsender used.
type slotMonitor struct {
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	activeAt time.Time
	cpu      map[int32]time.Duration // walsender pid -> CPU time last seen
	err      error
}

// The monitor polls every monitorInterval until the slot is active (the
// start of the timed part), then every sampleInterval (the walsender's CPU
// time, at most that stale when it exits).
const (
	monitorInterval = 5 * time.Millisecond
	sampleInterval  = 20 * time.Millisecond
)

// monitorSlot starts a monitor on its own connection.
func (b *bench) monitorSlot(ctx context.Context, slot string) (*slotMonitor, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.Connect(cctx, b.pg.DSN(""))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("monitor connection: %w", err)
	}
	m := &slotMonitor{stop: make(chan struct{}), done: make(chan struct{}), cpu: map[int32]time.Duration{}}
	go func() {
		defer close(m.done)
		defer func() {
			c, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = conn.Close(c)
			cancel()
		}()
		tick := time.NewTicker(monitorInterval)
		defer tick.Stop()
		for {
			qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			var pid *int32
			err := conn.QueryRow(qctx, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&pid)
			cancel()
			now := time.Now()
			m.mu.Lock()
			if err != nil && m.err == nil && ctx.Err() == nil {
				m.err = err
			}
			if pid != nil {
				if m.activeAt.IsZero() {
					m.activeAt = now
					tick.Reset(sampleInterval)
				}
				if t, err := procCPU(int(*pid)); err == nil {
					m.cpu[*pid] = t
				}
			}
			m.mu.Unlock()
			if err != nil && ctx.Err() != nil {
				return
			}
			select {
			case <-m.stop:
				return
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return m, nil
}

// waitActive waits until the slot is active, the reader exited (exited
// closed) or timeout passes.
func (m *slotMonitor) waitActive(ctx context.Context, exited <-chan struct{}, timeout time.Duration) (time.Time, error) {
	deadline := time.After(timeout)
	tick := time.NewTicker(monitorInterval)
	defer tick.Stop()
	for {
		if t := m.active(); !t.IsZero() {
			return t, nil
		}
		select {
		case <-tick.C:
		case <-exited:
			return time.Time{}, errors.New("the reader exited before its slot became active")
		case <-deadline:
			return time.Time{}, fmt.Errorf("slot not active after %s", timeout)
		case <-ctx.Done():
			return time.Time{}, context.Cause(ctx)
		}
	}
}

func (m *slotMonitor) active() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.activeAt
}

// close stops the monitor and returns the walsenders' CPU time.
func (m *slotMonitor) close() time.Duration {
	select {
	case <-m.stop:
	default:
		close(m.stop)
	}
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	var sum time.Duration
	for _, t := range m.cpu {
		sum += t
	}
	return sum
}

// environment describes the machine for the report.
func (b *bench) environment() (cpus int, pgVersion, goVersion string) {
	// "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" -> "PostgreSQL 15.18 (Debian ...)"
	v := strings.TrimPrefix(b.pg.VersionString(), "postgres ")
	if rest, ok := strings.CutPrefix(v, "(PostgreSQL) "); ok {
		v = "PostgreSQL " + rest
	}
	return runtime.NumCPU(), v, runtime.Version()
}
