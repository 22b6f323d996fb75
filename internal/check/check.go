package check

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/replication"
)

// Status is the outcome of one item.
type Status string

// Statuses.
const (
	// Pass: the item is fine.
	Pass Status = "pass"
	// Fail: pgsignal cannot run (or cannot run safely) until it is fixed.
	Fail Status = "fail"
	// Warn: advice; it does not fail the report.
	Warn Status = "warn"
	// Skip: the item could not run, because an earlier item failed or it
	// does not apply; Detail says why.
	Skip Status = "skip"
)

// Symbol returns the mark printed before an item: ✓, ✗, ! or -.
func (s Status) Symbol() string {
	switch s {
	case Pass:
		return "✓"
	case Fail:
		return "✗"
	case Warn:
		return "!"
	}
	return "-"
}

// Item is one checked requirement.
type Item struct {
	// Name identifies the item, e.g. "wal_level" or "select analytics.events".
	Name string `json:"name"`
	// Status is the outcome.
	Status Status `json:"status"`
	// Detail says what was found (or, for Skip, why the item did not run).
	Detail string `json:"detail"`
	// Fix is the SQL or configuration change that fixes a failure (or
	// follows a warning's advice); "" otherwise.
	Fix string `json:"fix"`
}

// Report is the outcome of Run.
type Report struct {
	// OK is true when no item failed.
	OK bool `json:"ok"`
	// Items in check order.
	Items []Item `json:"items"`
}

// Options configure Run.
type Options struct {
	// Config is the loaded configuration. Required.
	Config *config.Config
	// Source says how to reach the database; a zero DSN means
	// Config.Source.DSN. Its Dial (a tunnel) is used for every connection.
	Source replication.Source
	// HTTPClient is used for the OneSignal request (default: the sink's).
	HTTPClient *http.Client
	// ConnectTimeout bounds each connection attempt (default 10s).
	ConnectTimeout time.Duration
}

// DefaultConnectTimeout is Options.ConnectTimeout when unset.
const DefaultConnectTimeout = 10 * time.Second

// Run checks everything and returns the report. It blocks until every
// item has run or ctx ends (the remaining items then fail with ctx's
// error).
func Run(ctx context.Context, opts Options) *Report {
	if opts.Source.DSN == "" {
		opts.Source.DSN = opts.Config.Source.DSN
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	r := &runner{opts: opts, cfg: opts.Config, done: map[string]bool{}}
	r.database(ctx)
	r.oneSignal(ctx)
	rep := &Report{OK: true, Items: r.items}
	scrub := secretScrubber(opts)
	for i := range rep.Items {
		it := &rep.Items[i]
		it.Detail, it.Fix = scrub(it.Detail), scrub(it.Fix)
		if it.Status == Fail {
			rep.OK = false
		}
	}
	return rep
}

// secretScrubber returns a function that replaces the API key and the
// database password in a text. It is a second line of defence: no item is
// built from them.
func secretScrubber(opts Options) func(string) string {
	var secrets []string
	if k := opts.Config.OneSignal.APIKey; len(k) >= 4 {
		secrets = append(secrets, k)
	}
	if cfg, err := pgconn.ParseConfig(opts.Source.DSN); err == nil && len(cfg.Password) >= 4 {
		secrets = append(secrets, cfg.Password)
	}
	return func(s string) string {
		for _, sec := range secrets {
			s = strings.ReplaceAll(s, sec, "********")
		}
		return s
	}
}

// Failed returns the items that failed.
func (r *Report) Failed() []Item {
	var out []Item
	for _, it := range r.Items {
		if it.Status == Fail {
			out = append(out, it)
		}
	}
	return out
}

// Count returns how many items have status s.
func (r *Report) Count(s Status) int {
	n := 0
	for _, it := range r.Items {
		if it.Status == s {
			n++
		}
	}
	return n
}

// WriteText writes one line per item, "✓ name: detail", each failure (and
// warning with advice) followed by its indented fix, then a summary line.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, it := range r.Items {
		fmt.Fprintf(&b, "%s %s: %s\n", it.Status.Symbol(), it.Name, it.Detail)
		if it.Fix != "" && (it.Status == Fail || it.Status == Warn) {
			b.WriteString("    fix: " + strings.ReplaceAll(it.Fix, "\n", "\n         ") + "\n")
		}
	}
	warn := ""
	if n := r.Count(Warn); n > 0 {
		warn = fmt.Sprintf(", %d warning(s)", n)
	}
	if r.OK {
		fmt.Fprintf(&b, "OK: every required check passed%s\n", warn)
	} else {
		fmt.Fprintf(&b, "FAILED: %d of %d checks failed%s; fix them and run pgsignal check again\n", r.Count(Fail), len(r.Items), warn)
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// WriteJSON writes the report as {"ok":bool,"items":[{"name","status",
// "detail","fix"}]}.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// runner holds what the items learn as they run.
type runner struct {
	opts  Options
	cfg   *config.Config
	items []Item
	done  map[string]bool
}

func (r *runner) add(name string, s Status, detail, fix string) {
	r.items = append(r.items, Item{Name: name, Status: s, Detail: detail, Fix: fix})
	r.done[name] = true
}

func (r *runner) pass(name, detail string)      { r.add(name, Pass, detail, "") }
func (r *runner) fail(name, detail, fix string) { r.add(name, Fail, detail, fix) }
func (r *runner) warn(name, detail, fix string) { r.add(name, Warn, detail, fix) }
func (r *runner) skip(name, reason string)      { r.add(name, Skip, reason, "") }

// skipRest marks every item of names not reported yet as skipped.
func (r *runner) skipRest(names []string, reason string) {
	for _, n := range names {
		if !r.done[n] {
			r.skip(n, reason)
		}
	}
}
