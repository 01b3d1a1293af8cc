package wire

import (
	"fmt"
	"time"
)

// Error codes carried in ErrorBody.Code. They are part of the API contract:
// scripts branch on them.
const (
	CodeBadRequest           = "BadRequest"
	CodeInvalidJSON          = "InvalidJSON"
	CodeValidation           = "ValidationFailed"
	CodeUnauthenticated      = "Unauthenticated"
	CodeInvalidClient        = "invalid_client" // OAuth2 token endpoint, RFC 6749 §5.2
	CodeInvalidGrant         = "invalid_grant"
	CodeAuthorizationPending = "authorization_pending" // RFC 8628
	CodeExpiredToken         = "expired_token"
	CodeForbidden            = "AuthorizationFailed"
	CodeNotFound             = "NotFound"
	CodeConflict             = "Conflict"
	CodeTooLarge             = "RequestEntityTooLarge"
	CodeUnsupportedMedia     = "UnsupportedMediaType"
	CodeMethodNotAllowed     = "MethodNotAllowed"
	CodeUnsupportedProtocol  = "UnsupportedProtocolVersion"
	CodeInvalidCertificate   = "InvalidClientCertificate"
	CodeMachineExpired       = "MachineExpired"
	CodeInternal             = "InternalError"
	CodeUnavailable          = "ServiceUnavailable"
	CodeTooManyRequests      = "TooManyRequests"
	CodeQuotaExceeded        = "QuotaExceeded"
	// CodeInsufficientStorage (507): the control plane's store has no
	// space left; nothing was changed.
	CodeInsufficientStorage = "InsufficientStorage"
	// CodeActivityLogUnavailable (503): the activity entry of the request
	// could not be written, so the request was refused (fail closed).
	CodeActivityLogUnavailable = "ActivityLogUnavailable"
	// CodePasswordChangeRequired (403): the user must change the password
	// before doing anything else.
	CodePasswordChangeRequired = "PasswordChangeRequired"
)

// ErrorResponse is the body of every non-2xx API response:
// {"error":{"code":"...","message":"...","target":"..."}}.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// ErrorBody describes one failure. Message is safe to show to the caller; it
// never contains secrets.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Target  string `json:"target,omitempty"`
}

// APIError is an ErrorBody received by a client, with the HTTP status.
type APIError struct {
	Status int
	ErrorBody
	// RetryAfter is the server's Retry-After (429, 503): wait at least
	// this long before trying again. Zero when it sent none.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	if e.Target != "" {
		return fmt.Sprintf("%s: %s (%s)", e.Code, e.Message, e.Target)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Message)
}
