package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/corralhq/corral/internal/wire"
)

// decodeJSON reads exactly one JSON value into v from a size-limited body.
// Unknown fields, trailing data, a wrong content type, oversized bodies and
// a NUL character in any string (PostgreSQL text cannot keep one, and no
// name or setting needs one) are all refused with a clear error.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, v any) error {
	return decodeJSONBody(w, r, limit, v, true)
}

// decodeJSONBody is decodeJSON; refuseNUL false leaves NUL checks to the
// caller (agent report batches drop the one report that holds it).
func decodeJSONBody(w http.ResponseWriter, r *http.Request, limit int64, v any, refuseNUL bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return &apiError{status: http.StatusUnsupportedMediaType, code: wire.CodeUnsupportedMedia, message: "request body must be application/json"}
		}
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		return jsonError(err, limit)
	}
	if refuseNUL {
		if at := wire.NULInJSON(raw); at >= 0 {
			return errBadRequest(wire.CodeValidation, "", "request body holds a NUL character (\\u0000) in a string at byte %d; no field may contain one", at)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, limit)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		if err == nil {
			return errBadRequest(wire.CodeInvalidJSON, "", "request body must hold a single JSON value")
		}
		return jsonError(err, limit)
	}
	return nil
}

func jsonError(err error, limit int64) error {
	var tooBig *http.MaxBytesError
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &tooBig):
		return &apiError{status: http.StatusRequestEntityTooLarge, code: wire.CodeTooLarge, message: fmt.Sprintf("request body is larger than %d bytes", limit)}
	case errors.Is(err, io.EOF):
		return errBadRequest(wire.CodeInvalidJSON, "", "request body is empty; a JSON object is required")
	case errors.As(err, &syntax):
		return errBadRequest(wire.CodeInvalidJSON, "", "malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		return errBadRequest(wire.CodeInvalidJSON, typ.Field, "field %q must be %s", typ.Field, typ.Type)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errBadRequest(wire.CodeInvalidJSON, "", "malformed JSON: unexpected end of body")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return errBadRequest(wire.CodeInvalidJSON, field, "unknown field %q", field)
	default:
		return errBadRequest(wire.CodeInvalidJSON, "", "malformed JSON body")
	}
}

// parseForm parses an application/x-www-form-urlencoded body with a size limit.
func parseForm(w http.ResponseWriter, r *http.Request, limit int64) error {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return &apiError{status: http.StatusUnsupportedMediaType, code: wire.CodeUnsupportedMedia, message: "request body must be application/x-www-form-urlencoded"}
	}
	r.Body = http.MaxBytesReader(w, r.Body, limit)
	if err := r.ParseForm(); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &apiError{status: http.StatusRequestEntityTooLarge, code: wire.CodeTooLarge, message: fmt.Sprintf("request body is larger than %d bytes", limit)}
		}
		return errBadRequest(wire.CodeBadRequest, "", "malformed form body")
	}
	for k, vs := range r.PostForm {
		for _, v := range vs {
			if strings.ContainsRune(k, 0) || strings.ContainsRune(v, 0) {
				return errBadRequest(wire.CodeValidation, "", "form field %q holds a NUL character", printable(k, 64))
			}
		}
	}
	return nil
}
