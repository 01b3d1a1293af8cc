// Package refusal is the one error type every server context returns when
// it refuses a request for a reason the caller can act on: the input is
// invalid, the resource is missing, it conflicts with what exists, or the
// credentials do not hold. The Message is written to be shown to the caller
// as is and never holds a secret, a setting, a script or a key; httpapi maps
// the Kind to an HTTP status (and the OAuth2 error shape on the token
// endpoint). Any other error a context returns is internal: logged, never
// shown.
//
// Contexts branch on kinds with errors.Is(err, refusal.ErrInvalid); a
// report handler returning an ErrInvalid refusal means "acknowledged and
// dropped" (see package capability).
package refusal

import (
	"errors"
	"fmt"
	"time"
)

// Kinds of refusal.
var (
	ErrInvalid         = errors.New("invalid request")
	ErrNotFound        = errors.New("not found")
	ErrConflict        = errors.New("conflict")
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrTooMany refuses a request over a rate or quota of its caller for
	// now; RetryAfter says when to try again (429).
	ErrTooMany = errors.New("too many requests")
)

// Error is a refusal with a caller-safe message.
type Error struct {
	Kind    error  // ErrInvalid, ErrNotFound, ErrConflict or ErrUnauthenticated
	Target  string // the request field at fault, if any
	Message string
	// Code is the wire error code when the kind's default does not say
	// enough (wire.CodeUnsupportedProtocol, wire.CodeInvalidGrant, ...).
	Code string
	// RetryAfter is when an ErrTooMany refusal may be retried (0: unknown).
	RetryAfter time.Duration
}

func (e *Error) Error() string { return e.Message }

// Unwrap makes errors.Is(err, ErrInvalid) and friends work.
func (e *Error) Unwrap() error { return e.Kind }

// WithCode sets the wire error code and returns e.
func (e *Error) WithCode(code string) *Error {
	e.Code = code
	return e
}

// Invalid refuses bad input; target names the request field at fault.
func Invalid(target, format string, args ...any) *Error {
	return &Error{Kind: ErrInvalid, Target: target, Message: fmt.Sprintf(format, args...)}
}

// NotFound refuses a request about a resource that does not exist.
func NotFound(format string, args ...any) *Error {
	return &Error{Kind: ErrNotFound, Message: fmt.Sprintf(format, args...)}
}

// Conflict refuses a change that clashes with what exists.
func Conflict(format string, args ...any) *Error {
	return &Error{Kind: ErrConflict, Message: fmt.Sprintf(format, args...)}
}

// Unauthenticated refuses credentials: unknown, wrong or expired.
func Unauthenticated(format string, args ...any) *Error {
	return &Error{Kind: ErrUnauthenticated, Message: fmt.Sprintf(format, args...)}
}

// TooMany refuses a request over its caller's rate for now; it may be
// retried after retryAfter.
func TooMany(retryAfter time.Duration, format string, args ...any) *Error {
	return &Error{Kind: ErrTooMany, Message: fmt.Sprintf(format, args...), RetryAfter: retryAfter}
}

// As returns the refusal in err's chain, if any.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}
