package main

import (
	"context"
	"fmt"
	"time"

	"github.com/votingapp/voting/internal/pgstore"
)

func runMigrate(ctx context.Context, env *cmdEnv, args []string) error {
	var pg postgresFlags
	fs := newFlagSet("migrate", env, "Apply the embedded database migrations and exit. Idempotent, and safe to run\nfrom several processes at once (they take turns under an advisory lock).")
	pg.register(fs)
	if err := parse(fs, args, env, 0); err != nil {
		return err
	}
	if err := requireURL("migrate", "postgres-url", pg.url, "the PostgreSQL store"); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if err := pgstore.Migrate(ctx, pg.url); err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, "migrations applied")
	return nil
}
