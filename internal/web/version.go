package web

import (
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// A version label (--version-label) and an accent colour (--accent-color) tell the versions of
// a rollout apart: during a canary, a blue/green switch or a mesh's traffic split, a person sees
// on the page which one served it, a client reads it in the VersionHeader of every answer, and
// voting_build_info carries both, so dashboards and a canary analysis can split by version.
// Both are empty by default, and then nothing of this shows: the pages look as they always did.

// VersionHeader is the response header that carries the version label on every answer of vote
// and result, when a label is set.
const VersionHeader = "X-Voting-Version"

// MaxVersionLabelLen bounds a version label: it is a badge on a phone-sized page, a header and
// a metric label, where a release name ("v2", "1.4.0-canary", "green") fits and a sentence
// does not.
const MaxVersionLabelLen = 32

// CheckVersionLabel reports why s cannot be a version label: longer than MaxVersionLabelLen,
// or not printable ASCII (it travels in an HTTP header, where other bytes are not portable),
// or with a space at either end (a header value loses it). "" is fine: no label.
func CheckVersionLabel(s string) error {
	if len(s) > MaxVersionLabelLen {
		return fmt.Errorf("version label %q is %d characters long, want at most %d", s, len(s), MaxVersionLabelLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return fmt.Errorf("version label %q: want printable ASCII characters only (it is sent in the %s header)", s, VersionHeader)
		}
	}
	if strings.TrimSpace(s) != s {
		return fmt.Errorf("version label %q must not start or end with a space", s)
	}
	return nil
}

// accentNames are the colour names --accent-color takes besides hex colours: the option
// colours of the pages' own palette, so that "blue" and "green" of a blue/green deployment
// look like the rest of the page. They are not CSS's named colours (CSS's "green" is #008000).
var accentNames = map[string]string{
	"blue": "#2563eb", "orange": "#c2410c", "green": "#15803d", "purple": "#7c3aed", "teal": "#0f766e",
	"pink": "#be185d", "yellow": "#a16207", "gray": "#475569", "indigo": "#4f46e5", "red": "#b91c1c",
}

// AccentNames lists the colour names ParseAccentColor takes, sorted.
func AccentNames() []string {
	names := make([]string, 0, len(accentNames))
	for n := range accentNames {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ParseAccentColor returns an accent colour as #rrggbb in lower case: s is #rgb or #rrggbb
// (hex digits in either case) or one of AccentNames (in any case). Nothing else is taken, because the colour
// is written into a stylesheet: a strict grammar is what keeps anything but a colour out of
// it. "" gives "": no accent.
func ParseAccentColor(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	if hex, ok := accentNames[strings.ToLower(s)]; ok { // CSS's names ignore case too
		return hex, nil
	}
	bad := func() (string, error) {
		return "", fmt.Errorf("accent colour %q: want #rgb, #rrggbb (hex digits) or one of %s", s, strings.Join(AccentNames(), ", "))
	}
	if s[0] != '#' || len(s) != 4 && len(s) != 7 {
		return bad()
	}
	digits := strings.ToLower(s[1:])
	for _, c := range digits {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return bad()
		}
	}
	if len(digits) == 3 {
		digits = string([]byte{digits[0], digits[0], digits[1], digits[1], digits[2], digits[2]})
	}
	return "#" + digits, nil
}

// AccentStylesheet is the name of the stylesheet Static.SetAccent adds and Page.Head links.
const AccentStylesheet = "accent.css"

// accentCSS returns the stylesheet of an accent colour (#rrggbb, from ParseAccentColor): the
// custom properties --accent, and --on-accent for text on it, which the pages' own stylesheets
// read with fallbacks for when it is absent. It is a file rather than a style attribute
// because the Content-Security-Policy allows no inline style.
func accentCSS(hex string) []byte {
	return []byte("/* --accent-color " + hex + ": the version's accent, read by the page's own stylesheet. */\n" +
		":root { --accent: " + hex + "; --on-accent: " + onAccent(hex) + "; }\n")
}

// onAccent returns the text colour for a background of hex: black or white, whichever
// contrasts more. One of the two always reaches 4.58:1 with any colour, so the badge meets
// WCAG AA whatever colour a deployment picks.
func onAccent(hex string) string {
	if contrast(luminance(hex), 0) >= contrast(luminance(hex), 1) {
		return "#000"
	}
	return "#fff"
}

// luminance is the relative luminance of #rrggbb, as WCAG 2 defines it.
func luminance(hex string) float64 {
	var l float64
	for i, w := range []float64{0.2126, 0.7152, 0.0722} {
		v, _ := strconv.ParseUint(hex[1+2*i:3+2*i], 16, 8)
		c := float64(v) / 255
		if c <= 0.03928 {
			c /= 12.92
		} else {
			c = math.Pow((c+0.055)/1.055, 2.4)
		}
		l += w * c
	}
	return l
}

// contrast is the WCAG contrast ratio of two relative luminances.
func contrast(a, b float64) float64 {
	return (max(a, b) + 0.05) / (min(a, b) + 0.05)
}

// WithVersion sets VersionHeader to label on every answer of next; an empty label sets
// nothing. It is set before next runs, so errors, redirects, static files and WebSocket
// handshakes carry it too.
func WithVersion(label string, next http.Handler) http.Handler {
	if label == "" {
		return next
	}
	value := []string{label} // shared: the header map holds it, nothing modifies it
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()[VersionHeader] = value
		next.ServeHTTP(w, r)
	})
}

// VersionBadge appends the version label as a badge (nothing for ""), its text escaped. A
// screen reader reads "Version <label>".
func (p *Page) VersionBadge(label string) *Page {
	if label == "" {
		return p
	}
	return p.Raw(`<p class="version" id="version"><span class="visually-hidden">Version </span>`).Text(label).Raw("</p>\n")
}
