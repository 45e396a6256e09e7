package pgstore

import "github.com/votingapp/voting/internal/migrations"

// LatestMigration returns the version of the newest embedded migration: the schema_migrations
// version that `voting migrate` of this build brings a database to. `voting doctor` compares
// a database with it to tell a schema that was never migrated, or only by an older version,
// from one that is ready.
func LatestMigration() (int, error) {
	ms, err := migrations.Load(migrationFiles, "migrations")
	if err != nil {
		return 0, err
	}
	if len(ms) == 0 {
		return 0, nil
	}
	return ms[len(ms)-1].Version, nil
}
