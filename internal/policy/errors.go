package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
)

// Sentinels callers branch on (errors.Is): both are client errors (HTTP 400).
var (
	// ErrInvalidDefinition: the definition cannot be parsed or uses a part
	// Corral does not support.
	ErrInvalidDefinition = errors.New("invalid policy definition")
	// ErrInvalidParameters: assignment parameter values do not fit the
	// definition's parameters (unknown name, wrong type, not allowed, missing).
	ErrInvalidParameters = errors.New("invalid policy parameters")
)

// PathError locates a problem in a JSON document: Path is like
// `properties.policyRule.if.allOf[1].field`.
type PathError struct {
	Path string
	Msg  string
	Kind error // ErrInvalidDefinition or ErrInvalidParameters
}

func (e *PathError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

func (e *PathError) Unwrap() error { return e.Kind }

func defErr(path, format string, args ...any) error {
	return &PathError{Path: path, Msg: fmt.Sprintf(format, args...), Kind: ErrInvalidDefinition}
}

func paramErr(path, format string, args ...any) error {
	return &PathError{Path: path, Msg: fmt.Sprintf(format, args...), Kind: ErrInvalidParameters}
}

// EvalError is a failure while evaluating (not parsing) a definition, e.g. a
// field name computed from a parameter that names no supported field.
type EvalError struct {
	Path string
	Err  error
}

func (e *EvalError) Error() string { return "evaluate " + e.Path + ": " + e.Err.Error() }
func (e *EvalError) Unwrap() error { return e.Err }

// jsonSyntaxError turns encoding/json's offset into a line and column.
func jsonSyntaxError(data []byte, err error, kind error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	off := int64(-1)
	switch {
	case errors.As(err, &se):
		off = se.Offset - 1 // Offset counts the offending byte
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 {
		return &PathError{Msg: "invalid JSON: " + err.Error(), Kind: kind}
	}
	line, col := 1, 1
	for i := int64(0); i < off && i < int64(len(data)); i++ {
		if data[i] == '\n' {
			line++
			col = 1
		} else {
			col++
		}
	}
	return &PathError{Msg: "invalid JSON at line " + strconv.Itoa(line) + ", column " + strconv.Itoa(col) + ": " + err.Error(), Kind: kind}
}
