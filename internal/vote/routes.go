package vote

import (
	"embed"
	"net/http"

	"github.com/votingapp/voting/internal/ratelimit"
	"github.com/votingapp/voting/internal/web"
)

//go:embed assets
var assetsFS embed.FS

// Handler returns the service's routes.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("POST /{$}", s.handleForm)
	mux.HandleFunc("POST /api/vote", s.handleAPI)
	mux.HandleFunc("GET /api/options", s.serveOptions)
	mux.Handle("GET /static/", s.static)

	// Browsers' cross-site POSTs are refused (by Sec-Fetch-Site or Origin), so another site
	// cannot make a visitor vote; clients that send neither, like curl and ab, pass.
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.rejected.WithLabelValues("cross_origin").Inc()
		http.Error(w, "cross-origin request refused: vote from the voting page", http.StatusForbidden)
	}))
	h := cop.Handler(mux)
	if s.limiter != nil {
		// Only votes are limited: pages and assets never are.
		isVote := func(r *http.Request) bool { return r.Method == http.MethodPost }
		h = ratelimit.Middleware(s.limiter, s.cfg.Proxies, isVote, s.rateLimited.Inc, h)
	}
	// Outermost, so that every answer names the version, a 403 or 429 included.
	return web.WithVersion(s.cfg.VersionLabel, h)
}
