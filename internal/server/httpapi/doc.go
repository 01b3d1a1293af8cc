// Package httpapi is the control plane's HTTP surface: the REST API under
// /api/v1, the OAuth2 token endpoints and the agent protocol under /agent/v1.
//
// Every route is declared once in the routes table with the RBAC action it
// performs and how its scope is derived. A single wrapper authenticates the
// caller, authorizes the action at the scope, runs the handler and writes the
// activity log entry (every mutating call and every denied call), so a
// handler only decodes, calls the domain code and encodes.
package httpapi
