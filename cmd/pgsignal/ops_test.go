package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// writeOfflineConfig writes a config whose server.listen is left at its
// default (plus extra lines at the top level); pgsignal stops at the
// listener before it connects anywhere.
func writeOfflineConfig(t *testing.T, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pgsignal.yaml")
	cfg := `source:
  dsn: "postgres://census@127.0.0.1:1/analytics"
onesignal:
  app_id: "5eb5a37e-b458-11e3-ac11-000c2940e62c"
  api_key: "k"
tables:
  - table: analytics.user_events
    name: event_name
    external_id: user_id
` + extra
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// runBinary runs the pgsignal binary with env added; it returns the
// combined output and the exit code.
func runBinary(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}

// The metrics port is taken (here by this test process): pgsignal exits 1
// and says which process holds the port and how to choose another one.
// PGSIGNAL_LISTEN (the image's listener) takes the place of the default.
func TestListenPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	port := ln.Addr().(*net.TCPAddr).Port
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Skip("no /proc: the holder cannot be named")
	}
	out, code := runBinary(t, []string{"PGSIGNAL_LISTEN=" + addr}, "run", "--config", writeOfflineConfig(t, ""))
	next := "127.0.0.1:" + strconv.Itoa(port+1)
	want := fmt.Sprintf("pgsignal: server.listen %s: the port is taken: process %d (%s) holds it; move that process to another port, "+
		"or give pgsignal another one: set server.listen in the config (server: {listen: %q}) or PGSIGNAL_LISTEN=%s in the environment "+
		"(\"\" disables the server): listen tcp %s: bind: address already in use\n",
		addr, os.Getpid(), strings.TrimSpace(string(comm)), next, next, addr)
	if code != 1 || !strings.HasSuffix(out, want) {
		t.Fatalf("exit %d, output:\n%s\nwant the last line:\n%s", code, out, want)
	}

	// A server.listen in the config wins over PGSIGNAL_LISTEN.
	cfg := writeOfflineConfig(t, "server:\n  listen: \""+addr+"\"\n")
	out, code = runBinary(t, []string{"PGSIGNAL_LISTEN=127.0.0.1:0"}, "run", "--config", cfg)
	if code != 1 || !strings.Contains(out, "server.listen "+addr+": the port is taken: process ") {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
	// A wrong PGSIGNAL_LISTEN is a configuration error.
	out, code = runBinary(t, []string{"PGSIGNAL_LISTEN=localhost"}, "run", "--config", writeOfflineConfig(t, ""))
	if code != 1 || !strings.Contains(out, `PGSIGNAL_LISTEN="localhost"`) || !strings.Contains(out, `expected host:port like "127.0.0.1:8187"`) {
		t.Fatalf("exit %d, output:\n%s", code, out)
	}
}

// When the process holding the port cannot be seen, the message names the
// exporter whose default port it is.
func TestListenErrorNamesTheExporter(t *testing.T) {
	inUse := &net.OpError{Op: "listen", Net: "tcp", Err: os.NewSyscallError("bind", syscall.EADDRINUSE)}
	for _, c := range []struct{ addr, who string }{
		{"127.0.0.1:9187", "another process holds it, likely postgres_exporter (its default port)"},
		{"0.0.0.0:9100", "another process holds it, likely node_exporter (its default port)"},
		{"127.0.0.1:9555", "another process holds it, likely a Prometheus exporter (9100-9999 are their default ports)"},
	} {
		if portHolder(portOf(c.addr)) != "" {
			t.Logf("%s is in use on this machine; skipped", c.addr)
			continue
		}
		got := listenError(c.addr, inUse).Error()
		if !strings.HasPrefix(got, "server.listen "+c.addr+": the port is taken: "+c.who+"; move that process") {
			t.Errorf("%s: %s", c.addr, got)
		}
	}
}

func portOf(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// pgsignal version names the version and the toolchain; -ldflags set the
// version and revision.
func TestVersionCommand(t *testing.T) {
	out, code := runBinary(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "pgsignal ") || !strings.HasSuffix(out, " "+runtime.Version()+"\n") || strings.Contains(out, "pgsignal dev ") {
		t.Fatalf("exit %d: %q", code, out)
	}
	bin := filepath.Join(t.TempDir(), "pgsignal")
	build := exec.Command("go", "build", "-ldflags", "-X main.version=1.2.3 -X main.revision=0123abcd", "-o", bin, ".")
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	got, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if want := "pgsignal 1.2.3 (revision 0123abcd) " + runtime.Version() + "\n"; string(got) != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}
