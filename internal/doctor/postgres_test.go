package doctor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/votingapp/voting/internal/pgstore"
	"github.com/votingapp/voting/internal/voting/votingtest"
)

// fakePostgres speaks just enough of the PostgreSQL protocol to refuse a client the way a
// real server does: it asks for a password, reads it, then answers FATAL with code and msg.
// The throwaway PostgreSQL of the tests trusts every local connection (initdb --auth=trust),
// so it can never fail an authentication; this stands in for one that does, on the wire.
func fakePostgres(t *testing.T, code, msg string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				be := pgproto3.NewBackend(c, c)
				for {
					m, err := be.ReceiveStartupMessage()
					if err != nil {
						return
					}
					if _, ok := m.(*pgproto3.SSLRequest); ok {
						c.Write([]byte("N")) // no TLS here: the client goes on in plain text
						continue
					}
					break
				}
				if code == "28P01" {
					be.Send(&pgproto3.AuthenticationCleartextPassword{})
					if err := be.Flush(); err != nil {
						return
					}
					if err := be.SetAuthType(pgproto3.AuthTypeCleartextPassword); err != nil {
						return
					}
					if _, err := be.Receive(); err != nil { // the password
						return
					}
				}
				be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg})
				be.Flush()
			}()
		}
	}()
	return ln.Addr().String()
}

func checkPG(t *testing.T, url string) Hop {
	t.Helper()
	h := checkPostgres(context.Background(), Config{PostgresURL: url, Timeout: 3 * time.Second, SchemaVersion: latest(t)})
	t.Logf("%s: %s", h.Status, h.Message)
	return h
}

func latest(t *testing.T) int {
	v, err := pgstore.LatestMigration()
	if err != nil || v < 1 {
		t.Fatalf("latest migration: %d, %v", v, err)
	}
	return v
}

func wantBroken(t *testing.T, h Hop, cause Cause, parts ...string) {
	t.Helper()
	if h.Status != Broken || h.Cause != cause {
		t.Fatalf("got %s %q: %s; want broken with %q", h.Status, h.Cause, h.Message, cause)
	}
	for _, p := range parts {
		if !strings.Contains(h.Message, p) {
			t.Errorf("sentence %q lacks %q", h.Message, p)
		}
	}
}

// TestPostgresRefusesOnTheWire: the server's own refusals (wrong password, a role or host
// pg_hba.conf does not let in, a database that does not exist) as a fake server sends them.
func TestPostgresRefusesOnTheWire(t *testing.T) {
	wrongPassword := fakePostgres(t, "28P01", `password authentication failed for user "voting"`)
	h := checkPG(t, "postgres://voting:wrong@"+wrongPassword+"/voting?sslmode=disable")
	wantBroken(t, h, CauseAuth, "refused the password of role \"voting\" on database \"voting\"", "SQLSTATE 28P01", "the password in --postgres-url is wrong")
	if strings.Contains(h.Message, "wrong@") || strings.Contains(h.Target, "wrong") {
		t.Errorf("the password shows: %+v", h)
	}

	noHBA := fakePostgres(t, "28000", `no pg_hba.conf entry for host "10.0.0.7", user "voting", database "voting", no encryption`)
	wantBroken(t, checkPG(t, "postgres://voting@"+noHBA+"/voting?sslmode=disable"), CauseAuth, "SQLSTATE 28000", "pg_hba.conf")

	noDB := fakePostgres(t, "3D000", `database "votes" does not exist`)
	wantBroken(t, checkPG(t, "postgres://voting@"+noDB+"/votes?sslmode=disable"), CauseNoDatabase, "the database does not exist on PostgreSQL at "+noDB, `(SQLSTATE 3D000: database "votes" does not exist)`)
}

// TestPostgresNetwork: a closed port and a name that cannot resolve.
func TestPostgresNetwork(t *testing.T) {
	addr := closedPort(t)
	wantBroken(t, checkPG(t, "postgres://voting@"+addr+"/voting"), CauseRefused, "the connection to "+addr+" was refused", "start PostgreSQL", "--postgres-url")
	wantBroken(t, checkPG(t, "postgres://voting@db.doctor.invalid:5432/voting"), CauseDNS, "db.doctor.invalid does not resolve")
	silent := silentServer(t, false)
	h := checkPostgres(context.Background(), Config{PostgresURL: "postgres://voting@" + silent + "/voting?sslmode=disable", Timeout: 300 * time.Millisecond})
	wantBroken(t, h, CauseNoAnswer, "took the connection but answered nothing within 300ms")
}

// TestPostgresSchema runs against the test server: a database that does not exist, an
// empty schema, a schema that does not exist, one migrated by an older version, and one
// that is ready.
func TestPostgresSchema(t *testing.T) {
	purl := votingtest.RequireServer(t, "VOTING_TEST_POSTGRES_URL")
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, purl)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	schema := "doctor_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE") })
	withQuery := func(k, v string) string {
		u, _ := url.Parse(purl)
		q := u.Query()
		q.Set(k, v)
		u.RawQuery = q.Encode()
		return u.String()
	}
	inSchema := withQuery("search_path", schema)

	wantBroken(t, checkPG(t, inSchema), CauseNotMigrated, "the schema is not migrated: schema \""+schema+"\"", "has no schema_migrations, votes, vote_counts", "run `voting migrate")
	wantBroken(t, checkPG(t, withQuery("search_path", schema+"_gone")), CauseNoDatabase, "no schema of the search_path")

	u, _ := url.Parse(purl)
	u.Path = "/doctor_no_such_database"
	wantBroken(t, checkPG(t, u.String()), CauseNoDatabase, `database "doctor_no_such_database" does not exist`)

	if err := pgstore.Migrate(ctx, inSchema); err != nil {
		t.Fatal(err)
	}
	h := checkPG(t, inSchema)
	if h.Status != OK || !strings.Contains(h.Message, "0 votes counted") {
		t.Fatalf("migrated: got %s %s", h.Status, h.Message)
	}
	if _, err := conn.Exec(ctx, "DELETE FROM "+schema+".schema_migrations WHERE version = $1", latest(t)); err != nil {
		t.Fatal(err)
	}
	wantBroken(t, checkPG(t, inSchema), CauseNotMigrated, "is at migration", "this version needs")
}
