package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/pgsignal/pgsignal/sink/onesignaltest"
)

// Reader is one timed reader of a slot: pg_recvlogical (the limit) or
// pgsignal.
type Reader struct {
	// Seconds is from the slot becoming active to the end (end LSN reached,
	// or the fake accepted the last event).
	Seconds float64 `json:"seconds"`
	// StartupSeconds is from the process start to the slot becoming active.
	StartupSeconds float64 `json:"startup_seconds"`
	EventsPerSec   float64 `json:"events_per_second"`
	// Events is how many events the reader handled (pgsignal: accepted by
	// the fake; pg_recvlogical: the workload's, once it reached the end).
	Events int `json:"events"`
	// Complete is false when the reader was stopped before the end.
	Complete bool `json:"complete"`
	// CPU seconds during the timed part: the reader process, its walsender,
	// the bench process (the fake OneSignal and the monitors); and how busy
	// the whole machine was (every process, other users' included), in
	// percent of all its CPUs.
	CPUSeconds          float64 `json:"cpu_seconds"`
	WalsenderCPUSeconds float64 `json:"walsender_cpu_seconds"`
	BenchCPUSeconds     float64 `json:"bench_cpu_seconds"`
	MachineBusyPercent  float64 `json:"machine_busy_percent"`
	// OtherCPUSeconds estimates the CPU time used by everything else on the
	// machine meanwhile (other users, PostgreSQL's other processes): the
	// machine's busy time minus the three above.
	OtherCPUSeconds float64 `json:"other_cpu_seconds"`
	// StealSeconds is the CPU time the hypervisor gave to other virtual
	// machines while this machine's CPUs had work (/proc/stat steal): on a
	// shared host, the time every process here waited for a CPU it could
	// not have. Figures taken with much of it are not comparable.
	StealSeconds float64 `json:"steal_seconds"`
	// CPUPerMillion is CPUSeconds per 1,000,000 events: the reader's own
	// CPU cost (pgsignal's excludes the fake OneSignal, which runs in the
	// bench process: its CPU is in BenchCPUSeconds).
	CPUPerMillion float64 `json:"cpu_seconds_per_million_events"`
	// ReadSyscalls and WriteSyscalls are pgsignal's read and write system
	// calls over its whole run (/proc/<pid>/io), a count of its wake-ups.
	ReadSyscalls  int64 `json:"read_syscalls,omitempty"`
	WriteSyscalls int64 `json:"write_syscalls,omitempty"`
	// Transport is how the reader connected: "tcp" or "unix".
	Transport string `json:"transport,omitempty"`
	LoadAvg   string `json:"load_avg_before"`
	// PeakRSSBytes is VmHWM just before pgsignal was stopped.
	PeakRSSBytes int64  `json:"peak_rss_bytes,omitempty"`
	Requests     int    `json:"requests,omitempty"`
	ExitError    string `json:"exit_error,omitempty"`
	PerfData     string `json:"perf_data,omitempty"`
	CPUProfile   string `json:"cpu_profile,omitempty"`
	AllocProfile string `json:"alloc_profile,omitempty"`
}

// counters snapshots the CPU counters at the start of a timed part.
type counters struct {
	at      time.Time
	self    time.Duration
	machine machineCPU
}

func snapshot() counters {
	return counters{at: time.Now(), self: selfCPU(), machine: readMachineCPU()}
}

func (r *Reader) fill(c0 counters, walsender time.Duration) {
	m := readMachineCPU()
	r.BenchCPUSeconds = (selfCPU() - c0.self).Seconds()
	r.WalsenderCPUSeconds = walsender.Seconds()
	if dt := m.total - c0.machine.total; dt > 0 {
		busy := float64(m.busy-c0.machine.busy) / float64(dt)
		r.MachineBusyPercent = round(100*busy, 0)
		all := busy * float64(runtime.NumCPU()) * time.Since(c0.at).Seconds()
		r.OtherCPUSeconds = round(max(0, all-r.CPUSeconds-r.WalsenderCPUSeconds-r.BenchCPUSeconds), 2)
		r.StealSeconds = round((m.steal - c0.machine.steal).Seconds(), 2)
	}
	if r.Seconds > 0 {
		r.EventsPerSec = float64(r.Events) / r.Seconds
	}
	if r.Events > 0 {
		r.CPUPerMillion = round(r.CPUSeconds/float64(r.Events)*1e6, 2)
	}
}

// runLimit times pg_recvlogical draining slot to /dev/null from its start to
// the end LSN: the rate at which the walsender decodes the publication, with
// the same plugin options as pgsignal (pgoutput proto_version 1, text
// tuples).
func (b *bench) runLimit(ctx context.Context, transport, slot string, end pglogrepl.LSN, events int, timeout time.Duration) (*Reader, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	mon, err := b.monitorSlot(ctx, slot)
	if err != nil {
		return nil, err
	}
	r := &Reader{Events: events, LoadAvg: loadAvg(), Transport: transport}
	args := []string{"-d", b.dsn(transport), "--slot", slot, "--start", "--no-loop",
		"--endpos", end.String(), "-f", os.DevNull, "-F", "0",
		"-o", "proto_version=1", "-o", "publication_names=" + publication}
	cmd := exec.Command(filepath.Join(b.pgBin, "pg_recvlogical"), args...)
	cmd.Env = childEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	b.vlogf("pg_recvlogical %s", strings.Join(args, " "))
	c0 := snapshot()
	c, err := startChild("pg_recvlogical", cmd)
	if err != nil {
		mon.close()
		return nil, err
	}
	active, err := mon.waitActive(ctx, c.done, 30*time.Second)
	if err != nil {
		_ = c.stop(2 * time.Second)
		mon.close()
		return nil, fmt.Errorf("pg_recvlogical: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	select {
	case <-c.done:
	case <-ctx.Done():
		_ = c.stop(2 * time.Second)
		mon.close()
		return nil, fmt.Errorf("pg_recvlogical did not reach %s: %w", end, context.Cause(ctx))
	}
	walsender := mon.close()
	if c.err != nil {
		return nil, fmt.Errorf("pg_recvlogical: %w: %s", c.err, strings.TrimSpace(stderr.String()))
	}
	r.Complete = true
	r.Seconds = c.ended.Sub(active).Seconds()
	r.StartupSeconds = active.Sub(c.started).Seconds()
	if st := c.cmd.ProcessState; st != nil {
		r.CPUSeconds = (st.UserTime() + st.SystemTime()).Seconds()
	}
	r.fill(c0, walsender)
	return r, nil
}

// pgsignalRun configures one pgsignal run.
type pgsignalRun struct {
	name      string // for file names: "W1"
	slot      string
	transport string // "tcp" (default) or "unix"
	fake      *onesignaltest.Server
	timestamp bool // map event_timestamp (else the commit time is the timestamp)
	// transform, when set, is the table's SQL transform (tables[].transform),
	// written instead of the column mapping (name, external_id, timestamp,
	// properties): it returns the event's columns itself.
	transform string
	// method is "" (logical) or "query"; poll is the query method's
	// poll_interval.
	method, poll string
}

// pgsignalProc is a running pgsignal process with the monitors of its run.
type pgsignalProc struct {
	b      *bench
	run    pgsignalRun
	c      *child
	mon    *slotMonitor
	perf   *child
	perfTo string
	prof   string // --cpuprofile file
	mprof  string // --memprofile file
	log    string
	c0     counters
	active time.Time
}

// configYAML is a pgsignal configuration with the defaults for everything
// but the source, the fake OneSignal, the logging and the table mapping (the
// columns of analytics.user_events, or r.transform).
func (b *bench) configYAML(r pgsignalRun) string {
	var mapping strings.Builder
	if r.transform != "" {
		mapping.WriteString("    transform: |\n")
		for _, l := range strings.Split(strings.TrimRight(r.transform, "\n"), "\n") {
			mapping.WriteString("      " + l + "\n")
		}
	} else {
		mapping.WriteString("    name: event_name\n    external_id: user_id\n")
		if r.timestamp {
			mapping.WriteString("    timestamp: event_timestamp\n")
		}
		mapping.WriteString("    properties: event_data\n")
	}
	source := ""
	if r.method == "query" {
		source = fmt.Sprintf("  method: query\n  poll_interval: %s\n", r.poll)
		mapping.WriteString("    cursor: id\n")
	}
	return fmt.Sprintf(`# Written by scripts/bench for %s.
source:
  dsn: %q
  slot: %q
  publication: %q
%sonesignal:
  app_id: %q
  api_key: "${PGSIGNAL_BENCH_API_KEY}"
  url: %q
shutdown_timeout: 20s
server:
  listen: ""   # no metrics server: another pgsignal on this machine may hold the default port
log:
  level: warn
  format: json
tables:
  - table: analytics.user_events
%s`, r.name, b.dsn(r.transport), r.slot, publication, source, r.fake.AppID(), r.fake.URL(), mapping.String())
}

// startPgsignal starts `pgsignal run` for r and waits until its slot is
// active, which starts the timed part.
func (b *bench) startPgsignal(ctx context.Context, r pgsignalRun) (*pgsignalProc, error) {
	cfgPath := filepath.Join(b.work, r.name+"-pgsignal.yaml")
	if err := os.WriteFile(cfgPath, []byte(b.configYAML(r)), 0o600); err != nil {
		return nil, fmt.Errorf("write pgsignal config: %w", err)
	}
	p := &pgsignalProc{b: b, run: r, log: filepath.Join(b.work, r.name+"-pgsignal.log")}
	logFile, err := os.Create(p.log)
	if err != nil {
		return nil, fmt.Errorf("pgsignal log: %w", err)
	}
	defer logFile.Close()
	mon, err := b.monitorSlot(ctx, r.slot)
	if err != nil {
		return nil, err
	}
	p.mon = mon
	args := []string{"run", "--config", cfgPath}
	if b.opts.profDir != "" {
		p.prof = filepath.Join(b.opts.profDir, r.name+"-pgsignal.pprof")
		args = append(args, "--cpuprofile", p.prof)
		if b.memProfile {
			p.mprof = filepath.Join(b.opts.profDir, r.name+"-pgsignal.allocs.pprof")
			args = append(args, "--memprofile", p.mprof)
		}
	}
	cmd := exec.Command(b.bin, args...)
	cmd.Env = childEnv("PGSIGNAL_BENCH_API_KEY=" + r.fake.APIKey())
	cmd.Stdout, cmd.Stderr = logFile, logFile
	p.c0 = snapshot()
	if p.c, err = startChild("pgsignal", cmd); err != nil {
		mon.close()
		return nil, err
	}
	if r.method == "query" {
		// No slot: ready once the first poll stored its position.
		if p.active, err = b.waitQueryPosition(ctx, p.c.done, r.slot, 60*time.Second); err != nil {
			p.abort()
			return nil, fmt.Errorf("pgsignal: %w%s", err, p.logTail())
		}
	} else if p.active, err = mon.waitActive(ctx, p.c.done, 60*time.Second); err != nil {
		p.abort()
		return nil, fmt.Errorf("pgsignal: %w%s", err, p.logTail())
	}
	if b.opts.perfDir != "" {
		p.startPerf()
	}
	return p, nil
}

// startPerf records pgsignal's CPU profile with perf until stop.
func (p *pgsignalProc) startPerf() {
	path, err := exec.LookPath("perf")
	if err != nil {
		p.b.logf("warning: -perf: %v", err)
		return
	}
	p.perfTo = filepath.Join(p.b.opts.perfDir, p.run.name+"-pgsignal.perf.data")
	cmd := exec.Command(path, "record", "-F", "499", "-g", "-o", p.perfTo, "-p", strconv.Itoa(p.c.pid()))
	cmd.Env = childEnv()
	if p.perf, err = startChild("perf", cmd); err != nil {
		p.b.logf("warning: -perf: %v", err)
		p.perfTo = ""
	}
}

func (p *pgsignalProc) stopPerf() {
	if p.perf == nil {
		return
	}
	// perf record writes its file on SIGINT.
	_ = p.perf.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.perf.done:
	case <-time.After(30 * time.Second):
		_ = p.perf.stop(time.Second)
	}
	p.perf = nil
}

var (
	errWaitTimeout = errors.New("wait timed out")
	errExited      = errors.New("pgsignal exited")
)

// waitCount waits until the fake accepted n events, pgsignal exited, or
// timeout passed; it reports whether n was reached. A timeout is not an
// error: the caller reports how far it got.
func (p *pgsignalProc) waitCount(ctx context.Context, n int, timeout time.Duration) (bool, error) {
	tctx, cancelT := context.WithTimeoutCause(ctx, timeout, errWaitTimeout)
	defer cancelT()
	wctx, cancelW := context.WithCancelCause(tctx)
	defer cancelW(nil)
	go func() {
		select {
		case <-p.c.done:
			cancelW(errExited)
		case <-wctx.Done():
		}
	}()
	err := p.run.fake.WaitForCount(wctx, n)
	switch cause := context.Cause(wctx); {
	case err == nil:
		return true, nil
	case errors.Is(cause, errExited):
		return false, fmt.Errorf("pgsignal exited (%v) with %d of %d events accepted%s", p.c.err, p.run.fake.Count(), n, p.logTail())
	case errors.Is(cause, errWaitTimeout):
		return false, nil
	default:
		return false, err
	}
}

// finish ends the timed part (now), reads pgsignal's peak RSS and CPU time,
// and stops it gracefully (SIGTERM: it drains and exits 0).
func (p *pgsignalProc) finish(events int, complete bool) *Reader {
	end := time.Now()
	r := &Reader{Events: events, Complete: complete, LoadAvg: loadAvg(), Transport: p.run.transport}
	if r.Transport == "" {
		r.Transport = transportTCP
	}
	r.Seconds = end.Sub(p.active).Seconds()
	r.StartupSeconds = p.active.Sub(p.c.started).Seconds()
	if rss, err := procStatusKB(p.c.pid(), "VmHWM"); err == nil {
		r.PeakRSSBytes = rss
	}
	if cpu, err := procCPU(p.c.pid()); err == nil {
		r.CPUSeconds = cpu.Seconds()
	}
	if rd, wr, err := procIO(p.c.pid()); err == nil {
		r.ReadSyscalls, r.WriteSyscalls = rd, wr
	}
	r.Requests = p.run.fake.Requests()
	p.stopPerf()
	r.PerfData = p.perfTo
	walsender := p.mon.close()
	r.fill(p.c0, walsender)
	if err := p.c.stop(30 * time.Second); err != nil {
		r.ExitError = err.Error() + p.logTail()
	} else {
		r.CPUProfile = p.prof // written at exit
		r.AllocProfile = p.mprof
	}
	return r
}

// abort stops pgsignal after a failure.
func (p *pgsignalProc) abort() {
	p.stopPerf()
	_ = p.c.stop(10 * time.Second)
	p.mon.close()
}

// logTail returns the end of pgsignal's log, for error messages.
func (p *pgsignalProc) logTail() string {
	b, err := os.ReadFile(p.log)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return "\n--- end of pgsignal's log ---\n" + strings.TrimRight(string(b), "\n")
}

// waitQueryPosition waits until the query method stored a position under
// name in census.query_positions, the reader exited, or timeout passed.
func (b *bench) waitQueryPosition(ctx context.Context, exited <-chan struct{}, name string, timeout time.Duration) (time.Time, error) {
	deadline := time.After(timeout)
	tick := time.NewTicker(monitorInterval)
	defer tick.Stop()
	for {
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var n int
		err := b.db.QueryRow(qctx, `SELECT count(*) FROM pg_class WHERE oid = to_regclass('census.query_positions')`).Scan(&n)
		if err == nil && n == 1 {
			err = b.db.QueryRow(qctx, `SELECT count(*) FROM census.query_positions WHERE name = $1`, name).Scan(&n)
			if err == nil && n > 0 {
				cancel()
				return time.Now(), nil
			}
		}
		cancel()
		select {
		case <-tick.C:
		case <-exited:
			return time.Time{}, errors.New("pgsignal exited before its first poll")
		case <-deadline:
			return time.Time{}, fmt.Errorf("no position stored after %s", timeout)
		case <-ctx.Done():
			return time.Time{}, context.Cause(ctx)
		}
	}
}
