package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// EnvBinDir is the environment variable that names the directory holding the
// PostgreSQL binaries (initdb, postgres) when Options.BinDir is empty.
const EnvBinDir = "PGSIGNAL_PG_BIN"

// debianBinGlob is where Debian and Ubuntu packages install each major
// version's binaries.
const debianBinGlob = "/usr/lib/postgresql/*/bin"

// ErrNotFound is returned (wrapped) by FindBinDir, Start and New when no
// PostgreSQL binaries are found. Tests that would rather skip than fail can
// check for it with errors.Is.
var ErrNotFound = errors.New("postgresql binaries not found")

// FindBinDir returns the directory that holds the initdb and postgres
// binaries to use. A non-empty dir is checked and returned as is. Otherwise
// the search order is: $PGSIGNAL_PG_BIN, the highest-versioned
// /usr/lib/postgresql/*/bin, then the output of `pg_config --bindir` (pg_config
// found in $PATH). A set but unusable $PGSIGNAL_PG_BIN is an error rather than
// being skipped. The error wraps ErrNotFound and names what was searched.
func FindBinDir(dir string) (string, error) {
	if dir != "" {
		if err := checkBinDir(dir); err != nil {
			return "", fmt.Errorf("find postgres: Options.BinDir: %w", err)
		}
		return filepath.Abs(dir)
	}
	if env := os.Getenv(EnvBinDir); env != "" {
		if err := checkBinDir(env); err != nil {
			return "", fmt.Errorf("find postgres: $%s: %w", EnvBinDir, err)
		}
		return filepath.Abs(env)
	}
	var searched []string
	searched = append(searched, "$"+EnvBinDir+" (unset)")

	dirs, _ := filepath.Glob(debianBinGlob)
	sort.Slice(dirs, func(i, j int) bool { return debianVersion(dirs[i]) > debianVersion(dirs[j]) })
	for _, d := range dirs {
		if checkBinDir(d) == nil {
			return d, nil
		}
	}
	searched = append(searched, debianBinGlob)

	if pgConfig, err := exec.LookPath("pg_config"); err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, pgConfig, "--bindir").Output()
		if d := strings.TrimSpace(string(out)); err == nil && checkBinDir(d) == nil {
			return d, nil
		}
		searched = append(searched, pgConfig+" --bindir")
	} else {
		searched = append(searched, "pg_config --bindir (no pg_config in $PATH)")
	}
	return "", fmt.Errorf("find postgres: %w (searched %s): install them with `apt-get install -y postgresql-15`, or set $%s or Options.BinDir to a directory holding initdb and postgres",
		ErrNotFound, strings.Join(searched, ", "), EnvBinDir)
}

// debianVersion returns the major version in a path such as
// /usr/lib/postgresql/15/bin, or -1.
func debianVersion(binDir string) float64 {
	v, err := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	if err != nil {
		return -1
	}
	return v
}

// checkBinDir reports whether dir holds executable initdb and postgres files.
func checkBinDir(dir string) error {
	for _, name := range []string{"postgres", "initdb"} {
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
			return fmt.Errorf("%w: %s is not an executable file", ErrNotFound, p)
		}
	}
	return nil
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\)\s+(\d+)`)

// binVersion runs `postgres --version` with env (nil: ours) and returns the
// major version and the full version line.
func binVersion(ctx context.Context, binDir string, env []string) (int, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "postgres"), "--version")
	cmd.Env = env
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, "", fmt.Errorf("postgres --version: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	line := strings.TrimSpace(string(out))
	major, err := parseVersion(line)
	if err != nil {
		return 0, "", err
	}
	return major, line, nil
}

// parseVersion extracts the major version from `postgres --version` output
// such as "postgres (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)" or
// "postgres (PostgreSQL) 17beta1". For 9.x it returns 9.
func parseVersion(s string) (int, error) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("parse postgres version %q: no \"(PostgreSQL) N\"", s)
	}
	major, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, fmt.Errorf("parse postgres version %q: %w", s, err)
	}
	return major, nil
}
