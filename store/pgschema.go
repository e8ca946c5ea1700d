package store

import (
	"net/url"
	"strings"
)

// PostgresSchemaDSN returns dsn with its search_path set to schema, so that
// one database can hold several independent OpenSphere schemas (tests use
// one per run).
func PostgresSchemaDSN(dsn, schema string) string {
	u, err := url.Parse(dsn)
	if err != nil || !strings.HasPrefix(u.Scheme, "postgres") {
		return dsn
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}
