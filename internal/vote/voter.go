package vote

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The voter cookie is the voter's credential. Its value is "<id>.<stamp>.<mac>":
//
//   - id: 128 random bits in hex, the voter's id in the queue and the store;
//   - stamp: the time of the newest vote this browser was answered for, in microseconds
//     since the Unix epoch (decimal; 0 before the first vote). The next vote is stamped
//     after it, so a voter's later vote wins whichever replica serves it and whatever that
//     replica's clock says (see Service.stamp);
//   - mac: HMAC-SHA256 of the id and the stamp under the first voter key, its first 128
//     bits in unpadded base64url.
//
// A cookie whose mac no key verifies (forged, altered, signed with a key that was removed,
// or the unsigned id of earlier versions) is not this voter's: the request gets a new id.
// So knowing a voter's id is not enough to vote in its name; only the cookie is, and it
// never leaves the voter's browser (HttpOnly; it is not in answers, logs or the queue).
const (
	voterCookie  = "voter_id"
	choiceCookie = "vote"
	cookieMaxAge = 365 * 24 * 60 * 60

	voterIDLen = 32 // hex digits of 128 bits
	macLen     = 16 // bytes of the HMAC kept: 128 bits, as much as the id has
	// macDomain separates these MACs from any other use of the key; v1 names this format.
	macDomain = "voting voter_id v1\x00"
	// maxStampLen bounds the stamp's digits: microseconds since 1970 fit in 17 digits
	// until the year 5138.
	maxStampLen = 17
)

// MinVoterKeyLen is the shortest voter key accepted, in bytes. A key is used as it is
// written (text, not decoded); 32 bytes of base64 carry 192 bits, well over the 128 the
// MAC keeps.
const MinVoterKeyLen = 32

// MaxVoterKeys bounds the keys: a cookie that no key verifies costs one HMAC per key.
const MaxVoterKeys = 8

// ParseVoterKeys reads voter keys as a key file holds them: one key a line, the signing
// key first, then keys that are still accepted (an older one being retired, or a newer one
// being rolled out). Blank lines and lines starting with # are skipped; spaces around a key
// are trimmed.
func ParseVoterKeys(b []byte) ([][]byte, error) {
	var keys [][]byte
	for i, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		if len(line) < MinVoterKeyLen {
			return nil, fmt.Errorf("voter key on line %d: %d bytes, want at least %d (make one with `head -c 32 /dev/urandom | base64`)", i+1, len(line), MinVoterKeyLen)
		}
		keys = append(keys, line)
	}
	switch {
	case len(keys) == 0:
		return nil, errors.New("no voter key: want at least one key, one a line")
	case len(keys) > MaxVoterKeys:
		return nil, fmt.Errorf("%d voter keys, want at most %d", len(keys), MaxVoterKeys)
	}
	return keys, nil
}

// NewVoterKey returns a new random voter key: 32 random bytes in unpadded base64url, 43
// characters.
func NewVoterKey() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// voter is the voter of a request, from its cookie or new.
type voter struct {
	id   string
	last int64 // stamp of the newest vote the browser was answered for (Unix µs), 0 before
	// dirty means the browser must be sent the cookie: the voter is new, its cookie was
	// signed with an older key, or it has just voted.
	dirty bool
}

// voterOf returns the request's voter: the one its cookie names when a key verifies it,
// else a new one, counted by why.
func (s *Service) voterOf(r *http.Request) voter {
	c, err := r.Cookie(voterCookie)
	if err != nil {
		s.issuedNew.Inc()
		return newVoter()
	}
	v, signer, ok := s.verify(c.Value)
	if !ok {
		s.issuedInvalid.Inc()
		return newVoter()
	}
	v.dirty = signer > 0 // re-signed with the current key, so the older one can be retired
	return v
}

func newVoter() voter {
	var b [voterIDLen / 2]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return voter{id: hex.EncodeToString(b[:]), dirty: true}
}

// verify parses a cookie value and checks its mac against each key; it returns the voter
// and the index of the key that signed it.
func (s *Service) verify(value string) (voter, int, bool) {
	id, rest, ok1 := strings.Cut(value, ".")
	stamp, mac, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || !validHexID(id) || len(stamp) == 0 || len(stamp) > maxStampLen ||
		(len(stamp) > 1 && stamp[0] == '0') || base64.RawURLEncoding.DecodedLen(len(mac)) != macLen {
		return voter{}, 0, false
	}
	last, err := strconv.ParseInt(stamp, 10, 64)
	if err != nil || last < 0 {
		return voter{}, 0, false
	}
	// Strict: the mac's last character has unused bits, which a lax decoder ignores, so four
	// spellings of one mac would verify (found by FuzzVoterCookie). A cookie has one spelling.
	var got [macLen]byte
	if n, err := base64.RawURLEncoding.Strict().Decode(got[:], []byte(mac)); err != nil || n != macLen {
		return voter{}, 0, false
	}
	for i := range s.macs {
		want := s.sign(i, id, stamp)
		if hmac.Equal(got[:], want[:]) {
			return voter{id: id, last: last}, i, true
		}
	}
	return voter{}, 0, false
}

// cookieValue is the voter's cookie, signed with the first key.
func (s *Service) cookieValue(v voter) string {
	stamp := strconv.FormatInt(v.last, 10)
	mac := s.sign(0, v.id, stamp)
	return v.id + "." + stamp + "." + base64.RawURLEncoding.EncodeToString(mac[:])
}

// sign returns the mac of id and stamp under key i. The keyed HMAC states are pooled per
// key: a new one per cookie was most of the allocations the cookie added to a vote.
func (s *Service) sign(i int, id, stamp string) [macLen]byte {
	m := s.macs[i].Get().(hash.Hash)
	m.Reset()
	var buf [len(macDomain) + voterIDLen + 1 + maxStampLen]byte
	m.Write(append(append(append(append(buf[:0], macDomain...), id...), '.'), stamp...))
	var sum [sha256.Size]byte
	var out [macLen]byte
	copy(out[:], m.Sum(sum[:0]))
	s.macs[i].Put(m)
	return out
}

// newMACs returns a pool of keyed HMAC-SHA256 states for each key.
func newMACs(keys [][]byte) []*sync.Pool {
	pools := make([]*sync.Pool, len(keys))
	for i, k := range keys {
		pools[i] = &sync.Pool{New: func() any { return hmac.New(sha256.New, k) }}
	}
	return pools
}

// validHexID reports whether id is an id newVoter makes: 32 lower-case hex digits. Anything
// else cannot have been signed, so it is refused before any HMAC is computed.
func validHexID(id string) bool {
	if len(id) != voterIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// setVoterCookie sends the voter's cookie when the browser does not have it yet. Every
// answer of the page and the vote routes calls it before writing, errors included, so a
// new visitor holds its id from the first answer on: a double click or a retry after a
// 503 is the same voter.
func (s *Service) setVoterCookie(w http.ResponseWriter, r *http.Request, v voter) {
	if v.dirty {
		setCookie(w, r, voterCookie, s.cookieValue(v))
	}
}

// stamp returns the time of a new vote by voter v: this process's clock, but strictly after
// the voter's previous vote (last + 1 µs) and strictly after every vote this process
// stamped before. The first makes a voter's later vote (sent after the previous one was
// answered) win whichever replica stamped each and however their clocks differ, since its
// cookie carries the previous stamp; the second gives two votes of one process never the
// same time, so the store's tie-break (by option id, to stay independent of delivery order)
// only ever decides between votes that were in flight at once on two replicas, which have
// no order a voter could know.
//
// Stamps are whole microseconds, the stores' voting.TimePrecision.
func (s *Service) stamp(v voter) time.Time {
	now := s.cfg.Now().UnixMicro()
	for {
		prev := s.lastStamp.Load()
		t := max(now, prev+1)
		if s.lastStamp.CompareAndSwap(prev, t) {
			return time.UnixMicro(max(t, v.last+1)).UTC()
		}
	}
}
