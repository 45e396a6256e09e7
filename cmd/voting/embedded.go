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

// openEmbeddedReader opens the SQLite store in dir to read it, as `voting audit` does.
func openEmbeddedReader(ctx context.Context, dir string) (embeddedReader, error) {
	return sqlitestore.OpenReadOnly(ctx, dir)
}
