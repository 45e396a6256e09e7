package vote

import (
	"embed"
	"net/http"
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
	return mux
}
