package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/votingapp/voting/internal/migrations"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// Migrate applies the embedded migrations that the database at url lacks, in the first
// existing schema of the URL's search_path. It is idempotent, and safe to run from several
// processes at once (e.g. an init container in every pod): each migration runs in its own
// transaction under a per-schema advisory lock, checks schema_migrations again once it holds
// the lock, and records itself there.
func Migrate(ctx context.Context, url string) error {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return fmt.Errorf("postgres url: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return classify("migrate", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return migrate(ctx, conn)
}

// migrateLockSQL takes the migration lock for the current schema until the transaction ends.
// Transaction-scoped, so that a process that dies mid-migration releases it with its
// connection and nothing has to unlock.
const migrateLockSQL = `SELECT pg_advisory_xact_lock(hashtextextended('voting.migrate.' || current_schema(), 0))`

// schemaMigrationsSQL creates the record of applied migrations. It runs under the lock:
// concurrent CREATE TABLE IF NOT EXISTS can fail with a unique violation in the catalog.
const schemaMigrationsSQL = `CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)`

func migrate(ctx context.Context, conn *pgx.Conn) error {
	ms, err := migrations.Load(migrationFiles, "migrations")
	if err != nil {
		return err
	}
	var schema *string
	if err := conn.QueryRow(ctx, "SELECT current_schema()").Scan(&schema); err != nil {
		return classify("migrate", err)
	}
	if schema == nil {
		var searchPath string
		_ = conn.QueryRow(ctx, "SHOW search_path").Scan(&searchPath) // only for the message
		return fmt.Errorf("migrate: no schema of search_path %q exists: create it first", searchPath)
	}
	for _, m := range ms {
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, migrateLockSQL); err != nil {
				return err
			}
			var exists bool
			err := tx.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists)
			if err != nil {
				return err
			}
			if !exists {
				if _, err := tx.Exec(ctx, schemaMigrationsSQL); err != nil {
					return err
				}
			}
			var applied bool
			err = tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)", m.Version).Scan(&applied)
			if err != nil || applied {
				return err
			}
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("apply: %w", err)
			}
			_, err = tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return fmt.Errorf("migration %03d_%s in schema %q: %w", m.Version, m.Name, *schema, classifyMigrate(err))
		}
	}
	return nil
}

// classifyMigrate wraps failures to reach the server with voting.ErrUnavailable, like the
// store's calls; an error the server returns for a migration is plain: running it again
// would fail the same way.
func classifyMigrate(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return err
	}
	return classify("migrate", err)
}
