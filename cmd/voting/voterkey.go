package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/votingapp/voting/internal/vote"
)

// voterKeyFileName is the key file `voting all` keeps in --data-dir when no
// --voter-key-file is given.
const voterKeyFileName = "voter-key"

// errNoVoterKey is the error of `voting vote` started without a key file.
var errNoVoterKey = fmt.Errorf("--voter-key-file (or %s) is required: vote signs each browser's voter id with it, and every vote replica must have the same keys, or a voter served by two replicas counts twice; make one with `head -c 32 /dev/urandom | base64 > voter-key` (Kubernetes: a Secret mounted as a file)", envName("voter-key-file"))

// voterKeys returns the voter keys: those of --voter-key-file, or, for `voting all` without
// it, the key kept in --data-dir, made on first start. The log line says which, with a
// fingerprint of the signing key (not the key) so that operators can check that replicas
// agree.
func voterKeys(p *process, keyFile, dataDir string) ([][]byte, error) {
	path, generated := keyFile, false
	if path == "" {
		if dataDir == "" {
			return nil, errNoVoterKey
		}
		path = filepath.Join(dataDir, voterKeyFileName)
		var err error
		if generated, err = ensureVoterKeyFile(path); err != nil {
			return nil, fmt.Errorf("voter key in the data directory (set --voter-key-file to use another): %w", err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("voter key file: %w", err)
	}
	keys, err := vote.ParseVoterKeys(b)
	if err != nil {
		return nil, fmt.Errorf("voter key file %s: %w", path, err)
	}
	attrs := []any{"voter_key_file", path, "keys", len(keys), "signing_key", keyFingerprint(keys[0])}
	switch {
	case generated:
		p.log.Info("voter key generated", append(attrs, "note", "keep it with the votes: another key makes every browser a new voter")...)
	case keyFile == "":
		p.log.Info("voter key from the data directory", append(attrs, "note", "every process serving this poll needs the same key: give them one --voter-key-file")...)
	default:
		p.log.Info("voter keys loaded", attrs...)
	}
	return keys, nil
}

// ensureVoterKeyFile makes a voter key file at path unless one exists, and reports whether
// it made one. Two processes starting at once on one data directory end up with the same
// key: the file appears whole (written aside, then linked), and only once.
func ensureVoterKeyFile(path string) (bool, error) {
	if _, err := os.Stat(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".voter-key-*")
	if err != nil {
		return false, err
	}
	defer os.Remove(tmp.Name())
	_, err = fmt.Fprintf(tmp, "# voter key of this data directory: it signs the voter cookies (see --voter-key-file)\n%s\n", vote.NewVoterKey())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return false, err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, err
	}
	return true, nil
}

// keyFingerprint names a key in logs without revealing it: the first 8 hex digits of a
// SHA-256 of it.
func keyFingerprint(key []byte) string {
	sum := sha256.Sum256(append([]byte("voting voter key fingerprint\x00"), key...))
	return hex.EncodeToString(sum[:4])
}
