package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

const (
	// backupTimeout bounds the base backup of StartStandby.
	backupTimeout = 2 * time.Minute
	// replayTimeout bounds WaitReplay and CatchUp when ctx has no
	// deadline.
	replayTimeout = 2 * time.Minute
	// slotDropTimeout bounds the wait for a stopped standby's slot on the
	// primary to become inactive so that it can be dropped.
	slotDropTimeout = 10 * time.Second
	// standbySlotPrefix starts the name of a standby's physical slot on its
	// primary.
	standbySlotPrefix = "pgtest_standby_"
	// minStandbyVersion is the first version pgtest builds standbys of.
	minStandbyVersion = 10
	// signalStandbyVersion is the first version with standby.signal and
	// primary_conninfo in postgresql.conf; before, recovery.conf holds them.
	signalStandbyVersion = 12
)

// NewStandby starts a standby of primary with StartStandby and stops it with
// Stop when tb and its subtests finish (before primary, when primary was
// created earlier with New). It calls tb.Fatal if the standby cannot start.
// Unless opts.Logf is set, progress is logged with tb.Logf; when tb has
// failed, the tail of the standby's log is logged.
func NewStandby(tb testing.TB, primary *Server, opts Options) *Server {
	tb.Helper()
	if opts.Logf == nil {
		opts.Logf = tb.Logf
	}
	s, err := StartStandby(tb.Context(), primary, opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			if tail := s.LogTail(30); tail != "" {
				tb.Logf("pgtest: tail of standby %s:\n%s", s.logPath, tail)
			}
		}
		if err := s.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return s
}

// StartStandby starts a hot standby that streams from primary, which must
// be running PostgreSQL 10 or later. It creates a physical replication slot
// on primary (see PrimarySlot), takes a base backup of primary over the
// replication protocol (BASE_BACKUP with its WAL, fast checkpoint; primary
// keeps running and serving), writes standby.signal (before PostgreSQL 12:
// recovery.conf with standby_mode, primary_conninfo and primary_slot_name,
// which are then not in postgresql.conf) and starts the standby
// in its own directory on its own port with
//
//	hot_standby = on, hot_standby_feedback = on,
//	primary_conninfo = <primary over its Unix socket>,
//	primary_slot_name = <the slot>
//
// and returns once it accepts connections and its WAL receiver streams.
//
// The standby runs primary's binaries unless opts.BinDir is set (to the same
// major version). Its settings are pgtest's defaults, then the standby
// settings above, then primary's Options.Conf (so that settings a hot
// standby must not lower, such as max_connections, follow the primary; port
// and unix_socket_directories excepted), then opts.Conf. pg_hba.conf is
// written from opts.HBA like Start's. primary's SSL files are part of the
// backup and used unless opts.SSL names others. opts.InitdbArgs is ignored.
//
// Stop stops the standby, removes its directory and drops its slot on
// primary if primary still runs. The standby's data must be read through
// DSN like any server's; writes fail until Promote. Tablespaces other than
// the default ones are not supported.
func StartStandby(ctx context.Context, primary *Server, opts Options) (*Server, error) {
	if primary == nil {
		return nil, errors.New("start standby: no primary")
	}
	if primary.version < minStandbyVersion {
		return nil, fmt.Errorf("start standby: PostgreSQL %d: pgtest builds standbys on PostgreSQL %d or later", primary.version, minStandbyVersion)
	}
	if primary.PID() == 0 {
		return nil, fmt.Errorf("start standby: primary on port %d is not running", primary.port)
	}
	s, err := start(ctx, opts, primary)
	if err != nil {
		return nil, fmt.Errorf("start standby: %w", err)
	}
	return s, nil
}

// Primary returns the server s is a standby of, or nil. It stays set after
// Promote.
func (s *Server) Primary() *Server { return s.primary }

// PrimarySlot returns the name of the physical replication slot a standby
// streams through on its primary, or "" for a server that is not a standby.
func (s *Server) PrimarySlot() string { return s.standbySlot }

// fromBaseBackup fills s.DataDir with a base backup of primary and makes it
// a standby of primary. s.port is already chosen.
func (s *Server) fromBaseBackup(ctx context.Context, primary *Server, opts Options) error {
	s.primary = primary
	slot := standbySlotPrefix + slotSuffix(filepath.Base(s.rootDir))
	if err := primary.Exec(ctx, `SELECT pg_create_physical_replication_slot($1, true)`, slot); err != nil {
		return fmt.Errorf("create physical slot on the primary: %w", err)
	}
	s.standbySlot = slot

	if err := os.Mkdir(s.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := s.chown(s.DataDir); err != nil {
		return err
	}
	bctx, cancel := context.WithTimeout(ctx, backupTimeout)
	defer cancel()
	if err := s.baseBackup(bctx, primary); err != nil {
		return err
	}
	// The backup holds the primary's log as it was; start a fresh one.
	if err := os.Remove(s.logPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove copied log: %w", err)
	}
	conninfo := fmt.Sprintf("host=%s port=%d user=%s application_name=%s sslmode=disable",
		quoteDSNValue(primary.SocketDir), primary.port, superuser, slot)
	conf := map[string]string{
		"hot_standby":          "on",
		"hot_standby_feedback": "on",
	}
	if primary.version >= signalStandbyVersion {
		if err := s.writeFile(filepath.Join(s.DataDir, "standby.signal"), nil, 0o600); err != nil {
			return err
		}
		conf["primary_conninfo"], conf["primary_slot_name"] = conninfo, slot
	} else {
		// PostgreSQL 10 and 11: recovery.conf, which postgresql.conf must not
		// repeat.
		rc := "standby_mode = 'on'\nprimary_conninfo = " + confQuote(conninfo) + "\nprimary_slot_name = " + confQuote(slot) + "\n"
		if err := s.writeFile(filepath.Join(s.DataDir, "recovery.conf"), []byte(rc), 0o600); err != nil {
			return err
		}
	}
	for k, v := range primary.userConf {
		if k != "port" && k != "unix_socket_directories" {
			conf[k] = v
		}
	}
	for k, v := range s.userConf {
		conf[k] = v
	}
	s.userConf = conf
	if opts.SSL == nil {
		s.ssl, s.sslCA = primary.ssl, primary.sslCA
	}
	return nil
}

// slotSuffix keeps the lower-case letters, digits and underscores of s, for
// a slot name.
func slotSuffix(s string) string {
	s = strings.TrimPrefix(s, dirPrefix)
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		}
	}
	return b.String()
}

// baseBackup runs BASE_BACKUP on primary and extracts the archive into
// s.DataDir.
func (s *Server) baseBackup(ctx context.Context, primary *Server) error {
	dsn := fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable replication=true",
		quoteDSNValue(primary.SocketDir), primary.port, superuser)
	conn, err := pgconn.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("base backup: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	res, err := pglogrepl.StartBaseBackup(ctx, conn, pglogrepl.BaseBackupOptions{
		Label: "pgtest standby", Fast: true, WAL: true, NoWait: true,
	})
	if err != nil {
		return fmt.Errorf("base backup: %w", err)
	}
	if len(res.Tablespaces) > 0 {
		return fmt.Errorf("base backup: the primary has %d tablespaces besides pg_default and pg_global; pgtest copies only those two", len(res.Tablespaces))
	}
	pr, pw := io.Pipe()
	extracted := make(chan error, 1)
	go func() {
		err := extractTar(pr, s.DataDir, tarOptions{cred: s.cred})
		pr.CloseWithError(err) // a failed extraction fails the writer
		extracted <- err
	}()
	err = receiveBackup(ctx, conn, primary.version >= 15, pw)
	pw.CloseWithError(err)
	if xerr := <-extracted; xerr != nil && err == nil {
		err = fmt.Errorf("base backup: extract: %w", xerr)
	}
	return err
}

// receiveBackup reads the rest of a BASE_BACKUP response from conn and
// writes the base directory's tar stream to w. Before PostgreSQL 15 the
// server sends one CopyOut stream of raw tar data per archive; from 15 on,
// one CopyOut stream whose CopyData messages start with a type byte: 'n'
// (new archive), 'd' (data), 'p' (progress), 'm' (manifest follows). Only
// the base archive (the first) is written; a manifest is skipped.
func receiveBackup(ctx context.Context, conn *pgconn.PgConn, typed bool, w io.Writer) error {
	archives := 0 // CopyOut streams (before 15) or archives (15+) seen
	skip := false // data belongs to something other than the base archive
	for {
		msg, err := conn.ReceiveMessage(ctx)
		if err != nil {
			return fmt.Errorf("base backup: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyOutResponse:
			if !typed {
				archives++
				skip = archives > 1
			}
		case *pgproto3.CopyData:
			data := m.Data
			if typed {
				if len(data) == 0 {
					return errors.New("base backup: empty CopyData message")
				}
				switch data[0] {
				case 'n':
					archives++
					f := bytes.Split(data[1:], []byte{0})
					if len(f) < 2 || len(f[1]) != 0 {
						return fmt.Errorf("base backup: unexpected archive %q of a tablespace", f[0])
					}
					skip = archives > 1
					continue
				case 'd':
					data = data[1:]
				case 'p':
					continue
				case 'm':
					skip = true
					continue
				default:
					return fmt.Errorf("base backup: unknown CopyData type %q", data[0])
				}
			}
			if skip {
				continue
			}
			// A pipe write returns once the extractor consumed the data,
			// before the next ReceiveMessage reuses its buffer.
			if _, err := w.Write(data); err != nil {
				return fmt.Errorf("base backup: extract: %w", err)
			}
		case *pgproto3.CopyDone, *pgproto3.RowDescription, *pgproto3.DataRow,
			*pgproto3.CommandComplete, *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("base backup: %w", pgconn.ErrorResponseToPgError(m))
		case *pgproto3.ReadyForQuery:
			if archives == 0 {
				return errors.New("base backup: the server sent no archive")
			}
			return nil
		default:
			return fmt.Errorf("base backup: unexpected message %T", msg)
		}
	}
}

// waitStreaming waits until the standby's WAL receiver streams from its
// primary.
func (s *Server) waitStreaming(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var last string
	for {
		var status *string
		err := s.queryRow(ctx, `SELECT status FROM pg_stat_wal_receiver`, nil, &status)
		if err == nil && status != nil && *status == "streaming" {
			return nil
		}
		switch {
		case err != nil:
			last = err.Error()
		case status == nil:
			last = "no WAL receiver"
		default:
			last = "WAL receiver " + *status
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for the standby to stream from its primary: %w (last: %s)", ctx.Err(), last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// CurrentLSN returns the server's current WAL position: pg_current_wal_lsn()
// on a primary, pg_last_wal_replay_lsn() on a standby.
func (s *Server) CurrentLSN(ctx context.Context) (pglogrepl.LSN, error) {
	var text string
	err := s.queryRow(ctx, `SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()
  ELSE pg_current_wal_lsn() END)::text`, nil, &text)
	if err != nil {
		return 0, fmt.Errorf("current lsn: %w", err)
	}
	return pglogrepl.ParseLSN(text)
}

// WaitReplay waits until the standby has replayed the WAL up to lsn
// (pg_last_wal_replay_lsn() >= lsn), so that what was committed before lsn
// on the primary is visible on the standby. It gives up when ctx ends, or
// after 2 minutes when ctx has no deadline.
func (s *Server) WaitReplay(ctx context.Context, lsn pglogrepl.LSN) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, replayTimeout)
		defer cancel()
	}
	conn, err := s.connectSocket(ctx)
	if err != nil {
		return fmt.Errorf("wait replay: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	delay := time.Millisecond
	for {
		var text *string
		if err := conn.QueryRow(ctx, `SELECT pg_last_wal_replay_lsn()::text`).Scan(&text); err != nil {
			return fmt.Errorf("wait replay to %s: %w", lsn, err)
		}
		if text == nil {
			return fmt.Errorf("wait replay to %s: the server on port %d is not a standby (pg_last_wal_replay_lsn() is NULL)", lsn, s.port)
		}
		got, err := pglogrepl.ParseLSN(*text)
		if err != nil {
			return fmt.Errorf("wait replay: %w", err)
		}
		if got >= lsn {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait replay to %s (replayed %s): %w", lsn, got, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 20*time.Millisecond)
	}
}

// CatchUp waits until the standby has replayed everything its primary has
// written so far: WaitReplay(primary.CurrentLSN()).
func (s *Server) CatchUp(ctx context.Context) error {
	if s.primary == nil {
		return fmt.Errorf("catch up: the server on port %d is not a standby", s.port)
	}
	lsn, err := s.primary.CurrentLSN(ctx)
	if err != nil {
		return fmt.Errorf("catch up: primary: %w", err)
	}
	return s.WaitReplay(ctx, lsn)
}

// Promote turns the standby into a primary (pg_promote, or on PostgreSQL 10
// and 11 what pg_ctl promote does; waiting up to 60 s for the promotion to
// finish). It then accepts writes and no longer follows
// its old primary.
func (s *Server) Promote(ctx context.Context) error {
	if s.version < signalStandbyVersion {
		return s.promoteBefore12(ctx)
	}
	var done bool
	if err := s.queryRow(ctx, `SELECT pg_promote(true, 60)`, nil, &done); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	if !done {
		return errors.New("promote: not finished after 60 s")
	}
	s.logf("pgtest: promoted standby on port %d", s.port)
	return nil
}

// dropStandbySlot drops a standby's physical slot on its primary, if the
// primary still runs, once it is no longer active (the walsender exits soon
// after the standby). Failures are logged.
func (s *Server) dropStandbySlot() {
	if s.primary == nil || s.standbySlot == "" || s.primary.PID() == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), slotDropTimeout)
	defer cancel()
	for {
		err := s.primary.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots
WHERE slot_name = $1 AND NOT active`, s.standbySlot)
		var left int
		if err == nil {
			err = s.primary.queryRow(ctx, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, []any{s.standbySlot}, &left)
		}
		if err == nil && left == 0 {
			return
		}
		select {
		case <-ctx.Done():
			s.logf("pgtest: could not drop slot %s on the primary on port %d: %v", s.standbySlot, s.primary.port, errors.Join(err, ctx.Err()))
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// connectSocket connects as the superuser to database "postgres" over the
// Unix socket (so that HBA lines restricting TCP do not get in the way).
func (s *Server) connectSocket(ctx context.Context) (*pgx.Conn, error) {
	dsn := s.DSN("")
	if s.SocketDir != "" {
		dsn = fmt.Sprintf("host=%s port=%d user=%s dbname=postgres sslmode=disable",
			quoteDSNValue(s.SocketDir), s.port, superuser)
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conn, nil
}

// queryRow scans the single row of sql with args on a one-off connection
// into dest.
func (s *Server) queryRow(ctx context.Context, sql string, args []any, dest ...any) error {
	conn, err := s.connectSocket(ctx)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, sql, args...).Scan(dest...); err != nil {
		return fmt.Errorf("%s: %w", abbrev(sql), err)
	}
	return nil
}

// promoteBefore12 promotes a PostgreSQL 10 or 11 standby, which has no
// pg_promote, the way pg_ctl promote does: a promote file in the data
// directory and SIGUSR1 to the postmaster. It waits up to 60 s for the
// promotion to finish.
func (s *Server) promoteBefore12(ctx context.Context) error {
	if err := s.writeFile(filepath.Join(s.DataDir, "promote"), nil, 0o600); err != nil {
		return fmt.Errorf("promote: %w", err)
	}
	if err := syscall.Kill(s.PID(), syscall.SIGUSR1); err != nil {
		return fmt.Errorf("promote: signal the postmaster: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		var recovery bool
		if err := s.queryRow(ctx, `SELECT pg_is_in_recovery()`, nil, &recovery); err == nil && !recovery {
			s.logf("pgtest: promoted standby on port %d", s.port)
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("promote: not finished after 60 s")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// confQuote quotes a value for recovery.conf / postgresql.conf.
func confQuote(v string) string {
	return "'" + strings.ReplaceAll(v, "'", "''") + "'"
}
