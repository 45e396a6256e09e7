package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// SQLSTATE codes doctor explains; see the PostgreSQL manual, appendix A.
const (
	pgInvalidPassword       = "28P01"
	pgInvalidAuthorization  = "28000"
	pgInvalidCatalogName    = "3D000" // the database does not exist
	pgTooManyConnections    = "53300"
	pgCannotConnectNow      = "57P03" // starting up, shutting down, in recovery
	pgInsufficientPrivilege = "42501"
)

// PostgresTarget is a PostgreSQL URL without its secrets, as doctor shows it: host:port/database.
func PostgresTarget(rawURL string) string {
	cfg, err := pgx.ParseConfig(rawURL)
	if err != nil {
		return "(an unparsable PostgreSQL URL)"
	}
	return net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))) + "/" + cfg.Database
}

// validPostgresURL reports a PostgreSQL URL that cannot be parsed. The message never quotes
// it: pgx's parse errors hold the connection string, whose password it redacts only at best.
func validPostgresURL(raw string) error {
	if _, err := pgx.ParseConfig(raw); err != nil {
		return errors.New("--postgres-url is not a PostgreSQL URL (postgres://user:password@host:5432/database, or key=value pairs)")
	}
	return nil
}

// checkPostgres connects as the services would, then checks the schema is the one this
// version writes (migrated, and to the newest migration), and reads the total of the counts.
func checkPostgres(ctx context.Context, cfg Config) Hop {
	if cfg.PostgresURL == "" {
		return skippedHop(HopPostgres, "not checked: no --postgres-url (voting all on SQLite has none)")
	}
	target := PostgresTarget(cfg.PostgresURL)
	pcfg, err := pgx.ParseConfig(cfg.PostgresURL)
	if err != nil {
		return brokenHop(HopPostgres, target, &problem{CauseOther, "--postgres-url is not a PostgreSQL URL"})
	}
	tr := newTrace(cfg.Timeout)
	pcfg.LookupFunc, pcfg.DialFunc, pcfg.ConnectTimeout = tr.lookup, tr.dial, cfg.Timeout
	s := service{what: "PostgreSQL", addr: net.JoinHostPort(pcfg.Host, strconv.Itoa(int(pcfg.Port))), flag: "--postgres-url"}
	who := fmt.Sprintf("role %q on database %q", pcfg.User, pcfg.Database)

	cctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(cctx, pcfg)
	if err != nil {
		return brokenHop(HopPostgres, target, pgProblem(tr, s, who, err))
	}
	defer conn.Close(context.WithoutCancel(ctx))

	var (
		db, searchPath, version            string
		schema                             *string
		hasMigrations, hasVotes, hasCounts bool
	)
	err = conn.QueryRow(cctx, `SELECT current_database(), current_schema(), current_setting('search_path'), current_setting('server_version'),
		to_regclass('schema_migrations') IS NOT NULL, to_regclass('votes') IS NOT NULL, to_regclass('vote_counts') IS NOT NULL`).
		Scan(&db, &schema, &searchPath, &version, &hasMigrations, &hasVotes, &hasCounts)
	if err != nil {
		return brokenHop(HopPostgres, target, pgProblem(tr, s, who, err))
	}
	if schema == nil {
		return brokenHop(HopPostgres, target, &problem{CauseNoDatabase, fmt.Sprintf("no schema of the search_path %q exists in database %q: the schema named in %s (search_path) was never created, or is mistyped; create it (CREATE SCHEMA ...) and run `voting migrate` with that URL, or fix the URL",
			searchPath, db, s.flag)})
	}
	var missing []string
	for _, t := range []struct {
		name string
		ok   bool
	}{{"schema_migrations", hasMigrations}, {"votes", hasVotes}, {"vote_counts", hasCounts}} {
		if !t.ok {
			missing = append(missing, t.name)
		}
	}
	if len(missing) > 0 {
		return brokenHop(HopPostgres, target, &problem{CauseNotMigrated, fmt.Sprintf("the schema is not migrated: schema %q of database %q has no %s; run `voting migrate --postgres-url ...` with this URL (it is idempotent, and safe while the services run)",
			*schema, db, strings.Join(missing, ", "))})
	}
	var migrated int
	err = conn.QueryRow(cctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&migrated)
	var pgErr *pgconn.PgError
	migrationsRead := true
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == pgInsufficientPrivilege:
		migrationsRead = false // result's read-only role may read only the counts
	case err != nil:
		return brokenHop(HopPostgres, target, pgProblem(tr, s, who, err))
	case cfg.SchemaVersion > 0 && migrated < cfg.SchemaVersion:
		return brokenHop(HopPostgres, target, &problem{CauseNotMigrated, fmt.Sprintf("the schema is not migrated to this version: schema %q of database %q is at migration %d, this version needs %d; run `voting migrate --postgres-url ...` of this version (idempotent, safe while the services run)",
			*schema, db, migrated, cfg.SchemaVersion)})
	}
	var votes int64
	if err := conn.QueryRow(cctx, "SELECT coalesce(sum(count), 0)::bigint FROM vote_counts").Scan(&votes); err != nil {
		if errors.As(err, &pgErr) && pgErr.Code == pgInsufficientPrivilege {
			return brokenHop(HopPostgres, target, &problem{CauseNoPerm, fmt.Sprintf("%s may not read vote_counts (SQLSTATE 42501: %s): the result service cannot read the tally as this role either; grant it (GRANT SELECT ON vote_counts TO ...) or use the role that owns the tables",
				who, pgErr.Message)})
		}
		return brokenHop(HopPostgres, target, pgProblem(tr, s, who, err))
	}
	at := fmt.Sprintf("migration %d", migrated)
	if cfg.SchemaVersion > 0 {
		at += fmt.Sprintf(" of %d", cfg.SchemaVersion)
	}
	if !migrationsRead {
		at = "migration not checked (this role may not read schema_migrations)"
	}
	return okHop(HopPostgres, target, fmt.Sprintf("%s answers (PostgreSQL %s) as %s, schema %q: %s; %s counted",
		target, version, who, *schema, at, count(votes, "vote")))
}

// pgProblem explains a failure to connect to or query PostgreSQL: the network, or the
// server's own error.
func pgProblem(tr *trace, s service, who string, err error) *problem {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		if p := tr.netProblem(s, err); p != nil {
			return p
		}
		return &problem{CauseOther, fmt.Sprintf("PostgreSQL at %s failed: %v; check %s", s.addr, err, s.flag)}
	}
	code := pgErr.Code
	switch code {
	case pgInvalidPassword:
		return &problem{CauseAuth, fmt.Sprintf("PostgreSQL at %s refused the password of %s (authentication failed, SQLSTATE %s: %s): the password in %s is wrong, or the role has another since it was changed; use the role's password (the one in the services' Secret)",
			s.addr, who, code, pgErr.Message, s.flag)}
	case pgInvalidAuthorization:
		return &problem{CauseAuth, fmt.Sprintf("PostgreSQL at %s refused %s (authentication failed, SQLSTATE %s: %s): the role does not exist, or pg_hba.conf has no line letting it in from this address (or it requires TLS: sslmode=require); create the role, or add the pg_hba.conf line",
			s.addr, who, code, pgErr.Message)}
	case pgInvalidCatalogName:
		return &problem{CauseNoDatabase, fmt.Sprintf("the database does not exist on PostgreSQL at %s (SQLSTATE %s: %s): the database name in %s is mistyped, or the database was never created; fix the URL, or create it (CREATE DATABASE) and run `voting migrate`",
			s.addr, code, pgErr.Message, s.flag)}
	case pgTooManyConnections:
		return &problem{CauseOther, fmt.Sprintf("PostgreSQL at %s has no connection left (SQLSTATE %s: %s): its max_connections is used up; count the services' pools (8 connections per process), raise max_connections, or put a pooler in front",
			s.addr, code, pgErr.Message)}
	case pgCannotConnectNow:
		return &problem{CauseNotReady, fmt.Sprintf("PostgreSQL at %s does not take connections now (SQLSTATE %s: %s): it is starting, stopping or recovering; run doctor again in a moment, and read its log if it stays so",
			s.addr, code, pgErr.Message)}
	case pgInsufficientPrivilege:
		return &problem{CauseNoPerm, fmt.Sprintf("%s lacks a privilege (SQLSTATE %s: %s): grant it (GRANT CONNECT ON DATABASE, GRANT USAGE ON SCHEMA), or use the services' role",
			who, code, pgErr.Message)}
	}
	return &problem{CauseOther, fmt.Sprintf("PostgreSQL at %s answered an error (SQLSTATE %s: %s); compare %s with the services'", s.addr, code, pgErr.Message, s.flag)}
}
