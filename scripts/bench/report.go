package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Report is everything the bench measured; it is written as JSON.
type Report struct {
	Date            string            `json:"date"`
	GitCommit       string            `json:"git_commit"`
	GitDirty        bool              `json:"git_dirty"`
	Pgsignal        string            `json:"pgsignal_built_from"`
	GoVersion       string            `json:"go_version"`
	CPUs            int               `json:"cpus"`
	PostgresVersion string            `json:"postgres_version"`
	PostgresConf    map[string]string `json:"postgres_settings"`
	Scale           float64           `json:"scale"`
	Repeat          int               `json:"repeat"`
	// UnixSendBuffer is net.core.wmem_default, the send buffer of a Unix
	// socket (the walsender's, over the socket transport): how many
	// pgoutput messages it can have in flight. 0 when unknown.
	UnixSendBuffer int       `json:"unix_send_buffer_bytes,omitempty"`
	LoadAvgStart   string    `json:"load_avg_start"`
	LoadAvgEnd     string    `json:"load_avg_end"`
	Seconds        float64   `json:"seconds"`
	Workloads      []*Result `json:"workloads"`

	t0 time.Time
}

// Result is one workload's figures.
type Result struct {
	Name   string `json:"name"`
	Title  string `json:"title"`
	Events int    `json:"events"`
	// Transport is how W1's and W2's readers connected: "tcp" or "unix".
	Transport       string  `json:"transport,omitempty"`
	WALBytes        int64   `json:"wal_bytes,omitempty"`
	GenerateSeconds float64 `json:"generate_seconds,omitempty"`
	// Warmup is the untimed first reader of the WAL (pg_recvlogical).
	Warmup   *Reader `json:"warmup,omitempty"`
	Limit    *Reader `json:"limit,omitempty"`
	Pgsignal *Reader `json:"pgsignal,omitempty"`
	// Plain is, in W6, pgsignal with the plain column mapping, the
	// reference of its Pgsignal run (with a SQL transform).
	Plain *Reader `json:"plain,omitempty"`
	// LimitRuns, PgsignalRuns and PlainRuns are the events/s of every
	// round (-repeat); Limit, Pgsignal and Plain are the fastest.
	LimitRuns    []float64 `json:"limit_runs,omitempty"`
	PgsignalRuns []float64 `json:"pgsignal_runs,omitempty"`
	PlainRuns    []float64 `json:"plain_runs,omitempty"`
	Ratio        *float64  `json:"ratio,omitempty"`
	Latency      *Latency  `json:"latency_ms,omitempty"`
	Target       string    `json:"target"`
	// Informational is set for a workload that only reports figures (W6):
	// it has no target, and Pass is true once it completed.
	Informational bool `json:"informational,omitempty"`
	// Pass is nil when the workload did not complete.
	Pass  *bool    `json:"pass"`
	Error string   `json:"error,omitempty"`
	Notes []string `json:"notes,omitempty"`
}

func (r *Result) setPass(ok bool) { r.Pass = &ok }

func (b *bench) report() *Report {
	cpus, pgv, gov := b.environment()
	return &Report{
		Date: b.t0.UTC().Format(time.RFC3339), GitCommit: b.commit, GitDirty: b.dirty, Pgsignal: b.source,
		GoVersion: gov, CPUs: cpus, PostgresVersion: pgv, PostgresConf: pgConf,
		Scale: b.opts.scale, Repeat: b.opts.repeat, LoadAvgStart: b.load0, t0: b.t0,
		UnixSendBuffer: unixSendBuffer(),
	}
}

func (r *Report) finish() {
	r.LoadAvgEnd = loadAvg()
	r.Seconds = round(time.Since(r.t0).Seconds(), 1)
}

func (r *Report) allPass() bool {
	for _, w := range r.Workloads {
		if w.Pass == nil || !*w.Pass {
			return false
		}
	}
	return true
}

// readReport loads a results file written by writeJSON.
func readReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read results: %w", err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("read results %s: %w", path, err)
	}
	return &r, nil
}

// write prints the report in format: "text" or "markdown".
func (r *Report) write(w io.Writer, format string) {
	if format == "markdown" {
		r.writeMarkdown(w)
	} else {
		r.writeText(w)
	}
}

func (r *Report) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

var header = []string{"workload", "events", "limit ev/s", "pgsignal ev/s", "ratio", "pgsignal CPU-s/1M ev", "latency p50/p95/p99 ms", "peak RSS", "target", "result"}

// rows renders the main table's cells.
func (r *Report) rows() [][]string {
	var rows [][]string
	for _, w := range r.Workloads {
		row := []string{w.Name + " " + w.Title, count(w.Events), "-", "-", "-", "-", "-", "-", w.Target, result(w)}
		if w.Limit != nil {
			row[2] = count(int(w.Limit.EventsPerSec + 0.5))
		}
		if w.Plain != nil {
			// W6: the ratio's reference is pgsignal with the plain mapping.
			row[2] = "plain " + count(int(w.Plain.EventsPerSec+0.5))
		}
		if w.Pgsignal != nil {
			row[3] = count(int(w.Pgsignal.EventsPerSec + 0.5))
			if w.Pgsignal.CPUPerMillion > 0 {
				row[5] = fmt.Sprintf("%.2f", w.Pgsignal.CPUPerMillion)
			}
			if w.Pgsignal.PeakRSSBytes > 0 {
				row[7] = fmt.Sprintf("%.0f MiB", float64(w.Pgsignal.PeakRSSBytes)/(1<<20))
			}
		}
		if w.Ratio != nil {
			row[4] = fmt.Sprintf("%.2f", *w.Ratio)
		}
		if l := w.Latency; l != nil {
			row[6] = fmt.Sprintf("%.1f / %.1f / %.1f", l.P50, l.P95, l.P99)
		}
		rows = append(rows, row)
	}
	return rows
}

func result(w *Result) string {
	switch {
	case w.Pass == nil:
		return "ERROR"
	case w.Informational:
		return "INFO"
	case *w.Pass:
		return "PASS"
	default:
		return "FAIL"
	}
}

// count formats n with thousands separators.
func count(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (r *Report) title() string {
	commit := r.GitCommit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	var from string
	switch {
	case strings.HasPrefix(r.Pgsignal, "binary "):
		from = r.Pgsignal
	case r.GitDirty:
		from = "commit " + commit + " + uncommitted changes"
	default:
		from = "commit " + commit
	}
	rounds := ""
	if r.Repeat > 1 {
		rounds = fmt.Sprintf(", best of %d rounds", r.Repeat)
	}
	return fmt.Sprintf("pgsignal benchmark, %s: %d CPUs, %s, %s, pgsignal from %s, scale %g%s, %.0fs",
		r.Date, r.CPUs, r.PostgresVersion, r.GoVersion, from, r.Scale, rounds, r.Seconds)
}

// writeText prints the main table, the time and CPU of each reader, and the
// notes.
func (r *Report) writeText(w io.Writer) {
	fmt.Fprintf(w, "\n%s\n\n", r.title())
	// Names and targets left-aligned, figures right-aligned.
	table(w, header, r.rows(), 0, 8, 9)

	fmt.Fprintf(w, "\nreaders (seconds; CPU time while timed: the reader, its walsender, the bench with the fake, everything else, the hypervisor's steal; machine busy excludes steal)\n\n")
	var rows [][]string
	for _, wl := range r.Workloads {
		pgsignal := "pgsignal"
		if wl.Plain != nil {
			pgsignal = "transform" // W6: plain mapping, then the transform
		}
		for _, rd := range []struct {
			name string
			r    *Reader
		}{{"warm-up", wl.Warmup}, {"limit", wl.Limit}, {"plain", wl.Plain}, {pgsignal, wl.Pgsignal}} {
			if rd.r == nil {
				continue
			}
			x := rd.r
			req := "-"
			if x.Requests > 0 {
				req = count(x.Requests)
			}
			name := wl.Name + " " + rd.name
			if x.Transport != "" {
				name += " (" + x.Transport + ")"
			}
			rows = append(rows, []string{name,
				fmt.Sprintf("%.2f", x.Seconds), fmt.Sprintf("%.2f", x.StartupSeconds), fmt.Sprintf("%.2f", x.CPUSeconds),
				fmt.Sprintf("%.2f", x.WalsenderCPUSeconds), fmt.Sprintf("%.2f", x.BenchCPUSeconds),
				fmt.Sprintf("%.2f", x.OtherCPUSeconds), fmt.Sprintf("%.2f", x.StealSeconds), fmt.Sprintf("%.2f", x.CPUPerMillion), fmt.Sprintf("%.0f%%", x.MachineBusyPercent), req, x.LoadAvg})
		}
	}
	table(w, []string{"run", "timed", "startup", "reader CPU", "walsender CPU", "bench CPU", "other CPU", "steal", "reader CPU-s/1M ev", "machine busy", "requests", "load avg before"}, rows, 0)

	var notes []string
	for _, wl := range r.Workloads {
		if wl.Error != "" {
			notes = append(notes, fmt.Sprintf("%s: error: %s", wl.Name, wl.Error))
		}
		for _, n := range wl.Notes {
			notes = append(notes, fmt.Sprintf("%s: %s", wl.Name, n))
		}
		for _, x := range []*Reader{wl.Limit, wl.Plain, wl.Pgsignal} {
			if x != nil && x.Complete && x.Seconds < 2 {
				notes = append(notes, fmt.Sprintf("%s: a timed part under 2 s: start-up and the last request weigh on the rate; use a larger -scale", wl.Name))
				break
			}
		}
		if wl.Latency != nil {
			notes = append(notes, fmt.Sprintf("%s: %d events, latency min %.1f ms, max %.1f ms", wl.Name, wl.Latency.Count, wl.Latency.Min, wl.Latency.Max))
		}
		for _, x := range []*Reader{wl.Plain, wl.Pgsignal} {
			if x != nil && x.CPUProfile != "" {
				notes = append(notes, fmt.Sprintf("%s: CPU profile in %s (go tool pprof -top FILE)", wl.Name, x.CPUProfile))
			}
			if x != nil && x.AllocProfile != "" {
				notes = append(notes, fmt.Sprintf("%s: allocation profile in %s (go tool pprof -sample_index=alloc_space -top FILE)", wl.Name, x.AllocProfile))
			}
			if x != nil && x.PerfData != "" {
				notes = append(notes, fmt.Sprintf("%s: perf profile in %s (perf report -i FILE)", wl.Name, x.PerfData))
			}
		}
	}
	notes = append(notes, fmt.Sprintf("load average at start %s, at end %s", r.LoadAvgStart, r.LoadAvgEnd))
	if r.UnixSendBuffer > 0 {
		notes = append(notes, fmt.Sprintf("net.core.wmem_default %d bytes: the walsender's send buffer over the Unix socket (see docs/performance.md)", r.UnixSendBuffer))
	}
	fmt.Fprintln(w)
	for _, n := range notes {
		fmt.Fprintln(w, "- "+n)
	}
}

// table prints rows under header in columns two spaces apart, right-aligned
// except the columns in left.
func table(w io.Writer, header []string, rows [][]string, left ...int) {
	width := make([]int, len(header))
	for _, row := range append([][]string{header}, rows...) {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, row := range append([][]string{header}, rows...) {
		var b strings.Builder
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("  ")
			}
			if slices.Contains(left, i) {
				b.WriteString(c + pad)
			} else {
				b.WriteString(pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// writeMarkdown prints the main table as Markdown, for the README.
func (r *Report) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "%s\n\n", r.title())
	fmt.Fprintln(w, "| "+strings.Join(header, " | ")+" |")
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = "---"
		if i > 0 && i < 8 {
			sep[i] = "---:"
		}
	}
	fmt.Fprintln(w, "|"+strings.Join(sep, "|")+"|")
	for _, row := range r.rows() {
		fmt.Fprintln(w, "| "+strings.Join(row, " | ")+" |")
	}
	for _, wl := range r.Workloads {
		if wl.Error != "" {
			fmt.Fprintf(w, "\n%s: error: %s\n", wl.Name, wl.Error)
		}
	}
}
