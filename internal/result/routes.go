package result

import (
	"embed"
	"net/http"

	"github.com/votingapp/voting/internal/web"
)

//go:embed assets
var assetsFS embed.FS

// Handler returns the service's routes.
func (s *Service) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("GET /api/results", s.serveResults)
	mux.HandleFunc("GET /ws", s.serveWebSocket)
	mux.Handle("GET /static/", s.static)
	// Every answer names the version, the WebSocket handshake included.
	return web.WithVersion(s.cfg.VersionLabel, mux)
}
