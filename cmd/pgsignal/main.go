// Command pgsignal streams inserted rows from PostgreSQL to OneSignal as
// custom events, through a logical replication slot.
//
// Usage:
//
//	pgsignal run --config pgsignal.yaml       stream until SIGINT/SIGTERM
//	pgsignal backfill --config F --since 7d   send recent history, then stream
//	pgsignal status [--json]                  slot, watermark, dead letters, runs
//	pgsignal dead-letters list|replay|discard inspect and resend dead letters
//	pgsignal setup --config F [--apply]       the SQL that prepares the database
//	pgsignal check --config F [--json]        every prerequisite, with fixes
//	pgsignal preview --config F [--json]      what the latest rows would send
//	pgsignal teardown --config F [--apply]    the SQL that removes slot, publication, schema
//	pgsignal demo                             run a self-contained demo
//	pgsignal fake-onesignal                   serve the fake OneSignal API locally
//	pgsignal version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/pgsignal/pgsignal/internal/buildinfo"
)

// timeNow is the clock (a variable for tests).
var timeNow = time.Now

// version is set at build time with -ldflags "-X main.version=..."; it
// wins over the module version in the build info.
var version = "dev"

// revision is the VCS revision set at build time with -ldflags
// "-X main.revision=..." (a build without .git, e.g. in a container); it
// wins over the revision in the build info.
var revision = ""

func main() {
	// The heap is small and bounded (sink.max_pending_bytes); collecting
	// less often buys throughput for a little memory.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) && !errors.Is(err, errReported) && !errors.Is(err, errHelp) {
			fmt.Fprintln(os.Stderr, "pgsignal:", err)
		}
		os.Exit(exitCode(err))
	}
}

var (
	errUsage    = errors.New("usage")
	errReported = errors.New("already reported")
	// errHelp is a requested help text (-h, --help): printed, exit 0.
	errHelp = errors.New("help")
)

// Exit codes: 0 success (and a requested help text), 1 an error of the
// run, the database, OneSignal or the configuration, 2 a wrong command
// line.
func exitCode(err error) int {
	switch {
	case errors.Is(err, errHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	return 1
}

const usage = `pgsignal streams PostgreSQL inserts to OneSignal custom events.

Usage:
  pgsignal run --config FILE     stream until SIGINT/SIGTERM (a second signal stops at once)
  pgsignal backfill --config FILE --since 7d
                                 on first start: send the tables' rows of the last 7 days
                                 (in time order, from the slot's snapshot), then stream
  pgsignal status [--json]       slot, watermark, dead letters and recent runs
  pgsignal dead-letters list|replay|discard   inspect and resend dead letters
  pgsignal setup --config FILE   print (or --apply --admin-dsn DSN) the SQL that prepares the database
  pgsignal check --config FILE   check the database and OneSignal item by item, with fixes (--json)
  pgsignal preview --config FILE [--table T] [--limit 20] [--json]
                                 the events (or dead letters) the tables' latest rows would become;
                                 reads only (no slot, nothing written)
  pgsignal teardown --config FILE
                                 print (or --apply) the SQL that drops the slot, the publication
                                 and the bookkeeping schema (refused while the slot is in use)
  pgsignal demo                  start a throwaway PostgreSQL and a fake OneSignal, stream, report
  pgsignal fake-onesignal        serve the fake OneSignal API on a loopback address
  pgsignal version               print the version, VCS revision and Go version

Run "pgsignal COMMAND --help" for a command's flags.
Exit codes: 0 success, 1 an error (configuration, database, OneSignal), 2 a wrong command line.
`

// command runs one subcommand with its arguments.
type command func(ctx context.Context, args []string, stdout, stderr io.Writer) error

// commands are the subcommands by name (version and help aside).
var commands = map[string]command{
	"run": func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		return cmdRun(ctx, args, stdout, stderr, false)
	},
	"backfill": func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
		return cmdRun(ctx, args, stdout, stderr, true)
	},
	"demo": cmdDemo, "status": cmdStatus, "dead-letters": cmdDeadLetters, "setup": cmdSetup,
	"check": cmdCheck, "preview": cmdPreview, "teardown": cmdTeardown, "fake-onesignal": cmdFake,
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	buildinfo.SetVersion(version, revision)
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version", "--version":
		fmt.Fprintln(stdout, buildinfo.Get())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	c, ok := commands[cmd]
	if !ok {
		fmt.Fprintf(stderr, "pgsignal: unknown command %q\n\n%s", cmd, usage)
		return errUsage
	}
	return c(ctx, rest, stdout, stderr)
}

// newFlagSet returns a flag set that reports errors as usage errors and
// prints its flags the way the documentation writes them (--config FILE).
func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("pgsignal "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { printFlags(fs) }
	return fs
}

// printFlags writes "Usage: pgsignal NAME [flags]" and each flag as
// "--name VALUE  usage (default ...)".
func printFlags(fs *flag.FlagSet) {
	fmt.Fprintf(fs.Output(), "Usage: %s [flags]\n\nFlags:\n", fs.Name())
	printFlagList(fs)
}

// printFlagList writes each flag as "--name VALUE  usage (default ...)".
func printFlagList(fs *flag.FlagSet) {
	out := fs.Output()
	fs.VisitAll(func(f *flag.Flag) {
		kind, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if kind != "" {
			line += " " + strings.ToUpper(kind)
		}
		fmt.Fprintf(out, "%s\n      %s", line, usage)
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
			fmt.Fprintf(out, " (default %s)", f.DefValue)
		}
		fmt.Fprintln(out)
	})
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	return nil
}

// signals returns a channel of SIGINT/SIGTERM and a function to stop
// listening.
func signals() (<-chan os.Signal, func()) {
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	return ch, func() { signal.Stop(ch) }
}
