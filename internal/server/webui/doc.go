// Package webui is the control plane's browser interface, served at /ui/.
//
// It is a client of the REST API and nothing else: every read and write is an
// in-process call of the API handler (httpapi) with the signed-in user's
// bearer token, the browser's source address and a correlation id, so
// authorization, validation and the activity log are exactly the API's. The
// package never touches the store and never decides who may do what.
//
// Pages are rendered on the server with html/template; the stylesheet and
// the one small script are embedded. Sessions are the access token in an
// HttpOnly, Secure, SameSite=Strict cookie scoped to /ui/. Every POST must
// carry a CSRF token bound to the session and, when the browser sends them,
// a same-origin Origin (or Referer) and Sec-Fetch-Site. The handler keeps no
// per-user state, so any replica can serve any request.
package webui
