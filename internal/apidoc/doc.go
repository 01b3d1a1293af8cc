// Package apidoc checks the API description checked in as api/openapi.json,
// generated from the server's route table and wire types (see
// internal/server/httpapi/openapi.go): that it is byte for byte what a
// running server serves at /api/v1/openapi.json, that Redocly CLI lints it
// clean under api/redocly.yaml, and that a Go client generated from it with
// oapi-codegen compiles and drives a real server. It has no code of its own
// besides the tests; `go generate ./...` rewrites the document (openapigen).
package apidoc

//go:generate go run ./openapigen -o ../../api/openapi.json
