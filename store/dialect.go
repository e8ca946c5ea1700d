package store

import (
	"errors"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
)

// dialect holds what differs between SQLite and PostgreSQL. Queries are
// written once with ? placeholders.
type dialect struct {
	name   string
	serial string // auto-increment primary key column type
	blob   string // byte-string column type
}

var (
	sqlite   = dialect{name: "sqlite", serial: "INTEGER PRIMARY KEY AUTOINCREMENT", blob: "BLOB"}
	postgres = dialect{name: "postgres", serial: "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", blob: "BYTEA"}
)

// rebind turns ? placeholders into $1, $2, ... for PostgreSQL. Queries in
// this package never put a ? inside a string literal.
func (d dialect) rebind(q string) string {
	if d.name != "postgres" || !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	b.Grow(len(q) + 8)
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	return b.String()
}

// isUniqueViolation reports whether err is a unique-constraint violation.
func isUniqueViolation(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23505"
	}
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// isForeignKeyViolation reports whether err is a foreign-key violation.
func isForeignKeyViolation(err error) bool {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code == "23503"
	}
	return err != nil && strings.Contains(err.Error(), "FOREIGN KEY constraint failed")
}

// isSerializationFailure reports whether err is PostgreSQL telling a
// serializable transaction to retry (serialization failure or deadlock).
func isSerializationFailure(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && (pg.Code == "40001" || pg.Code == "40P01")
}
