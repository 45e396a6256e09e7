//go:build !nosqlite

package main

import (
	"context"

	"github.com/votingapp/voting/internal/sqlitestore"
)

// openEmbeddedStore opens the store of the embedded default: SQLite in dir.
func openEmbeddedStore(ctx context.Context, dir string) (embeddedStore, error) {
	return sqlitestore.Open(ctx, dir)
}
