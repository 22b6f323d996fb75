package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/pgsignal/pgsignal/internal/preview"
	"github.com/pgsignal/pgsignal/internal/progress"
)

const previewUsage = `Usage:
  pgsignal preview [--config FILE] [--table T] [--limit 20] [--json]

Shows what the configured tables would send, before going live: the latest rows
of each table (by its backfill column when it has one, else its primary key), read
with SELECT in a read-only transaction (no slot, nothing written), through the
table's mapping or transform, as the events they become (name, external_id,
timestamp, properties, size in bytes) or the dead letters and why. An event that
takes its row's commit time shows the time of the preview.

Flags:
`

func cmdPreview(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("preview", stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, previewUsage)
		printFlagList(fs)
	}
	path := fs.String("config", "pgsignal.yaml", "configuration file")
	table := fs.String("table", "", `preview only this configured table ("schema.table")`)
	limit := fs.Int("limit", preview.DefaultLimit, "the number of latest rows per table")
	asJSON := fs.Bool("json", false, `print {"tables":[{"table","order_by","mapping","rows":[{"key","events","dead_letters"}]}]}`)
	timeout := fs.Duration("timeout", 5*time.Minute, "bound on the whole preview")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *limit <= 0 {
		fmt.Fprintln(stderr, "pgsignal preview: --limit must be at least 1")
		return errUsage
	}
	cfg, src, closeSrc, err := loadSource("preview", *path, false, stderr)
	if err != nil {
		return err
	}
	defer closeSrc()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	line := progress.New(stderr, "preview", "rows")
	rep, err := preview.Run(ctx, preview.Options{Config: cfg, Source: src,
		Table: *table, Limit: *limit, Progress: line.Update})
	if line != nil {
		line.Finish()
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return writeJSON(stdout, rep)
	}
	return writePreview(stdout, rep)
}

// writePreview prints a preview for a person.
func writePreview(w io.Writer, rep *preview.Report) error {
	var b strings.Builder
	for i, t := range rep.Tables {
		if i > 0 {
			b.WriteString("\n")
		}
		mapping := "its mapping"
		if t.Mapping == "transform" {
			mapping = "its transform"
		}
		if t.Error != "" {
			fmt.Fprintf(&b, "%s: cannot be previewed: %s\n", t.Table, t.Error)
			continue
		}
		fmt.Fprintf(&b, "%s: the latest %d row(s) by %s, through %s\n", t.Table, len(t.Rows), strings.Join(t.OrderBy, ", "), mapping)
		events, letters := 0, 0
		for _, r := range t.Rows {
			keys := make([]string, len(r.Key))
			for k, kv := range r.Key {
				v := "NULL"
				if kv.Value != nil {
					v = *kv.Value
				}
				keys[k] = kv.Column + "=" + v
			}
			fmt.Fprintf(&b, "  row %s:", strings.Join(keys, " "))
			if len(r.Events) == 0 && len(r.DeadLetters) == 0 {
				b.WriteString(" no event (the transform returns no row for it)\n")
				continue
			}
			b.WriteString("\n")
			for _, e := range r.Events {
				fmt.Fprintf(&b, "    event %q external_id=%q timestamp=%s size=%d bytes\n", e.Name, e.ExternalID, e.Timestamp, e.Size)
				if len(e.Properties) > 0 {
					fmt.Fprintf(&b, "      properties %s\n", e.Properties)
				}
			}
			for _, d := range r.DeadLetters {
				fmt.Fprintf(&b, "    dead letter: %s\n", d.Reason)
			}
			events += len(r.Events)
			letters += len(r.DeadLetters)
		}
		fmt.Fprintf(&b, "  %d row(s): %d event(s), %d dead letter(s)\n", len(t.Rows), events, letters)
	}
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
