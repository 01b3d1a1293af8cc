package server

import (
	"net/http"

	"github.com/corralhq/corral/internal/server/webui"
	"github.com/corralhq/corral/internal/version"
)

// webUI returns the web UI handler mounted at /ui/. It is a client of s.API
// in process: it has no access to the store of its own.
func (s *Server) webUI() http.Handler {
	return webui.New(webui.Config{API: s.API, Logger: s.cfg.Logger.With("component", "webui"),
		Clock: s.cfg.Clock, Version: version.Version})
}
