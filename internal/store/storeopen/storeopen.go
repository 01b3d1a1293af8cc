// Package storeopen picks the store backend from a DSN, the way the server's
// --store flag is documented: "postgres://..." or "postgresql://..." opens
// PostgreSQL; "sqlite:PATH" (or "sqlite://PATH") or a plain file path opens
// SQLite. It is the only package that imports both backends, so callers that
// need one backend do not link the other's driver by accident.
package storeopen

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/store/postgres"
	"github.com/corralhq/corral/internal/store/sqlite"
)

// scheme matches a URI scheme such as "mysql:" (RFC 3986: a letter, then
// letters, digits, '+', '-' or '.').
var scheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*:`)

// Open opens the backend the DSN names and applies pending migrations.
func Open(ctx context.Context, dsn string) (store.Store, error) {
	kind, target, err := Parse(dsn)
	if err != nil {
		return nil, err
	}
	if kind == "postgres" {
		return postgres.Open(ctx, target)
	}
	return sqlite.Open(ctx, target)
}

// Parse returns the backend ("sqlite" or "postgres") and what to hand its
// Open: the DSN itself for PostgreSQL, the file path for SQLite. It does not
// touch the database.
func Parse(dsn string) (kind, target string, err error) {
	lower := strings.ToLower(dsn)
	switch {
	case dsn == "":
		return "", "", errors.New("store DSN is empty: want postgres://..., sqlite:PATH or a file path")
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		return "postgres", dsn, nil
	case strings.HasPrefix(lower, "sqlite:"):
		path := dsn[len("sqlite:"):]
		// sqlite:///var/lib/corral.db and sqlite://relative.db read like URLs.
		path = strings.TrimPrefix(path, "//")
		if path == "" {
			return "", "", errors.New("store DSN \"sqlite:\" has no file path: want sqlite:PATH")
		}
		return "sqlite", path, nil
	case scheme.MatchString(dsn):
		// Name the scheme only: the rest may hold a password.
		return "", "", fmt.Errorf("store DSN scheme %q is not supported: want postgres://..., postgresql://..., sqlite:PATH or a file path",
			strings.TrimSuffix(scheme.FindString(dsn), ":"))
	}
	return "sqlite", dsn, nil
}
