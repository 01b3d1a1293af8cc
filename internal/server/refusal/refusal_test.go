package refusal_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/corralhq/corral/internal/server/refusal"
)

func TestKinds(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err  error
		kind error
		msg  string
	}{
		{refusal.Invalid("name", "name %q is bad", "x y"), refusal.ErrInvalid, `name "x y" is bad`},
		{refusal.NotFound("machine %q was not found", "m"), refusal.ErrNotFound, `machine "m" was not found`},
		{refusal.Conflict("exists"), refusal.ErrConflict, "exists"},
		{refusal.Unauthenticated("wrong password"), refusal.ErrUnauthenticated, "wrong password"},
	} {
		wrapped := fmt.Errorf("set extension: %w", tc.err)
		if !errors.Is(wrapped, tc.kind) {
			t.Errorf("%v: not of kind %v", tc.err, tc.kind)
		}
		e, ok := refusal.As(wrapped)
		if !ok || e.Message != tc.msg {
			t.Errorf("As(%v) = %+v, %v; want message %q", wrapped, e, ok, tc.msg)
		}
		for _, other := range []error{refusal.ErrInvalid, refusal.ErrNotFound, refusal.ErrConflict, refusal.ErrUnauthenticated} {
			if other != tc.kind && errors.Is(tc.err, other) {
				t.Errorf("%v is also of kind %v", tc.err, other)
			}
		}
	}
	if e := refusal.Invalid("x", "bad").WithCode("UnsupportedProtocolVersion"); e.Code != "UnsupportedProtocolVersion" || e.Target != "x" {
		t.Errorf("WithCode: %+v", e)
	}
	if _, ok := refusal.As(errors.New("internal")); ok {
		t.Error("an internal error is taken for a refusal")
	}
}
