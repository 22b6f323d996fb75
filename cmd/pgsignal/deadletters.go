package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"go.uber.org/zap"

	"github.com/pgsignal/pgsignal/internal/app"
	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/replication"
	"github.com/pgsignal/pgsignal/sink"
)

const deadLettersUsage = `Usage:
  pgsignal dead-letters list    [--config FILE] [--id N,...] [--reason TEXT] [--json]
  pgsignal dead-letters replay  [--config FILE] (--id N,... | --reason TEXT | --all)
  pgsignal dead-letters discard [--config FILE] (--id N,... | --reason TEXT | --all)

Full mode reads census.dead_letters; read-only mode reads sink.dead_letter_file
(they may run while pgsignal runs: replay and discard lock the file, and
pgsignal waits to write its next dead letter until they are done). Replay
sends each event with its original idempotency key and removes the letters
OneSignal accepts. A letter whose row never became an event (a mapping
failure) is mapped again with the current configuration (fix it first),
and its events are sent with the keys the stream gives them; one that still
cannot become an event stays, with the new reason.
`

func cmdDeadLetters(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(stderr, deadLettersUsage)
		return errUsage
	}
	action, rest := args[0], args[1:]
	if action != "list" && action != "replay" && action != "discard" {
		fmt.Fprintf(stderr, "pgsignal dead-letters: unknown action %q\n\n%s", action, deadLettersUsage)
		return errUsage
	}
	fs := newFlagSet("dead-letters "+action, stderr)
	path := fs.String("config", "pgsignal.yaml", "configuration file")
	ids := fs.String("id", "", "comma-separated dead-letter ids")
	reason := fs.String("reason", "", "select letters whose reason contains this text (case-insensitive)")
	all := fs.Bool("all", false, "select every letter")
	asJSON := fs.Bool("json", false, "print JSON (list)")
	if err := parseFlags(fs, rest); err != nil {
		return err
	}
	f := sink.Filter{Reason: *reason, All: *all}
	if *ids != "" {
		for _, s := range strings.Split(*ids, ",") {
			id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil {
				fmt.Fprintf(stderr, "pgsignal dead-letters: --id %q is not a list of numbers\n", *ids)
				return errUsage
			}
			f.IDs = append(f.IDs, id)
		}
	}
	if action != "list" && f.Empty() {
		fmt.Fprintf(stderr, "pgsignal dead-letters %s: say which letters: --id, --reason or --all\n", action)
		return errUsage
	}
	// Only replay calls OneSignal; list and discard need no API key.
	load := config.LoadForDatabase
	if action == "replay" {
		load = config.Load
	}
	cfg, err := load(*path)
	if err != nil {
		return err
	}
	store, closeStore, err := letterStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeStore()
	// Replay and discard rewrite the read-only mode's file: hold its lock
	// from the list to the rewrite; a running pgsignal waits to append
	// meanwhile, then appends to the rewritten file.
	if fl, ok := store.(*sink.FileLetters); ok && action != "list" {
		if err := fl.Lock(); err != nil {
			return fmt.Errorf("dead-letters %s: %w", action, err)
		}
		defer fl.Unlock()
	}

	switch action {
	case "list":
		letters, err := store.List(ctx, f)
		if err != nil {
			return err
		}
		if *asJSON {
			if letters == nil {
				letters = []sink.Letter{}
			}
			return writeJSON(stdout, letters)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPOSITION\tTABLE\tATTEMPTS\tLAST FAILURE\tREASON")
		for _, l := range letters {
			fmt.Fprintf(tw, "%d\t%s#%d\t%s\t%d\t%s\t%s%s\n", l.ID, l.CommitLSN, l.Ordinal, l.Table, l.Attempts,
				l.LastFailedAt.UTC().Format("2006-01-02 15:04:05"), l.Reason, keptNote(l.Storage))
		}
		if err := tw.Flush(); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		fmt.Fprintf(stdout, "%d dead letter(s)\n", len(letters))
		return nil
	case "discard":
		letters, err := store.List(ctx, f)
		if err != nil {
			return err
		}
		if err := missingIDs(f.IDs, letters); err != nil {
			return err
		}
		var done []int64
		for _, l := range letters {
			done = append(done, l.ID)
		}
		if err := store.Resolve(ctx, done, nil, timeNow()); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "discarded %d dead letter(s)\n", len(done))
		return nil
	default:
		if len(f.IDs) > 0 {
			letters, err := store.List(ctx, f)
			if err != nil {
				return err
			}
			if err := missingIDs(f.IDs, letters); err != nil {
				return err
			}
		}
		client := sink.NewClient(sink.ClientConfig{BaseURL: cfg.OneSignal.URL, AppID: cfg.OneSignal.AppID,
			APIKey: cfg.OneSignal.APIKey, Timeout: cfg.OneSignal.Timeout})
		rm, closeRemap, err := newRemapper(ctx, cfg)
		if err != nil {
			return err
		}
		defer closeRemap()
		sender, done := replaySender(ctx, stderr, store, f, client)
		res, unmapped, err := sink.ReplayRemap(ctx, store, sender, f, 5, rm)
		done()
		if err != nil {
			return err
		}
		if res.Stale > 0 {
			fmt.Fprintf(stdout, "note: %d of these letters were stale: older than max_event_age when they were dead-lettered; replaying sends them now\n", res.Stale)
		}
		fmt.Fprintf(stdout, "replayed: %d delivered, %d failed again (kept), %d skipped (rows that still cannot become events, kept)\n",
			res.Delivered, res.Failed, res.Skipped)
		if res.Remapped > 0 || len(unmapped) > 0 {
			fmt.Fprintf(stdout, "re-mapped with the current configuration: %d letter(s) whose row never became an event became %d event(s) (sent with the keys the stream gives them; counted above); %d still cannot become an event:\n",
				res.Remapped, res.RemappedEvents, len(unmapped))
			for _, u := range unmapped {
				fmt.Fprintf(stdout, "  letter %d: %s\n", u.ID, u.Reason)
			}
		}
		return nil
	}
}

// newRemapper returns what maps the rows of letters that never became
// events again with cfg. It connects to the source database when a letter
// needs it.
func newRemapper(ctx context.Context, cfg *config.Config) (sink.Remapper, func(), error) {
	dial, closeDial, err := dialerFor(cfg, zap.NewNop())
	if err != nil {
		return nil, nil, err
	}
	src := replication.Source{DSN: cfg.Source.DSN, Dial: dial}
	pool, err := replication.NewPool(ctx, src, 2)
	if err != nil {
		closeDial() //nolint:errcheck // best effort
		return nil, nil, err
	}
	rm, err := app.NewRemapper(ctx, cfg, pool, src)
	if err != nil {
		pool.Close()
		closeDial() //nolint:errcheck // best effort
		return nil, nil, err
	}
	return rm, func() {
		rm.Close()
		pool.Close()
		closeDial() //nolint:errcheck // best effort
	}, nil
}

// letterStore opens the dead-letter store of the configured mode.
func letterStore(ctx context.Context, cfg *config.Config) (sink.LetterStore, func(), error) {
	if cfg.Source.Mode == config.ModeReadOnly {
		return &sink.FileLetters{Path: cfg.Sink.DeadLetterFile}, func() {}, nil
	}
	pool, closePool, err := openPool(ctx, cfg, 2)
	if err != nil {
		return nil, nil, err
	}
	return &sink.TableLetters{Pool: pool, Schema: cfg.Source.Schema, Slot: cfg.Source.Slot}, closePool, nil
}

// keptNote says which parts of a letter are kept as bytes (see --json).
func keptNote(st *sink.Storage) string {
	if st == nil {
		return ""
	}
	var parts []string
	for _, p := range []struct {
		name string
		k    *sink.Kept
	}{{"event", st.Event}, {"row", st.Row}} {
		switch {
		case p.k == nil:
		case p.k.Truncated:
			parts = append(parts, fmt.Sprintf("%s truncated (%d bytes)", p.name, p.k.Size))
		default:
			parts = append(parts, p.name+" kept as bytes")
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " [" + strings.Join(parts, ", ") + "; see --json]"
}

// missingIDs fails when --id names a letter that does not exist (or that
// the other filters leave out): nothing is done then, rather than a quiet
// "0 discarded".
func missingIDs(ids []int64, letters []sink.Letter) error {
	found := map[int64]bool{}
	for _, l := range letters {
		found[l.ID] = true
	}
	var missing []string
	for _, id := range ids {
		if !found[id] {
			missing = append(missing, strconv.FormatInt(id, 10))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("no dead letter with id %s (or it does not match the other filters): nothing was done; see pgsignal dead-letters list", strings.Join(missing, ", "))
	}
	return nil
}
