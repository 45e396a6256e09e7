package supplychain

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// ReadmeHeading is the README section whose first sh block holds the commands that verify a
// release: the check runs exactly those, so that they cannot drift from what works.
const ReadmeHeading = "## Verify what you run"

// The keyless flags of the README's commands, which name the release workflow's identity;
// offline, the check swaps them for the run's public key (KeyFlags).
var keylessFlags = map[string]bool{
	"--certificate-identity":        true,
	"--certificate-identity-regexp": true,
	"--certificate-oidc-issuer":     true,
}

// VerifyCommands returns the commands of the README's verification block, each split into
// words as a shell would (single and double quotes, backslash-newline continuations;
// comments and blank lines dropped).
func VerifyCommands(readme []byte) ([][]string, error) {
	s := bufio.NewScanner(bytes.NewReader(readme))
	in, block, done := false, false, false
	var lines []string
	for s.Scan() && !done {
		line := s.Text()
		switch {
		case !in:
			in = strings.TrimSpace(line) == ReadmeHeading
		case !block && strings.HasPrefix(line, "## "):
			return nil, fmt.Errorf("README: %q has no ```sh block", ReadmeHeading)
		case !block:
			block = strings.HasPrefix(line, "```sh")
		case strings.HasPrefix(line, "```"):
			done = true
		default:
			lines = append(lines, line)
		}
	}
	if !done {
		return nil, fmt.Errorf("README: no section %q with a closed ```sh block", ReadmeHeading)
	}
	var cmds [][]string
	var cur strings.Builder
	for _, line := range lines {
		t := strings.TrimSpace(line)
		if cur.Len() == 0 && (t == "" || strings.HasPrefix(t, "#")) {
			continue
		}
		if strings.HasSuffix(t, `\`) {
			cur.WriteString(strings.TrimSuffix(t, `\`) + " ")
			continue
		}
		cur.WriteString(t)
		words, err := splitWords(cur.String())
		if err != nil {
			return nil, fmt.Errorf("README verification block: %w", err)
		}
		cmds = append(cmds, words)
		cur.Reset()
	}
	if len(cmds) == 0 {
		return nil, fmt.Errorf("README: the %q block has no commands", ReadmeHeading)
	}
	return cmds, nil
}

// splitWords splits a command line into words: whitespace separates, single quotes keep
// everything, double quotes keep everything but a backslash-escaped quote; a # starting a
// word begins a comment.
func splitWords(line string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == ' ' || c == '\t':
			if inWord {
				words, inWord = append(words, w.String()), false
				w.Reset()
			}
		case c == '#' && !inWord:
			i = len(line)
		case c == '\'':
			j := strings.IndexByte(line[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unclosed ' in %q", line)
			}
			w.WriteString(line[i+1 : i+1+j])
			i, inWord = i+1+j, true
		case c == '"':
			j := i + 1
			for ; j < len(line) && line[j] != '"'; j++ {
				if line[j] == '\\' && j+1 < len(line) {
					j++
				}
				w.WriteByte(line[j])
			}
			if j >= len(line) {
				return nil, fmt.Errorf(`unclosed " in %q`, line)
			}
			i, inWord = j, true
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// Localize turns a README command into the offline one: every replacement of the map applied
// to each word (the published names to the loopback registry's, placeholders to values), and
// the keyless identity flags replaced by keyFlags (--key <pub> and --insecure-ignore-tlog: a
// key made for the run, and no transparency log here). It fails when a placeholder <...> is
// left.
func Localize(cmd []string, replace []string, keyFlags []string) ([]string, error) {
	r := strings.NewReplacer(replace...)
	var out []string
	keyless := false
	for i := 0; i < len(cmd); i++ {
		w := cmd[i]
		flag, _, hasValue := strings.Cut(w, "=")
		if keylessFlags[flag] {
			keyless = true
			if !hasValue {
				i++ // its value is the next word
			}
			continue
		}
		w = r.Replace(w)
		if strings.Contains(w, "<") && strings.Contains(w, ">") {
			return nil, fmt.Errorf("%q: no value for the placeholder in %q", strings.Join(cmd, " "), w)
		}
		out = append(out, w)
	}
	if keyless {
		out = append(out, keyFlags...)
	}
	return out, nil
}
