package setupsql

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/pgsignal/pgsignal/internal/pgcat"
)

// Conn is what Apply and the look-ups need of a database connection; a
// *pgx.Conn, a *pgxpool.Conn and a *pgxpool.Pool have it.
type Conn interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ErrFailed is wrapped by Apply's error when a statement failed (or could
// not run); Apply has already reported it.
var ErrFailed = errors.New("setup failed")

// DetectPlatform tells the platform from the roles and settings it
// provides: rds_superuser or the rds.extensions setting (Amazon RDS and
// Aurora), azure_pg_admin (Azure), cloudsqlsuperuser (Cloud SQL).
func DetectPlatform(ctx context.Context, c Conn) (Platform, error) {
	var rds, azure, cloudsql bool
	err := c.QueryRow(ctx, `SELECT
  EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'rds_superuser')
    OR current_setting('rds.extensions', true) IS NOT NULL,
  EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'azure_pg_admin'),
  EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'cloudsqlsuperuser')`).Scan(&rds, &azure, &cloudsql)
	if err != nil {
		return "", fmt.Errorf("detect platform: %w", err)
	}
	switch {
	case rds:
		return RDS, nil
	case azure:
		return Azure, nil
	case cloudsql:
		return CloudSQL, nil
	}
	return Postgres, nil
}

// RoleExists reports whether the role exists.
func RoleExists(ctx context.Context, c Conn, name string) (bool, error) {
	var ok bool
	if err := c.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $1)`, name).Scan(&ok); err != nil {
		return false, fmt.Errorf("look up role %s: %w", pgcat.QuoteIdent(name), err)
	}
	return ok, nil
}

// Apply runs the script's statements one by one, each in its own
// transaction, and writes one line per statement to w: "✓ title" or
// "✗ title: error" followed by the statement (password redacted) and what
// to do. Before the publication statement it checks that the connected user
// owns every table it must add, and says so clearly when it does not. It
// stops at the first failure. It returns the number of statements that
// succeeded and, after a failure, an error wrapping ErrFailed.
func Apply(ctx context.Context, c Conn, s *Script, w io.Writer) (applied int, err error) {
	user := s.Options.User
	existed, err := RoleExists(ctx, c, user)
	if err != nil {
		return 0, err
	}
	for _, st := range s.Statements {
		detail := ""
		switch st.Kind {
		case KindUser:
			switch {
			case !strings.HasPrefix(st.SQL, "DO "):
				detail = "password set"
			case existed:
				detail = "exists"
			default:
				detail = "created"
			}
		case KindPublication:
			d, problem, err := checkPublication(ctx, c, s.Options)
			if err != nil {
				return applied, err
			}
			if problem != "" {
				fmt.Fprintf(w, "✗ %s: %s\n%s\n", st.Title, problem, indent(st.Display()))
				return applied, fmt.Errorf("%s: %w", st.Title, ErrFailed)
			}
			detail = d
		}
		if _, err := c.Exec(ctx, st.SQL); err != nil {
			fmt.Fprintf(w, "✗ %s: %s\n%s\n", st.Title, pgMessage(err), indent(st.Display()))
			return applied, fmt.Errorf("%s: %w", st.Title, ErrFailed)
		}
		applied++
		if detail != "" {
			fmt.Fprintf(w, "✓ %s: %s\n", st.Title, detail)
		} else {
			fmt.Fprintf(w, "✓ %s\n", st.Title)
		}
	}
	return applied, nil
}

// checkPublication finds whether the publication statement will create the
// publication or add tables to it, and whether the connected user may: it
// must own every table to add. It returns a detail for the report line, or
// the problem that stops the setup.
func checkPublication(ctx context.Context, c Conn, o Options) (detail, problem string, err error) {
	var exists bool
	if err := c.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_publication WHERE pubname = $1)`, o.Publication).Scan(&exists); err != nil {
		return "", "", fmt.Errorf("look up publication %s: %w", pgcat.QuoteIdent(o.Publication), err)
	}
	var admin string
	if err := c.QueryRow(ctx, `SELECT current_user`).Scan(&admin); err != nil {
		return "", "", fmt.Errorf("current user: %w", err)
	}
	var add, missing, notOwned []string
	for _, t := range o.Tables {
		var found, covered, owner bool
		var ownerName string
		err := c.QueryRow(ctx, `SELECT true,
  EXISTS (SELECT FROM pg_catalog.pg_publication_tables p WHERE p.pubname = $3 AND p.schemaname = $1 AND p.tablename = $2),
  pg_catalog.pg_has_role(c.relowner, 'USAGE'), pg_catalog.pg_get_userbyid(c.relowner)
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = $2`, t.Schema, t.Name, o.Publication).Scan(&found, &covered, &owner, &ownerName)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return "", "", fmt.Errorf("look up table %s: %w", t.Quoted(), err)
		}
		switch {
		case !found:
			missing = append(missing, t.Quoted())
		case covered:
		case !owner:
			notOwned = append(notOwned, fmt.Sprintf("%s (owner %s)", t.Quoted(), pgcat.QuoteIdent(ownerName)))
			add = append(add, t.Quoted())
		default:
			add = append(add, t.Quoted())
		}
	}
	switch {
	case len(missing) > 0:
		return "", fmt.Sprintf("%s does not exist in this database: create it, or fix tables in the configuration; the publication can only hold existing tables",
			strings.Join(missing, ", ")), nil
	case len(notOwned) > 0:
		what := "create the publication for"
		if exists {
			what = "add to the publication"
		}
		return "", fmt.Sprintf("%s does not own %s. Only the owner of a table (or a superuser) may %s it: run this statement as the owner, then run setup again:",
			pgcat.QuoteIdent(admin), strings.Join(notOwned, ", "), what), nil
	case !exists:
		return "created", "", nil
	case len(add) > 0:
		return "exists; added " + strings.Join(add, ", "), "", nil
	}
	return "exists and covers every table", "", nil
}

// pgMessage returns the server's message (and hint) of err.
func pgMessage(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		msg := pe.Message
		if pe.Detail != "" {
			msg += " (" + pe.Detail + ")"
		}
		if pe.Hint != "" {
			msg += "; hint: " + pe.Hint
		}
		return msg
	}
	return err.Error()
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
