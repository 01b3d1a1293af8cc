package capability

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/corralhq/corral/internal/server/refusal"
	"github.com/corralhq/corral/internal/wire"
)

// FuzzDecodeReport: a report body DecodeReport accepts is exactly one JSON
// value whose fields the kind's type knows, and the value encodes back to
// a body it accepts as the same value; anything else is a refusal.ErrInvalid
// (the report is dropped, never retried).
func FuzzDecodeReport(f *testing.F) {
	for _, s := range []string{
		`{"generation":3}`, `{"osName":"debian","ipAddresses":["10.0.0.1"]}`, `{"name":"rc","state":"Succeeded"}`,
		`{"generation":3} {}`, `{"generation":3}}`, `{"generation":3}]`, `{"generation":3}  ` + "\n", ``, `null`, `[]`,
		`{"unknown":1}`, `{"generation":1e30}`,
	} {
		for kind := range uint8(3) {
			f.Add(kind, []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		newV := []func() any{
			func() any { return new(wire.AppliedState) },
			func() any { return new(wire.MachineProperties) },
			func() any { return new(wire.ExtensionStatus) },
		}[int(kind)%3]
		v := newV()
		err := DecodeReport(wire.Report{ID: "r", Body: body}, v)
		if err != nil {
			if !errors.Is(err, refusal.ErrInvalid) {
				t.Fatalf("body %q refused with %v, not a refusal.ErrInvalid", body, err)
			}
			return
		}
		if !json.Valid(body) {
			t.Fatalf("body %q accepted but is not exactly one JSON value", body)
		}
		enc, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		again := newV()
		if err := DecodeReport(wire.Report{ID: "r", Body: enc}, again); err != nil {
			t.Fatalf("accepted value encodes as %s, which is refused: %v", enc, err)
		}
		if enc2, _ := json.Marshal(again); !bytes.Equal(enc, enc2) {
			t.Fatalf("value encodes as %s, then as %s", enc, enc2)
		}
	})
}
