package main

import (
	"flag"
	"fmt"
	"io"
)

// newFlagSetWithUsage is newFlagSet for a command with its own usage text:
// -h prints usage, then the flags.
func newFlagSetWithUsage(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := newFlagSet(name, stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		printFlagList(fs)
	}
	return fs
}
