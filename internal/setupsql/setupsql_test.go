package setupsql

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pgsignal/pgsignal/internal/pgcat"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func goldenOptions(readOnly bool) Options {
	return Options{
		User:              "census",
		Password:          "s3cr'et",
		PasswordGenerated: true,
		ReadOnly:          readOnly,
		SchemaGrants:      readOnly, // one golden file for each way of granting
		Schema:            "census",
		Publication:       "pgsignal",
		Slot:              "pgsignal",
		Tables: []Table{
			{Schema: "analytics", Name: "user_events"},
			{Schema: "Billing", Name: "odd; name"},
			{Schema: "analytics", Name: "page_views", Transform: true},
		},
	}
}

// The generated scripts match the golden files exactly (go test -update
// rewrites them).
func TestGolden(t *testing.T) {
	cases := []struct {
		file string
		opts Options
	}{
		{"full.sql", goldenOptions(false)},
		{"readonly.sql", goldenOptions(true)},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			s, err := Generate(c.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := s.SQL()
			path := filepath.Join("testdata", c.file)
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Fatalf("%s differs (go test -update rewrites it); got:\n%s", path, got)
			}
		})
	}
}

func TestPlatformStatements(t *testing.T) {
	cases := []struct {
		platform Platform
		want     []string
	}{
		{Postgres, []string{`ALTER ROLE "census" WITH REPLICATION;`, `-- The server needs wal_level = logical.`}},
		{RDS, []string{"\nGRANT \"rds_replication\" TO \"census\";\n", "rds.logical_replication = 1"}},
		{Azure, []string{`ALTER ROLE "census" WITH REPLICATION;`, "azure.replication_support = logical", "user@servername"}},
		{CloudSQL, []string{`ALTER ROLE "census" WITH REPLICATION;`, "cloudsql.logical_decoding = on"}},
	}
	for _, c := range cases {
		t.Run(string(c.platform), func(t *testing.T) {
			o := goldenOptions(false)
			o.Platform = c.platform
			s, err := Generate(o)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range c.want {
				if !strings.Contains(s.SQL(), w) {
					t.Errorf("script lacks %q:\n%s", w, s.SQL())
				}
			}
		})
	}
}

func TestParsePlatform(t *testing.T) {
	for _, s := range []string{"rds", "azure", "cloudsql", "postgres"} {
		if p, err := ParsePlatform(s); err != nil || string(p) != s {
			t.Errorf("ParsePlatform(%q) = %q, %v", s, p, err)
		}
	}
	if _, err := ParsePlatform("aws"); err == nil || !strings.Contains(err.Error(), "rds, azure, cloudsql or postgres") {
		t.Errorf("ParsePlatform(aws) = %v", err)
	}
}

// The password is in the script, and only there: Display redacts it.
func TestPasswordRedaction(t *testing.T) {
	for _, reset := range []bool{false, true} {
		o := goldenOptions(false)
		o.Password = `pw-\'x`
		o.ResetPassword = reset
		s, err := Generate(o)
		if err != nil {
			t.Fatal(err)
		}
		lit := pgcat.QuoteLiteral(o.Password)
		if lit != `E'pw-\\''x'` {
			t.Fatalf("QuoteLiteral = %s", lit)
		}
		if !strings.Contains(s.SQL(), lit) {
			t.Fatalf("reset=%v: script lacks the password literal:\n%s", reset, s.SQL())
		}
		secrets := 0
		for _, st := range s.Statements {
			if strings.Contains(st.Display(), "pw-") {
				t.Fatalf("reset=%v: Display shows the password: %s", reset, st.Display())
			}
			if st.Secret {
				secrets++
				if !strings.Contains(st.Display(), "'********'") {
					t.Fatalf("Display of a secret statement: %s", st.Display())
				}
			}
		}
		if secrets != 1 {
			t.Fatalf("reset=%v: %d secret statements, want 1", reset, secrets)
		}
		if reset != strings.Contains(s.SQL(), `ALTER ROLE "census" WITH PASSWORD `+lit+";") {
			t.Fatalf("reset=%v: ALTER ROLE ... PASSWORD present = %v", reset, !reset)
		}
	}
}

// Hostile identifiers stay inside their quotes, the dollar-quote tag avoids
// the body, and a line break cannot end a comment.
func TestQuoting(t *testing.T) {
	o := goldenOptions(false)
	o.Password = ""
	o.User = `u"x`
	o.Publication = "p$pgsignal$"
	o.Tables = []Table{{Schema: "s\nDROP TABLE x; --", Name: `t"; DROP TABLE y; --`}}
	s, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	sql := s.SQL()
	for _, w := range []string{
		`"u""x"`,
		`"s` + "\n" + `DROP TABLE x; --"."t""; DROP TABLE y; --"`,
		`DO $pgsignal_$`,
		`-- Schema "s\nDROP TABLE x; --": read`,
		`CREATE ROLE "u""x" LOGIN;`,
	} {
		if !strings.Contains(sql, w) {
			t.Errorf("script lacks %q:\n%s", w, sql)
		}
	}
}

func TestGenerateErrors(t *testing.T) {
	o := Options{User: "", Publication: strings.Repeat("p", 64), Slot: "s", Platform: "aws"}
	_, err := Generate(o)
	if err == nil {
		t.Fatal("no error")
	}
	for _, w := range []string{"user: empty name", "longer than PostgreSQL's 63 bytes", "bookkeeping schema: empty name", "no tables", `unknown platform "aws"`} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}

// Row filters and updates reach the publication statement.
func TestCreatePublicationSQLFiltersAndUpdates(t *testing.T) {
	got := CreatePublicationSQL("pgsignal", []Table{
		{Schema: "analytics", Name: "user_events", Where: "event_name = 'purchase'"},
		{Schema: "public", Name: "profile", Updates: true},
	})
	want := `CREATE PUBLICATION "pgsignal" FOR TABLE "analytics"."user_events" WHERE (event_name = 'purchase'), "public"."profile" WITH (publish = 'insert, update');`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
