package pgtest

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
)

// Names of the SSL files in the data directory.
const (
	sslCertName = "server.crt"
	sslKeyName  = "server.key"
	sslCAName   = "root.crt"
)

// defaultHBA follows Options.HBA in pg_hba.conf.
const defaultHBA = `# pgtest defaults:
local   all          all                  trust
host    all          all   127.0.0.1/32   trust
host    all          all   ::1/128        trust
local   replication  all                  trust
host    replication  all   127.0.0.1/32   trust
host    replication  all   ::1/128        trust
`

// defaultConf returns pgtest's postgresql.conf settings, apart from port and
// unix_socket_directories, which depend on the server.
func defaultConf() map[string]string {
	return map[string]string{
		"listen_addresses":      "127.0.0.1",
		"wal_level":             "logical",
		"max_wal_senders":       "20",
		"max_replication_slots": "20",
		"fsync":                 "off",
		"synchronous_commit":    "on",
		"full_page_writes":      "off",
		"shared_buffers":        "128MB",
		"max_connections":       "100",
		"log_min_messages":      "warning",
		"logging_collector":     "off",
		"timezone":              "UTC",
		"log_timezone":          "UTC",
	}
}

var confNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// normalizeConf checks Options.Conf and lower-cases its names, as
// PostgreSQL's are case-insensitive.
func normalizeConf(conf map[string]string) (map[string]string, error) {
	out := make(map[string]string, len(conf))
	for k, v := range conf {
		if !confNameRE.MatchString(k) {
			return nil, fmt.Errorf("conf: bad setting name %q", k)
		}
		if strings.ContainsAny(v, "\r\n\x00") {
			return nil, fmt.Errorf("conf: value of %s spans lines", k)
		}
		lk := strings.ToLower(k)
		if _, dup := out[lk]; dup {
			return nil, fmt.Errorf("conf: %s is set twice (names are case-insensitive)", lk)
		}
		out[lk] = v
	}
	return out, nil
}

// renderConf renders settings as postgresql.conf lines, sorted by name, every
// value quoted.
func renderConf(conf map[string]string) string {
	names := make([]string, 0, len(conf))
	for k := range conf {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("# Written by pgtest; included at the end of postgresql.conf.\n")
	for _, k := range names {
		fmt.Fprintf(&b, "%s = '%s'\n", k, strings.ReplaceAll(conf[k], "'", "''"))
	}
	return b.String()
}
