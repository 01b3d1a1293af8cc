package wire

import (
	"bytes"
	"encoding/json"
	"errors"
)

// ErrTrailingData is returned by DecodeStrict for a document that holds
// more than one JSON value.
var ErrTrailingData = errors.New("data after the JSON value")

// DecodeStrict decodes b, which must hold exactly one JSON value (spaces
// around it allowed), into v, refusing fields v does not have. It is the
// one strict decoding of documents from outside (report bodies, settings,
// manifests, catalogs): json.Decoder.More alone would let a stray "}" or
// "]" after the value through.
func DecodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if len(bytes.TrimLeft(b[dec.InputOffset():], " \t\r\n")) != 0 {
		return ErrTrailingData
	}
	return nil
}
