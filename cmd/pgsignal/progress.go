package main

import (
	"context"
	"encoding/json"
	"io"
	"sync/atomic"

	"github.com/pgsignal/pgsignal/internal/config"
	"github.com/pgsignal/pgsignal/internal/progress"
	"github.com/pgsignal/pgsignal/sink"
)

// progressLine returns a progress line on stderr when it is a terminal
// (else nil) and the writer logs should go to: one that keeps log lines
// apart from the line. On a terminal the "auto" log format is console, as
// newLogger would choose for stderr itself.
func progressLine(stderr io.Writer, cfg *config.Config, label, unit string) (*progress.Line, io.Writer) {
	line := progress.New(stderr, label, unit)
	if line == nil {
		return nil, stderr
	}
	if cfg.Log.Format == "" || cfg.Log.Format == "auto" {
		cfg.Log.Format = "console"
	}
	return line, line.Writer(stderr)
}

// finishing returns a progress hook that ends the line once done reaches
// total (nil without a line).
func finishing(line *progress.Line) func(done, total int64) {
	if line == nil {
		return nil
	}
	return func(done, total int64) {
		line.Update(done, total)
		if done >= total {
			line.Finish()
		}
	}
}

// replaySender returns what dead-letters replay sends through: client,
// counted on a progress line when stderr is a terminal (the total is the
// letters selected; a re-mapped letter may become several events). Call
// the returned function when done.
func replaySender(ctx context.Context, stderr io.Writer, store sink.LetterStore, f sink.Filter, client sink.Sender) (sink.Sender, func()) {
	line := progress.New(stderr, "replay", "events")
	if line == nil {
		return client, func() {}
	}
	letters, err := store.List(ctx, f)
	if err != nil {
		return client, func() {}
	}
	c := &countingSender{s: client, line: line, total: int64(len(letters))}
	line.Update(0, c.total)
	return c, line.Finish
}

// countingSender counts the events sent on a progress line.
type countingSender struct {
	s     sink.Sender
	line  *progress.Line
	total int64
	done  atomic.Int64
}

// Send implements sink.Sender.
func (c *countingSender) Send(ctx context.Context, body []byte) (sink.Result, error) {
	res, err := c.s.Send(ctx, body)
	var b struct {
		Events []json.RawMessage `json:"events"`
	}
	if json.Unmarshal(body, &b) == nil {
		c.line.Update(c.done.Add(int64(len(b.Events))), c.total)
	}
	return res, err
}
