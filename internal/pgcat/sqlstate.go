package pgcat

import (
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// The SQLSTATE codes pgsignal reacts to, by PostgreSQL's names (Appendix A
// of its manual).
const (
	FeatureNotSupported          = "0A000"
	InvalidAuthorization         = "28000"
	InvalidPassword              = "28P01"
	ReadOnlySQLTransaction       = "25006"
	InvalidCatalogName           = "3D000"
	UniqueViolation              = "23505"
	DeadlockDetected             = "40P01"
	InsufficientPrivilege        = "42501"
	UndefinedTable               = "42P01"
	UndefinedColumn              = "42703"
	DuplicateTable               = "42P07"
	UndefinedObject              = "42704"
	DuplicateObject              = "42710"
	TooManyConnections           = "53300"
	ConfigurationLimitExceeded   = "53400"
	ObjectNotInPrerequisiteState = "55000"
	ObjectInUse                  = "55006"
	LockNotAvailable             = "55P03"
	QueryCanceled                = "57014"
	CannotConnectNow             = "57P03"
)

// SQLSTATE classes (the first two characters of a code).
const (
	ClassDataException        = "22"
	ClassInvalidAuthorization = "28"
	ClassProgramLimit         = "54"
)

// Code returns err's SQLSTATE, or "" when err is not an error from
// PostgreSQL.
func Code(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// Is reports whether err is an error from PostgreSQL with one of codes.
func Is(err error, codes ...string) bool {
	c := Code(err)
	for _, want := range codes {
		if c != "" && c == want {
			return true
		}
	}
	return false
}

// IsDataError reports whether err is PostgreSQL refusing a value (class 22,
// data exception, or 54, program limit exceeded, or 0A000 for a jsonb \u
// escape above U+007F in a SQL_ASCII database, which cannot convert it):
// the same value is refused again.
func IsDataError(err error) bool {
	c := Code(err)
	return strings.HasPrefix(c, ClassDataException) || strings.HasPrefix(c, ClassProgramLimit) || c == FeatureNotSupported
}
