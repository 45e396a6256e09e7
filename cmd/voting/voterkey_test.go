package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/votingapp/voting/internal/vote"
)

// voterKeyFlag writes a voter key file for a test and returns the flag naming it.
func voterKeyFlag(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "voter-key")
	if err := os.WriteFile(path, []byte(vote.NewVoterKey()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "--voter-key-file=" + path
}

// apiVote votes with JSON as the browser holding cookie ("" for a new one) and returns the
// voter the service counted and the cookie it gave back.
func apiVote(t *testing.T, voteURL, cookie, option string) (string, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, voteURL+"/api/vote", strings.NewReader(`{"vote":"`+option+`"}`))
	req.Header.Set("Content-Type", "application/json")
	if cookie != "" {
		req.Header.Set("Cookie", "voter_id="+cookie)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var answer struct {
		VoterID string `json:"voter_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("vote: %s %v", resp.Status, err)
	}
	for _, c := range resp.Cookies() {
		if c.Name == "voter_id" {
			cookie = c.Value
		}
	}
	return answer.VoterID, cookie
}

// TestAllKeepsItsVoterKey: `voting all` without --voter-key-file makes a key in its data
// directory on first start (readable by its user only) and uses it again after a restart,
// so a browser stays the same voter; the key itself is never logged.
func TestAllKeepsItsVoterKey(t *testing.T) {
	dir := t.TempDir()
	args := append([]string{"all", "--data-dir=" + dir}, loopback...)
	app := startApp(t, nil, []string{"vote", "admin"}, args...)
	app.waitReady()
	voter, cookie := apiVote(t, app.url("vote"), "", "a")
	if code := app.stop(); code != 0 {
		t.Fatalf("exit %d; logs:\n%s", code, app.logs)
	}
	path := filepath.Join(dir, "voter-key")
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want it readable by its owner only", fi, err)
	}
	key, _ := os.ReadFile(path)
	keys, err := vote.ParseVoterKeys(key)
	if err != nil {
		t.Fatalf("generated key file: %v", err)
	}
	if !app.logs.contains(`"voter key generated"`) {
		t.Errorf("the first start does not say it generated a voter key:\n%s", app.logs)
	}

	again := startApp(t, nil, []string{"vote", "admin"}, args...)
	again.waitReady()
	if got, _ := apiVote(t, again.url("vote"), cookie, "b"); got != voter {
		t.Errorf("after a restart the browser of voter %s voted as %s: the key changed", voter, got)
	}
	if again.logs.contains(`"voter key generated"`) {
		t.Errorf("the key was generated again on restart")
	}
	for _, logs := range []string{app.logs.String(), again.logs.String()} {
		if strings.Contains(logs, string(keys[0])) {
			t.Errorf("the voter key is in the logs")
		}
	}
}

// TestVoterKeyFile: the key file given is used (two processes with the same file know the
// same voters), and a missing or unusable file stops the start with a message that says so.
func TestVoterKeyFile(t *testing.T) {
	keyFlag := voterKeyFlag(t)
	var ids []string
	cookie := ""
	for range 2 {
		args := append([]string{"all", "--data-dir=" + t.TempDir(), keyFlag}, loopback...)
		app := startApp(t, nil, []string{"vote", "admin"}, args...)
		var id string
		id, cookie = apiVote(t, app.url("vote"), cookie, "a")
		ids = append(ids, id)
		app.stop()
	}
	if ids[0] != ids[1] {
		t.Errorf("two processes with one key file: voter %s became %s", ids[0], ids[1])
	}

	short := filepath.Join(t.TempDir(), "short")
	if err := os.WriteFile(short, []byte("# a comment\ntoo-short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ file, want string }{
		{filepath.Join(t.TempDir(), "missing"), "voter key file: open"},
		{short, "want at least 32"},
	} {
		var stderr strings.Builder
		args := append([]string{"voting", "all", "--data-dir=" + t.TempDir(), "--voter-key-file=" + tt.file}, loopback...)
		if code := run(context.Background(), args, func(string) string { return "" }, io.Discard, &stderr); code != 1 || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("--voter-key-file=%s: exit %d, %q; want exit 1 and %q", tt.file, code, stderr.String(), tt.want)
		}
	}
}
