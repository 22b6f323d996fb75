package config

import (
	"errors"
	"strings"
	"testing"
)

// leakPassword is a password with characters that must be percent-encoded
// in a URL; its pieces must never appear in a message.
const leakPassword = "p@ss/w0rd!Leak"

// A postgres:// URL that libpq would not read as written (a password with
// an unescaped "@", "/" or "#") is a configuration error that quotes
// nothing of the dsn and says how to write it; a correctly encoded one, and
// URLs that merely look unusual, pass.
func TestURLDSNReadAsWritten(t *testing.T) {
	bad := []struct {
		name, dsn string
		why       string
	}{
		{"/ and @ in the password", "postgres://approle:" + leakPassword + "@dbhost.example:5432/appdb",
			`an "@" ends up in the database name, which happens when the password holds a "/"`},
		{"@ in the password", "postgres://approle:p@ss@dbhost.example:5432/appdb",
			`an "@" ends up in the host name, which happens when the user name or the password holds an "@"`},
		{"@ in the user name (Azure style)", "postgresql://approle@dbserver@dbhost.example/appdb",
			`an "@" ends up in the host name`},
		{"@ in the password, no port", "postgres://approle:p@ss@dbhost.example/appdb",
			`an "@" ends up in the host name`},
		{"# in the password", "postgres://approle:p#ss@dbhost.example:5432/appdb",
			`the user information holds a "#"`},
		{"/ in the password", "postgres://approle:pa/ss@dbhost.example:5432/appdb",
			`a port is not a number, which happens when the password holds a "/" or "#"`},
		{"/ and ? in the password", "postgres://approle:pa?x/y@dbhost.example/appdb",
			`a port is not a number`},
		{"/ ? = in the password", "postgres://approle:a/b?c=d@dbhost.example/appdb",
			`a port is not a number`},
		{"/ in a password without port digits", "postgres://approle:1/b?c@dbhost.example/appdb",
			`an "@" or "/" ends up in a parameter name`},
		{"% that is no escape", "postgres://approle:50%off@dbhost.example/appdb",
			`the user information holds a "%" that does not start a %XX escape`},
		{"% at the end", "postgres://approle:off%4@dbhost.example/appdb",
			`the user information holds a "%"`},
		{"mistyped port", "postgres://approle@dbhost.example:54x2/appdb", `a port is not a number`},
		{"second host's port", "postgres://dbhost1.example:5432,dbhost2.example:x/appdb", `a port is not a number`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			data := replace(t, minimal, "postgres://census@db.internal:5432/analytics", tt.dsn)
			_, err := Parse([]byte(data), env(testEnv))
			var ve *ValidationError
			if !errors.As(err, &ve) || len(ve.Problems) != 1 {
				t.Fatalf("err = %v, want one problem", err)
			}
			msg := err.Error()
			for _, want := range []string{"source.dsn (line 3): the postgres:// URL would not be read as written: " + tt.why,
				`Percent-encode the user name and the password in a URL ("@" is %40, "/" is %2F, "#" is %23, ":" is %3A, "%" is %25)`,
				"set PGPASSWORD", "key=value dsn"} {
				if !strings.Contains(msg, want) {
					t.Errorf("message lacks %q:\n%s", want, msg)
				}
			}
			for _, piece := range []string{"approle", "dbhost", "appdb", "ss@", "w0rd", "Leak", "50%off", "pa?x", "dbserver", "54x2"} {
				if strings.Contains(msg, piece) {
					t.Errorf("message quotes %q of the dsn:\n%s", piece, msg)
				}
			}
		})
	}

	good := []string{
		"postgres://approle:p%40ss%2Fw0rd%21Leak@dbhost.example:5432/appdb",
		"postgres://approle:p%23ss@dbhost.example/appdb",
		"postgres://approle:pa?ss@dbhost.example/appdb", // libpq reads "?" in the user information as written
		"postgres://approle:a=b&c!$'()*+,;@dbhost.example/appdb",
		"postgres://approle@dbhost.example/appdb",
		"postgres://dbhost.example/appdb?application_name=me@corp&options=-c%20x%3Dy",
		"postgres://[::1]:5432/appdb",
		"postgres://[::1]/appdb",
		"postgresql://dbhost1.example:5432,dbhost2.example:5433/appdb",
		"postgresql://dbhost1.example,dbhost2.example/appdb",
		"postgres:///appdb?host=/var/run/postgresql",
		"postgres://",
		"postgres://approle:@dbhost.example:/appdb",
	}
	for _, dsn := range good {
		if why := urlDSNProblem(dsn); why != "" {
			t.Errorf("urlDSNProblem(%q) = %q, want none", dsn, why)
		}
	}
}

// When the URL is not read as written, every character that could belong
// to the password (all up to the last "@") counts as secret.
func TestRedactAmbiguousURLDSN(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://approle:" + leakPassword + "@dbhost.example:5432/appdb", "postgres://REDACTED@dbhost.example:5432/appdb"},
		{"postgres://approle:p@ss@dbhost.example/appdb?password=x", "postgres://REDACTED@dbhost.example/appdb?password=REDACTED"},
		{"postgres://approle:p#ss@dbhost.example/appdb", "postgres://REDACTED@dbhost.example/appdb"},
		// Read as written: only the password.
		{"postgres://approle:p%40ss@dbhost.example/appdb", "postgres://approle:REDACTED@dbhost.example/appdb"},
	}
	for _, tt := range tests {
		if got := redactDSN(tt.in); got != tt.want {
			t.Errorf("redactDSN(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if pws := dsnPasswords("postgres://approle:" + leakPassword + "@dbhost.example/appdb"); len(pws) != 1 || !strings.Contains(pws[0], leakPassword) {
		t.Errorf("dsnPasswords = %q, want one holding the whole password", pws)
	}
}

// A problem with a value that came from a variable names the variable: its
// name is not a secret, even when the variable holds one.
func TestValueComesFromNamesTheVariable(t *testing.T) {
	tests := []struct {
		name, old, new string
		env            map[string]string
		want           string
	}{
		{"password variable in the dsn", "postgres://census@db.internal", "postgres://census:${DB_PASSWORD}@db.internal",
			map[string]string{"ONESIGNAL_API_KEY": "os_v2_app_testkey", "DB_PASSWORD": leakPassword},
			"(the value comes from ${DB_PASSWORD})"},
		{"api key variable", `api_key: "${ONESIGNAL_API_KEY}"`, `api_key: "${ONESIGNAL_API_KEY}"`,
			map[string]string{"ONESIGNAL_API_KEY": ""}, "(the value comes from ${ONESIGNAL_API_KEY})"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseLookup([]byte(replace(t, minimal, tt.old, tt.new)), lookupEnv(tt.env))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
			for _, piece := range []string{"w0rd", "Leak", "REDACTED"} {
				if strings.Contains(err.Error(), piece) {
					t.Errorf("message holds %q: %v", piece, err)
				}
			}
		})
	}
}

// A literal piece written next to a reference is still scrubbed.
func TestLiteralParts(t *testing.T) {
	tests := []struct {
		raw  string
		want []string
	}{
		{"${PW}", nil},
		{"pre-${PW}-post", []string{"pre-", "-post"}},
		{"${PW:-fallback-secret}", []string{"fallback-secret"}},
		{"plain-secret", []string{"plain-secret"}},
		{"open${PW", []string{"open${PW"}},
	}
	for _, tt := range tests {
		if got := literalParts(tt.raw); strings.Join(got, "|") != strings.Join(tt.want, "|") {
			t.Errorf("literalParts(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}
