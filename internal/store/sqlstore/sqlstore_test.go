package sqlstore

import (
	"testing"
	"time"
)

func TestNumberedPlaceholders(t *testing.T) {
	t.Parallel()
	s := &Store{d: Dialect{NumberedPlaceholders: true}}
	for _, tc := range []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`a = ? AND b = ?`, `a = $1 AND b = $2`},
		{`x LIKE '%?' || ? ESCAPE '\'`, `x LIKE '%?' || $1 ESCAPE '\'`},
		{`lower(?) || '/%' ESCAPE '\' AND y = ?`, `lower($1) || '/%' ESCAPE '\' AND y = $2`},
	} {
		if got := s.q(tc.in); got != tc.want {
			t.Errorf("q(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	plain := &Store{d: Dialect{}}
	if got := plain.q(`a = ?`); got != `a = ?` {
		t.Errorf("q without numbered placeholders = %q", got)
	}
}

func TestEscapeLike(t *testing.T) {
	t.Parallel()
	if got, want := escapeLike(`a_b%c\d`), `a\_b\%c\\d`; got != want {
		t.Errorf("escapeLike = %q, want %q", got, want)
	}
}

func TestTimeRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tt := range []time.Time{
		{},
		time.Date(2026, 11, 24, 8, 0, 0, 123_456_000, time.FixedZone("X", 5*3600)),
		time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		got := fromMicros(micros(tt))
		if !got.Equal(tt) || got.Location() != time.UTC {
			t.Errorf("round trip of %v = %v", tt, got)
		}
	}
	if got := fromMicros(micros(time.Time{})); got != (time.Time{}) {
		t.Errorf("zero time came back as %#v", got)
	}
}
