package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// minimalDSN is the DSN line of minimal.
const minimalDSN = `  dsn: "postgres://census@db.internal:5432/analytics"` + "\n"

// sshBlock is a valid source.ssh section, inserted after minimalDSN: ssh is
// on line 4, host on 5, user on 6, private_key_file on 7, known_hosts_file
// on 8.
const sshBlock = `  ssh:
    host: bastion.example.com
    user: tunnel
    private_key_file: /etc/pgsignal/id_ed25519
    known_hosts_file: /etc/pgsignal/known_hosts
`

// secretSSHKey stands for a private key that must never be seen in a
// message.
const secretSSHKey = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUSECRETSSHKEY\n-----END OPENSSH PRIVATE KEY-----"

func TestTLSKeysMergedIntoDSN(t *testing.T) {
	tests := []struct {
		name string
		dsn  string
		// keys are lines added to the source section.
		keys    string
		wantDSN string
		want    Source
	}{
		{"no keys: the DSN is kept", `"postgres://census@db.internal/analytics?sslmode=require"`, "",
			"postgres://census@db.internal/analytics?sslmode=require",
			Source{}},
		{"URL without a query", `"postgres://census@db.internal:5432/analytics"`,
			"  sslmode: verify-full\n  sslrootcert: /etc/pgsignal/ca.crt\n",
			"postgres://census@db.internal:5432/analytics?sslmode=verify-full&sslrootcert=/etc/pgsignal/ca.crt",
			Source{SSLMode: "verify-full", SSLRootCert: "/etc/pgsignal/ca.crt"}},
		{"URL with a query", `"postgresql://census@h1:5432,h2:5433/analytics?application_name=x"`,
			"  sslmode: require\n",
			"postgresql://census@h1:5432,h2:5433/analytics?application_name=x&sslmode=require",
			Source{SSLMode: "require"}},
		{"URL ending with ?", `"postgres://db.internal/analytics?"`,
			"  sslmode: disable\n",
			"postgres://db.internal/analytics?sslmode=disable",
			Source{SSLMode: "disable"}},
		{"URL value escaped", `"postgres://census@db.internal/analytics"`,
			"  sslrootcert: \"/etc/pg signal/c+a@x.crt\"\n",
			"postgres://census@db.internal/analytics?sslrootcert=/etc/pg%20signal/c%2Ba%40x.crt",
			Source{SSLRootCert: "/etc/pg signal/c+a@x.crt"}},
		{"URL with the same value written in both places", `"postgres://db.internal/analytics?sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.crt"`,
			"  sslmode: verify-ca\n  sslrootcert: /etc/ca.crt\n",
			"postgres://db.internal/analytics?sslmode=verify-ca&sslrootcert=%2Fetc%2Fca.crt",
			Source{SSLMode: "verify-ca", SSLRootCert: "/etc/ca.crt"}},
		{"key=value", `"host=db.internal dbname=analytics user=census"`,
			"  sslmode: verify-full\n  sslrootcert: system\n  sslcert: /etc/pgsignal/client.crt\n  sslkey: /etc/pgsignal/client.key\n",
			"host=db.internal dbname=analytics user=census sslmode=verify-full sslrootcert=system sslcert=/etc/pgsignal/client.crt sslkey=/etc/pgsignal/client.key",
			Source{SSLMode: "verify-full", SSLRootCert: "system", SSLCert: "/etc/pgsignal/client.crt", SSLKey: "/etc/pgsignal/client.key"}},
		{"key=value value quoted", `"host=db.internal "`,
			`  sslrootcert: "/etc/pg signal/it's\\ca.crt"` + "\n",
			`host=db.internal sslrootcert='/etc/pg signal/it\'s\\ca.crt'`,
			Source{SSLRootCert: `/etc/pg signal/it's\ca.crt`}},
		{"key=value with the same value quoted in the DSN", `"host=db.internal sslmode = 'require'"`,
			"  sslmode: require\n",
			"host=db.internal sslmode = 'require'",
			Source{SSLMode: "require"}},
		{"password kept", `"postgres://census:${PGPASS}@db.internal/analytics"`,
			"  sslmode: require\n",
			"postgres://census:" + secretPassword + "@db.internal/analytics?sslmode=require",
			Source{SSLMode: "require"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yml := replace(t, minimal, minimalDSN, "  dsn: "+tt.dsn+"\n"+tt.keys)
			c, err := Parse([]byte(yml), env(map[string]string{"ONESIGNAL_API_KEY": "k", "PGPASS": secretPassword}))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if c.Source.DSN != tt.wantDSN {
				t.Errorf("DSN = %q\nwant  %q", c.Source.DSN, tt.wantDSN)
			}
			got := Source{SSLMode: c.Source.SSLMode, SSLRootCert: c.Source.SSLRootCert, SSLCert: c.Source.SSLCert, SSLKey: c.Source.SSLKey}
			if got != tt.want {
				t.Errorf("keys = %+v, want %+v", got, tt.want)
			}
			// Validating again changes nothing.
			before := c.Source.DSN
			if err := c.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			if c.Source.DSN != before {
				t.Errorf("Validate changed the DSN to %q", c.Source.DSN)
			}
		})
	}
}

// TestWithParamReadByPgx checks the quoting of withParam against pgx's own
// parser, with a parameter that needs no file.
func TestWithParamReadByPgx(t *testing.T) {
	values := []string{"plain", "with space", `it's`, `back\slash`, "plus+at@amp&eq=q?hash#pct%", "", "tab\there", "ünïcödé"}
	dsns := []string{"postgres://u@localhost:5432/db", "postgres://u@localhost/db?connect_timeout=5", "host=localhost user=u dbname=db", "host=localhost   "}
	for _, dsn := range dsns {
		for _, v := range values {
			merged := withParam(dsn, "application_name", v)
			cfg, err := pgconn.ParseConfig(merged)
			if err != nil {
				t.Errorf("withParam(%q, %q) = %q: pgx: %v", dsn, v, merged, err)
				continue
			}
			if got := cfg.RuntimeParams["application_name"]; got != v {
				t.Errorf("withParam(%q, %q) = %q: pgx reads %q", dsn, v, merged, got)
			}
			if got, ok := dsnParam(merged, "application_name"); !ok || got != v {
				t.Errorf("dsnParam(%q) = %q, %v; want %q", merged, got, ok, v)
			}
		}
	}
}

func TestNetworkParseErrors(t *testing.T) {
	tests := []struct {
		name string
		// edit turns minimal into the bad config.
		edit func(t *testing.T) string
		// want is every problem, in order.
		want []string
	}{
		{"bad sslmode", func(t *testing.T) string {
			return replace(t, minimal, "source:\n", "source:\n  sslmode: verify\n")
		}, []string{`source.sslmode (line 3): unknown value "verify"; use "disable", "allow", "prefer", "require", "verify-ca" or "verify-full"`}},
		{"bad sslmode in the DSN", func(t *testing.T) string {
			return replace(t, minimal, "analytics\"", "analytics?sslmode=strict\"")
		}, []string{`source.dsn (line 3): unknown sslmode "strict"; use "disable", "allow", "prefer", "require", "verify-ca" or "verify-full"`}},
		{"sslmode in both places", func(t *testing.T) string {
			return replace(t, minimal, "analytics\"\n", "analytics?sslmode=require\"\n  sslmode: verify-full\n")
		}, []string{`source.sslmode (line 4): "verify-full" conflicts with sslmode "require" in source.dsn; set it in only one of them`}},
		{"every TLS key in both places", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, `  dsn: "host=db sslmode=require sslrootcert='/a b/ca.crt' sslcert=c1 sslkey=k1"`+"\n"+
				"  sslmode: verify-ca\n  sslrootcert: /a/ca.crt\n  sslcert: c2\n  sslkey: k2\n")
		}, []string{
			`source.sslmode (line 4): "verify-ca" conflicts with sslmode "require" in source.dsn; set it in only one of them`,
			`source.sslrootcert (line 5): "/a/ca.crt" conflicts with sslrootcert "/a b/ca.crt" in source.dsn; set it in only one of them`,
			`source.sslcert (line 6): "c2" conflicts with sslcert "c1" in source.dsn; set it in only one of them`,
			`source.sslkey (line 7): "k2" conflicts with sslkey "k1" in source.dsn; set it in only one of them`,
		}},
		{"DSN from the environment conflicts", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, "  dsn: ${DSN}\n  sslmode: require\n")
		}, []string{`source.sslmode (line 4): "require" conflicts with sslmode "disable" in source.dsn; set it in only one of them`}},
		{"sslmode not a string", func(t *testing.T) string {
			return replace(t, minimal, "source:\n", "source:\n  sslmode: [require]\n")
		}, []string{"source.sslmode (line 3): expected a string, got a list"}},
		{"ssh not a mapping", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, minimalDSN+"  ssh: bastion.example.com\n")
		}, []string{"source.ssh (line 4): expected a mapping of keys (host, port, user, private_key_file, private_key_env, passphrase_env, known_hosts_file, insecure_ignore_host_key), got a string"}},
		{"ssh unknown key", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, minimalDSN+replace(t, sshBlock, "known_hosts_file", "knownhosts_file"))
		}, []string{"source.ssh.knownhosts_file (line 8): unknown key (did you mean known_hosts_file?); known keys: host, port, user, private_key_file, private_key_env, passphrase_env, known_hosts_file, insecure_ignore_host_key"}},
		{"ssh host missing", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, minimalDSN+replace(t, sshBlock, "    host: bastion.example.com\n", ""))
		}, []string{"source.ssh.host: required; the host name or IP address of the SSH bastion the database is reached through"}},
		{"ssh user missing", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, minimalDSN+replace(t, sshBlock, "    user: tunnel\n", ""))
		}, []string{"source.ssh.user: required; the user to log in to the bastion as"}},
		{"ssh port out of range", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, minimalDSN+sshBlock+"    port: 70000\n")
		}, []string{"source.ssh.port (line 9): must be between 1 and 65535, got 70000"}},
		{"ssh port not a number", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, minimalDSN+sshBlock+"    port: ssh\n")
		}, []string{`source.ssh.port (line 9): expected an integer, got "ssh"`}},
		{"ssh without a key", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, minimalDSN+replace(t, sshBlock, "    private_key_file: /etc/pgsignal/id_ed25519\n", ""))
		}, []string{"source.ssh.private_key_file: required: set private_key_file to a file holding the private key, or private_key_env to the name of an environment variable holding it"}},
		{"ssh with two keys", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, minimalDSN+sshBlock+"    private_key_env: SSH_KEY\n")
		}, []string{"source.ssh.private_key_env (line 9): conflicts with private_key_file: set exactly one of them"}},
		{"ssh key variable not set", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, minimalDSN+replace(t, sshBlock, "private_key_file: /etc/pgsignal/id_ed25519", "private_key_env: PGSIGNAL_UNSET_KEY"))
		}, []string{"source.ssh.private_key_env (line 7): environment variable PGSIGNAL_UNSET_KEY is not set; export it with the private key"}},
		{"ssh key variable expanded by mistake", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, minimalDSN+replace(t, sshBlock, "private_key_file: /etc/pgsignal/id_ed25519", `private_key_env: "${SSH_KEY}"`))
		}, []string{"source.ssh.private_key_env (line 7): not an environment variable name: write the name of the variable, e.g. SSH_PRIVATE_KEY (not ${SSH_PRIVATE_KEY}, which would put the secret itself in the configuration)"}},
		{"ssh passphrase variable not set", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, minimalDSN+sshBlock+"    passphrase_env: PGSIGNAL_UNSET_PASSPHRASE\n")
		}, []string{"source.ssh.passphrase_env (line 9): environment variable PGSIGNAL_UNSET_PASSPHRASE is not set; export it with the passphrase of the private key"}},
		{"ssh without known_hosts_file", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, minimalDSN+replace(t, sshBlock, "    known_hosts_file: /etc/pgsignal/known_hosts\n", "    port: 2222\n"))
		}, []string{"source.ssh.known_hosts_file: required: the bastion's host key must be verified; write it with `ssh-keyscan -p 2222 bastion.example.com > known_hosts` (and check its fingerprint), or set insecure_ignore_host_key: true (a man-in-the-middle could then read the database traffic)"}},
		{"ssh insecure and known_hosts_file", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, minimalDSN+sshBlock+"    insecure_ignore_host_key: true\n")
		}, []string{"source.ssh.insecure_ignore_host_key (line 9): conflicts with known_hosts_file: remove insecure_ignore_host_key to verify the host key"}},
		{"ssh insecure not a boolean", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, minimalDSN+replace(t, sshBlock, "    known_hosts_file: /etc/pgsignal/known_hosts\n", "    insecure_ignore_host_key: yes\n"))
		}, []string{`source.ssh.insecure_ignore_host_key (line 8): expected true or false, got "yes"`}},
		{"ssh insecure empty", func(t *testing.T) string {
			return replace(t, minimal, minimalDSN, minimalDSN+replace(t, sshBlock, "    known_hosts_file: /etc/pgsignal/known_hosts\n", "    insecure_ignore_host_key:\n"))
		}, []string{`source.ssh.insecure_ignore_host_key (line 8): expected true or false, got nothing; remove the key to use the default (false)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, v := range []string{"PGSIGNAL_UNSET_KEY", "PGSIGNAL_UNSET_PASSPHRASE"} {
				if _, ok := os.LookupEnv(v); ok {
					t.Skipf("%s is set in the environment", v)
				}
			}
			e := map[string]string{"ONESIGNAL_API_KEY": "k", "SSH_KEY": secretSSHKey, "DSN": "host=db sslmode=disable password=" + secretPassword}
			_, err := ParseLookup([]byte(tt.edit(t)), lookupEnv(e))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("Parse = %v, want a *ValidationError", err)
			}
			var got []string
			for _, p := range ve.Problems {
				got = append(got, p.Error())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			for _, s := range []string{secretSSHKey, "SECRETSSHKEY", secretPassword} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("error contains the secret %q:\n%v", s, err)
				}
			}
		})
	}
}

func TestSSH(t *testing.T) {
	dir := t.TempDir()
	yml := replace(t, minimal, minimalDSN, minimalDSN+`  sslrootcert: certs/ca.crt
  sslcert: /abs/client.crt
  sslkey: client.key
  ssh:
    host: bastion.example.com
    user: tunnel
    private_key_env: SSH_KEY
    passphrase_env: SSH_PASSPHRASE
    known_hosts_file: known_hosts
`)
	path := filepath.Join(dir, "pgsignal.yaml")
	if err := os.WriteFile(path, []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ONESIGNAL_API_KEY", "k")
	t.Setenv("SSH_KEY", secretSSHKey)
	t.Setenv("SSH_PASSPHRASE", secretPassword)
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	wantSSH := &SSH{
		Host: "bastion.example.com", Port: DefaultSSHPort, User: "tunnel",
		PrivateKeyEnv: "SSH_KEY", PassphraseEnv: "SSH_PASSPHRASE",
		KnownHostsFile: filepath.Join(dir, "known_hosts"),
	}
	if !reflect.DeepEqual(c.Source.SSH, wantSSH) {
		t.Errorf("SSH = %+v, want %+v", c.Source.SSH, wantSSH)
	}
	if got := c.Source.SSH.Address(); got != "bastion.example.com:22" {
		t.Errorf("Address() = %q", got)
	}
	// Relative paths are relative to the configuration file.
	if want := filepath.Join(dir, "certs/ca.crt"); c.Source.SSLRootCert != want {
		t.Errorf("SSLRootCert = %q, want %q", c.Source.SSLRootCert, want)
	}
	if c.Source.SSLCert != "/abs/client.crt" || c.Source.SSLKey != filepath.Join(dir, "client.key") {
		t.Errorf("SSLCert, SSLKey = %q, %q", c.Source.SSLCert, c.Source.SSLKey)
	}
	if want := "postgres://census@db.internal:5432/analytics?sslrootcert=" + urlEscape(filepath.Join(dir, "certs/ca.crt")) +
		"&sslcert=/abs/client.crt&sslkey=" + urlEscape(filepath.Join(dir, "client.key")); c.Source.DSN != want {
		t.Errorf("DSN = %q, want %q", c.Source.DSN, want)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("Warnings = %q", c.Warnings)
	}

	// Parse keeps relative paths (they are relative to the working
	// directory); a section without ssh has none; ssh: null is none.
	c, err = Parse([]byte(yml), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Source.SSH.KnownHostsFile != "known_hosts" || c.Source.SSLRootCert != "certs/ca.crt" {
		t.Errorf("Parse: KnownHostsFile %q, SSLRootCert %q; want them as written", c.Source.SSH.KnownHostsFile, c.Source.SSLRootCert)
	}
	for _, y := range []string{minimal, replace(t, minimal, minimalDSN, minimalDSN+"  ssh:\n")} {
		c, err := Parse([]byte(y), nil)
		if err != nil {
			t.Fatal(err)
		}
		if c.Source.SSH != nil {
			t.Errorf("SSH = %+v, want nil", c.Source.SSH)
		}
	}

	// Redacted shows the section and reads back.
	c, err = Parse([]byte(replace(t, minimal, minimalDSN, minimalDSN+"  sslmode: verify-full\n"+
		replace(t, sshBlock, "    known_hosts_file: /etc/pgsignal/known_hosts\n", "    port: 2222\n    insecure_ignore_host_key: true\n"))), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := c.Redacted()
	want := `source:
  dsn: postgres://census@db.internal:5432/analytics?sslmode=verify-full
  mode: full
  slot: pgsignal
  publication: pgsignal
  schema: census
  on_slot_lost: error
  sslmode: verify-full
  ssh:
    host: bastion.example.com
    port: 2222
    user: tunnel
    private_key_file: /etc/pgsignal/id_ed25519
    insecure_ignore_host_key: true
onesignal:
`
	if !strings.HasPrefix(out, want) {
		t.Errorf("Redacted() =\n%s\nwant it to start with:\n%s", out, want)
	}
	back, err := Parse([]byte(out), nil)
	if err != nil {
		t.Fatalf("Parse(Redacted()): %v", err)
	}
	c.OneSignal.APIKey = "REDACTED"
	c.Warnings = []string{`onesignal.api_key is written literally in the config file; prefer "${ONESIGNAL_API_KEY}" or api_key_file`}
	back.lines, c.lines = nil, nil // the rendering has other line numbers
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, c)
	}
}

func TestValidateNetwork(t *testing.T) {
	c := Defaults()
	c.Source.DSN = "postgres://pgsignal@localhost:5432/demo"
	c.Source.SSLMode = "verify-full"
	c.Source.SSLRootCert = "/tmp/ca dir/ca.crt"
	c.OneSignal.AppID = "5eb5a37e-b458-11e3-ac11-000c2940e62c"
	c.OneSignal.APIKey = "demo-key"
	c.Tables = []Table{{Schema: "public", Name: "events", EventName: "name", ExternalID: "user_id"}}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if want := "postgres://pgsignal@localhost:5432/demo?sslmode=verify-full&sslrootcert=/tmp/ca%20dir/ca.crt"; c.Source.DSN != want {
		t.Errorf("DSN after Validate = %q, want %q", c.Source.DSN, want)
	}

	bad := c
	bad.Source.DSN = "host=localhost sslmode=require"
	bad.Source.SSLRootCert = ""
	bad.Source.SSH = &SSH{PrivateKeyFile: "k", PrivateKeyEnv: "1KEY", PassphraseEnv: "${P}"}
	err := bad.Validate()
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("Validate = %v, want a *ValidationError", err)
	}
	var got []string
	for _, p := range ve.Problems {
		got = append(got, p.Error())
	}
	want := []string{
		`source.sslmode: "verify-full" conflicts with sslmode "require" in source.dsn; set it in only one of them`,
		"source.ssh.host: required; the host name or IP address of the SSH bastion the database is reached through",
		"source.ssh.port: must be between 1 and 65535, got 0",
		"source.ssh.user: required; the user to log in to the bastion as",
		"source.ssh.private_key_env: conflicts with private_key_file: set exactly one of them",
		"source.ssh.private_key_env: not an environment variable name: write the name of the variable, e.g. SSH_PRIVATE_KEY (not ${SSH_PRIVATE_KEY}, which would put the secret itself in the configuration)",
		"source.ssh.passphrase_env: not an environment variable name: write the name of the variable, e.g. SSH_KEY_PASSPHRASE (not ${SSH_KEY_PASSPHRASE}, which would put the secret itself in the configuration)",
		"source.ssh.known_hosts_file: required: the bastion's host key must be verified; write it with `ssh-keyscan -p 0  > known_hosts` (and check its fingerprint), or set insecure_ignore_host_key: true (a man-in-the-middle could then read the database traffic)",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if bad.Source.DSN != "host=localhost sslmode=require" {
		t.Errorf("a failed Validate changed the DSN to %q", bad.Source.DSN)
	}
}

func TestSSLPasswordRedacted(t *testing.T) {
	tests := []struct{ in, want string }{
		{"host=h sslpassword=" + secretPassword + " sslkey=k", "host=h sslpassword=REDACTED sslkey=k"},
		{"postgres://h/db?sslkey=k&sslpassword=" + secretPassword, "postgres://h/db?sslkey=k&sslpassword=REDACTED"},
	}
	for _, tt := range tests {
		if got := redactDSN(tt.in); got != tt.want {
			t.Errorf("redactDSN(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
