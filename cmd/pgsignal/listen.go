package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/pgsignal/pgsignal/internal/config"
)

// listenEnv names the environment variable that, when set, is the default
// of server.listen in place of 127.0.0.1:8187: the container image sets it
// to 0.0.0.0:8187, so that `docker run -p 8187:8187` reaches the server; ""
// disables the server. A server.listen set in the config wins.
const listenEnv = "PGSIGNAL_LISTEN"

// applyListenEnv gives cfg.Server.Listen the value of $PGSIGNAL_LISTEN when
// it is set and the config leaves server.listen at its default, and
// validates the result.
func applyListenEnv(cfg *config.Config) error {
	v, ok := os.LookupEnv(listenEnv)
	if !ok || cfg.Server.Listen != config.DefaultListen {
		return nil
	}
	cfg.Server.Listen = strings.TrimSpace(v)
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("%s=%q: %w", listenEnv, v, err)
	}
	return nil
}

// knownPorts are the default ports of the exporters and tools most likely
// to run beside pgsignal (the Prometheus project's default port
// allocations).
var knownPorts = map[int]string{
	9090: "Prometheus", 9091: "the Pushgateway", 9093: "Alertmanager", 9100: "node_exporter",
	9104: "mysqld_exporter", 9113: "nginx-prometheus-exporter", 9114: "elasticsearch_exporter",
	9115: "blackbox_exporter", 9121: "redis_exporter", 9187: "postgres_exporter",
	9256: "process-exporter", 9808: "pgbouncer_exporter",
}

// listenError explains a failure to listen on addr (server.listen): when
// the port is taken, which process holds it (or which exporter likely
// does) and how to give pgsignal another port.
func listenError(addr string, err error) error {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("server.listen %s: %w", addr, err)
	}
	host, portText, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portText)
	who := "another process holds it"
	if p := portHolder(port); p != "" {
		who = p + " holds it"
	} else if name, ok := knownPorts[port]; ok {
		who = "another process holds it, likely " + name + " (its default port)"
	} else if port >= 9100 && port <= 9999 {
		who = "another process holds it, likely a Prometheus exporter (9100-9999 are their default ports)"
	}
	if host == "" {
		host = "127.0.0.1"
	}
	other := net.JoinHostPort(host, strconv.Itoa(port+1))
	return fmt.Errorf("server.listen %s: the port is taken: %s; move that process to another port, or give pgsignal "+
		"another one: set server.listen in the config (server: {listen: %q}) or %s=%s in the environment "+
		"(\"\" disables the server): %w", addr, who, other, listenEnv, other, err)
}

// portHolder returns "process PID (NAME)" for the process listening on TCP
// port, when /proc tells (Linux, and the process is visible to this user),
// or "".
func portHolder(port int) string {
	if port <= 0 {
		return ""
	}
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fs := strings.Fields(line)
			// sl local_address rem_address st ... inode (field 9)
			if len(fs) < 10 || fs[3] != "0A" {
				continue
			}
			i := strings.LastIndexByte(fs[1], ':')
			if p, err := strconv.ParseInt(fs[1][i+1:], 16, 32); err == nil && int(p) == port && fs[9] != "0" {
				inodes["socket:["+fs[9]+"]"] = true
			}
		}
	}
	if len(inodes) == 0 {
		return ""
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range procs {
		fds, err := os.ReadDir(filepath.Join(dir, "fd"))
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, "fd", fd.Name()))
			if err != nil || !inodes[link] {
				continue
			}
			name, _ := os.ReadFile(filepath.Join(dir, "comm"))
			return fmt.Sprintf("process %s (%s)", filepath.Base(dir), strings.TrimSpace(string(name)))
		}
	}
	return ""
}
