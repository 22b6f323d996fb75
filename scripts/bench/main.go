// Command bench measures pgsignal against the limit of its source: how fast
// PostgreSQL's walsender decodes the same publication for pg_recvlogical
// (issue 5).
//
// It starts a throwaway PostgreSQL (internal/pgtest) with the seed's
// analytics.user_events table and a fake OneSignal on loopback
// (sink/onesignaltest), builds the pgsignal binary and runs it as a
// subprocess, then measures:
//
//	W1 bulk     1,000,000 rows in one transaction: pg_recvlogical vs pgsignal,
//	            over TCP loopback and over the Unix socket (-transports)
//	W2 OLTP     200,000 single-row transactions (pgbench, 4 clients): same
//	W3 latency  a steady 5,000 events/s for 60 s: commit→accepted p50/p95/p99
//	W4 memory   one 5,000,000-row transaction into a slow sink: peak RSS
//	W5 slow     W2's WAL into a sink that adds 50 ms to every response
//	W6 transform  400,000 rows (transactions of 100,000), read by pgsignal
//	              with the plain mapping and with a SQL transform joining
//	              analytics.users: events/s of both, their ratio (no target)
//	W7 query    the query method (poll_interval 1s) under a steady 1,000
//	            rows/s: commit→accepted p50/p95/p99 (no target)
//
// Every reader of W1, W2 and W6 gets its own slot, created before the
// workload so that all decode the same WAL, and they run one after the other
// (each gets every core), after an untimed pg_recvlogical has read the WAL
// once. A
// reader is timed from the moment its slot becomes active to the end:
// pg_recvlogical exiting at the end LSN, or the fake having accepted the last
// event. Every child process is stopped and PostgreSQL removed on exit,
// including after SIGINT/SIGTERM.
//
// It prints a table and writes the same figures as JSON (-out). Run it
// through scripts/bench.sh, from the repository root:
//
//	scripts/bench.sh                      # everything (under 15 minutes on 2 cores)
//	scripts/bench.sh -scale 0.05          # a quick check
//	scripts/bench.sh -only W1,W3 -v       # a subset, with progress details
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	only       map[string]bool // workloads to run
	scale      float64
	repeat     int
	out        string
	format     string
	pgsignal   string // prebuilt binary; "" builds one
	rev        string // build pgsignal from this git revision
	timeout    time.Duration
	w4Latency  time.Duration
	w4Timeout  time.Duration
	perfDir    string
	profDir    string
	verbose    bool
	strict     bool
	keepLogs   bool
	workloadIn string
	show       string   // print a saved results file instead of running
	transports []string // W1, W2: "tcp", "unix", in this order
}

var allWorkloads = []string{"W1", "W2", "W3", "W4", "W5", "W6", "W7"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, errUsage):
		os.Exit(2)
	case errors.Is(err, errTargetsFailed):
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(3)
	case err != nil:
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

var (
	errUsage         = errors.New("usage")
	errTargetsFailed = errors.New("some targets were not met (-strict)")
)

func parseOptions(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.workloadIn, "only", strings.Join(allWorkloads, ","), "comma-separated workloads to run (W5 also runs W2, its reference)")
	fs.Float64Var(&o.scale, "scale", 1, "scale the workloads' sizes and W3's duration (0 < scale ≤ 10), e.g. 0.05 for a quick check")
	fs.IntVar(&o.repeat, "repeat", 1, "W1, W2, W5, W6: time each reader this many times over the same WAL (alternating) and keep the fastest; for a busy machine (1-5)")
	fs.StringVar(&o.out, "out", "bench-results.json", "write the results as JSON to this file (\"\" for none)")
	fs.StringVar(&o.format, "format", "text", "table format on stdout: text | markdown")
	fs.StringVar(&o.pgsignal, "pgsignal", "", "use this pgsignal binary instead of building ./cmd/pgsignal from the working tree")
	fs.StringVar(&o.rev, "rev", "", "build pgsignal from this git revision (e.g. HEAD, a commit) instead of the working tree, for before/after figures")
	fs.DurationVar(&o.timeout, "timeout", 20*time.Minute, "hard limit for the whole run")
	fs.DurationVar(&o.w4Latency, "w4-latency", 100*time.Millisecond, "W4: latency the slow sink adds to every response")
	fs.DurationVar(&o.w4Timeout, "w4-timeout", 4*time.Minute, "W4: stop waiting for delivery after this long (peak RSS is still reported)")
	fs.StringVar(&o.perfDir, "perf", "", "record every pgsignal run with perf record -g into `DIR` (DIR/W1-pgsignal.perf.data, ...)")
	fs.StringVar(&o.profDir, "cpuprofile", "", "run pgsignal with --cpuprofile (when it has the flag), writing `DIR`/W1-pgsignal.pprof, ...")
	transportIn := fs.String("transports", "tcp,unix", "W1, W2: the connections every reader (limit and pgsignal) uses, each measured on the same WAL: tcp (loopback), unix (the server's Unix socket)")
	fs.StringVar(&o.show, "show", "", "print the table of a saved results `FILE` (in -format) and exit, without running anything")
	fs.BoolVar(&o.verbose, "v", false, "log progress details (PostgreSQL start, commands, pgsignal's log on failure)")
	fs.BoolVar(&o.strict, "strict", false, "exit 3 when a target is not met")
	fs.BoolVar(&o.keepLogs, "keep-logs", false, "keep the work directory (pgsignal configs and logs) after the run")
	if err := fs.Parse(args); err != nil {
		return o, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected argument %q\n", fs.Arg(0))
		return o, errUsage
	}
	if !(o.scale > 0 && o.scale <= 10) {
		fmt.Fprintln(stderr, "bench: -scale must be in (0, 10]")
		return o, errUsage
	}
	if o.repeat < 1 || o.repeat > 5 {
		fmt.Fprintln(stderr, "bench: -repeat must be 1 to 5")
		return o, errUsage
	}
	if o.pgsignal != "" && o.rev != "" {
		fmt.Fprintln(stderr, "bench: -pgsignal and -rev exclude each other")
		return o, errUsage
	}
	if o.format != "text" && o.format != "markdown" {
		fmt.Fprintln(stderr, "bench: -format must be text or markdown")
		return o, errUsage
	}
	o.only = map[string]bool{}
	for _, w := range strings.Split(o.workloadIn, ",") {
		w = strings.ToUpper(strings.TrimSpace(w))
		if w == "" {
			continue
		}
		if !slices.Contains(allWorkloads, w) {
			fmt.Fprintf(stderr, "bench: unknown workload %q (have %s)\n", w, strings.Join(allWorkloads, ", "))
			return o, errUsage
		}
		o.only[w] = true
	}
	if len(o.only) == 0 {
		fmt.Fprintln(stderr, "bench: -only selects no workload")
		return o, errUsage
	}
	if o.only["W5"] {
		o.only["W2"] = true
	}
	for _, t := range strings.Split(*transportIn, ",") {
		t = strings.ToLower(strings.TrimSpace(t))
		if t == "" || slices.Contains(o.transports, t) {
			continue
		}
		if t != transportTCP && t != transportUnix {
			fmt.Fprintf(stderr, "bench: unknown transport %q (have tcp, unix)\n", t)
			return o, errUsage
		}
		o.transports = append(o.transports, t)
	}
	if len(o.transports) == 0 {
		fmt.Fprintln(stderr, "bench: -transports selects none")
		return o, errUsage
	}
	return o, nil
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseOptions(args, stderr)
	if err != nil {
		return err
	}
	if o.show != "" {
		rep, err := readReport(o.show)
		if err != nil {
			return err
		}
		rep.write(stdout, o.format)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	b, err := newBench(ctx, o, stderr)
	if b != nil {
		defer func() {
			if cerr := b.close(); cerr != nil && err == nil {
				err = cerr
			}
		}()
	}
	if err != nil {
		return err
	}

	rep := b.report()
	type step struct {
		name string
		fn   func(context.Context) []*Result
	}
	steps := []step{
		{"W1", func(ctx context.Context) []*Result { return b.bulk(ctx) }},
		{"W2", func(ctx context.Context) []*Result { return b.oltp(ctx, o.only["W5"]) }},
		{"W3", func(ctx context.Context) []*Result { return []*Result{b.latency(ctx)} }},
		{"W4", func(ctx context.Context) []*Result { return []*Result{b.memory(ctx)} }},
		{"W6", func(ctx context.Context) []*Result { return []*Result{b.transformCost(ctx)} }},
		{"W7", func(ctx context.Context) []*Result { return []*Result{b.queryLatency(ctx)} }},
	}
	for _, s := range steps {
		if !o.only[s.name] {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		rep.Workloads = append(rep.Workloads, s.fn(ctx)...)
	}
	rep.finish()
	if ctx.Err() != nil {
		fmt.Fprintf(stderr, "bench: stopped early: %v\n", context.Cause(ctx))
	}
	rep.write(stdout, o.format)
	if o.out != "" {
		if err := rep.writeJSON(o.out); err != nil {
			return err
		}
		b.logf("results written to %s", o.out)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted: %w", context.Cause(ctx))
	}
	for _, w := range rep.Workloads {
		if w.Error != "" {
			return fmt.Errorf("%s did not complete: %s", w.Name, w.Error)
		}
	}
	if o.strict && !rep.allPass() {
		return errTargetsFailed
	}
	return nil
}
