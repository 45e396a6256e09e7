//go:build nosqlite

package main

import (
	"context"
	"errors"
)

// The container image is built with -tags nosqlite: SQLite is 4 MB of the binary, and the
// image must stay under 20 MB. Its services run on Redis and PostgreSQL, so only `voting
// all` without --postgres-url is affected, and it says what to do instead.

// errNoEmbeddedStore is what `voting all` without --postgres-url answers in such a build.
var errNoEmbeddedStore = errors.New("this build has no embedded SQLite store (built with -tags nosqlite, " +
	"as the container image is): give --postgres-url (and --redis-url), or run a binary built " +
	"without the tag (make run, make build)")

// openEmbeddedStore refuses: see errNoEmbeddedStore.
func openEmbeddedStore(context.Context, string) (embeddedStore, error) {
	return nil, errNoEmbeddedStore
}

// openEmbeddedReader refuses: see errNoEmbeddedStore.
func openEmbeddedReader(context.Context, string) (embeddedReader, error) {
	return nil, errNoEmbeddedStore
}
