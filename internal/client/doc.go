// Package client is a typed Go client of the Corral REST API (docs/api.md).
//
// A Client talks HTTPS to one control plane, trusting either a given CA
// (WithCAFile, WithCAPEM) or the system roots, and authenticates with a bearer
// token (WithToken). Every method takes a context first. A non-2xx answer is
// returned as *wire.APIError; errors of the OAuth2 token endpoint are mapped
// to *wire.APIError too, with the OAuth2 error code. Error strings never carry
// a secret: request bodies and tokens are never echoed.
package client
