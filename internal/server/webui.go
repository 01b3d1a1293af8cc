package server

import "net/http"

// webUI returns the web UI handler mounted at /ui/.
func (s *Server) webUI() http.Handler { return nil }
