package result

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// checkOrigin refuses a cross-origin handshake: a page of another site may not read the
// results stream in a visitor's browser. A request without Origin is allowed (it does not come
// from a browser page, which always sends one). This is the rule browsers' pages were held to
// before, host against host, so a page behind a proxy that keeps the Host header still works.
func checkOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return fmt.Errorf("request Origin %q is not a URL with a host", origin)
	}
	if !strings.EqualFold(u.Host, r.Host) {
		return fmt.Errorf("request Origin %q is not allowed for Host %q", origin, r.Host)
	}
	return nil
}
