package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/store"
	"github.com/corralhq/corral/internal/wire"
)

// apiError is an error with an HTTP status and a caller-safe message.
type apiError struct {
	status  int
	code    string
	message string
	target  string
	cause   error // logged, never shown
	// retryAfter is sent as Retry-After (whole seconds, at least 1).
	retryAfter time.Duration
	// paced marks a refusal by design under load (admission pacing, the
	// password-hash gate): counted in metrics, logged at debug, not as a
	// failure — a reconnect storm would otherwise log thousands of errors.
	paced bool
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.code, e.message, e.cause)
	}
	return e.code + ": " + e.message
}

func (e *apiError) Unwrap() error { return e.cause }

func errBadRequest(code, target, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: code, target: target, message: fmt.Sprintf(format, args...)}
}

func errValidation(target, format string, args ...any) *apiError {
	return errBadRequest(wire.CodeValidation, target, format, args...)
}

func errNotFound(format string, args ...any) *apiError {
	return &apiError{status: http.StatusNotFound, code: wire.CodeNotFound, message: fmt.Sprintf(format, args...)}
}

func errUnauthenticated(format string, args ...any) *apiError {
	return &apiError{status: http.StatusUnauthorized, code: wire.CodeUnauthenticated, message: fmt.Sprintf(format, args...)}
}

func errForbidden(format string, args ...any) *apiError {
	return &apiError{status: http.StatusForbidden, code: wire.CodeForbidden, message: fmt.Sprintf(format, args...)}
}

// toAPIError maps any error to what the caller sees. Refusals of the
// contexts keep their message; store sentinels become 404/409; anything
// unknown is a 500 whose detail is only logged.
func toAPIError(err error) *apiError {
	var ae *apiError
	if re, ok := refusal.As(err); ok {
		return refusalError(re)
	}
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, store.ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: wire.CodeNotFound, message: "the resource was not found", cause: err}
	case errors.Is(err, store.ErrConflict):
		return &apiError{status: http.StatusConflict, code: wire.CodeConflict, message: "the resource already exists or was changed concurrently", cause: err}
	case errors.Is(err, store.ErrNotEmpty):
		return &apiError{status: http.StatusConflict, code: wire.CodeConflict, message: "the resource still has children; delete them first", cause: err}
	case errors.Is(err, store.ErrFull):
		return errStoreFull(err)
	case errors.Is(err, store.ErrUnavailable):
		return errStoreUnavailable(err)
	case errors.Is(err, store.ErrInvalidData):
		return &apiError{status: http.StatusBadRequest, code: wire.CodeValidation, cause: err,
			message: "the request holds a value the store cannot keep (for example a NUL character); nothing was changed"}
	default:
		return &apiError{status: http.StatusInternalServerError, code: wire.CodeInternal, message: "internal error; see the server log with the correlation id", cause: err}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	_ = enc.Encode(v) // the client went away; nothing useful to do
}

func writeError(w http.ResponseWriter, ae *apiError) {
	setRetryAfter(w, ae.retryAfter)
	writeJSON(w, ae.status, wire.ErrorResponse{Error: wire.ErrorBody{Code: ae.code, Message: ae.message, Target: ae.target}})
}

// setRetryAfter sets Retry-After in whole seconds (rounded up, at least 1)
// when d > 0.
func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(max((d+time.Second-1)/time.Second, 1))))
	}
}

// errStoreFull is the answer while the store has no space left to write.
func errStoreFull(cause error) *apiError {
	return &apiError{status: http.StatusInsufficientStorage, code: wire.CodeInsufficientStorage, cause: cause, retryAfter: 30 * time.Second,
		message: "the control plane's store has no space left to write; nothing was changed. An operator must free disk space on the server (or its database)"}
}

// errStoreUnavailable is the answer while the store (PostgreSQL) cannot be
// reached.
func errStoreUnavailable(cause error) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, code: wire.CodeUnavailable, cause: cause, retryAfter: 5 * time.Second,
		message: "the control plane cannot reach its store (database) right now; try again later. A change sent meanwhile was not acknowledged: check before repeating it"}
}

// refusalStatus is the HTTP status and default wire code of each kind of
// refusal.
var refusalStatus = []struct {
	kind   error
	status int
	code   string
}{
	{refusal.ErrInvalid, http.StatusBadRequest, wire.CodeValidation},
	{refusal.ErrNotFound, http.StatusNotFound, wire.CodeNotFound},
	{refusal.ErrConflict, http.StatusConflict, wire.CodeConflict},
	{refusal.ErrUnauthenticated, http.StatusUnauthorized, wire.CodeUnauthenticated},
	{refusal.ErrTooMany, http.StatusTooManyRequests, wire.CodeTooManyRequests},
}

// refusalError maps a context's refusal to the API error the caller sees.
func refusalError(re *refusal.Error) *apiError {
	for _, k := range refusalStatus {
		if errors.Is(re.Kind, k.kind) {
			code := re.Code
			if code == "" {
				code = k.code
			}
			return &apiError{status: k.status, code: code, message: re.Message, target: re.Target, retryAfter: re.RetryAfter}
		}
	}
	return &apiError{status: http.StatusInternalServerError, code: wire.CodeInternal,
		message: "internal error; see the server log with the correlation id", cause: re}
}
