package schedule

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Maintenance window bounds.
const (
	MinWindow     = 60 * time.Minute
	MaxWindow     = 235 * time.Minute
	DefaultWindow = MaxWindow
)

// ErrBadWindow is returned for a maintenance window outside 60–235 minutes.
var ErrBadWindow = errors.New("bad maintenance window")

// ValidateWindow checks that d is between MinWindow and MaxWindow.
func ValidateWindow(d time.Duration) error {
	if d < MinWindow || d > MaxWindow {
		return fmt.Errorf("%w %s: want between 60 and 235 minutes", ErrBadWindow, formatMinutes(d))
	}
	return nil
}

// ParseWindow reads a window as a Go duration ("120m", "2h30m") or a bare
// number of minutes ("120"); "" is DefaultWindow. The result is validated.
func ParseWindow(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return DefaultWindow, nil
	}
	var d time.Duration
	if n, err := strconv.Atoi(s); err == nil {
		// Bounded before the multiplication, which would wrap a huge n
		// around into the accepted range.
		d = time.Duration(min(max(n, -1), int(MaxWindow/time.Minute)+1)) * time.Minute
	} else if d, err = time.ParseDuration(s); err != nil {
		return 0, fmt.Errorf("%w %q: want minutes such as 120m", ErrBadWindow, s)
	}
	if err := ValidateWindow(d); err != nil {
		return 0, err
	}
	return d, nil
}

func formatMinutes(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", int64(d/time.Minute))
	}
	return d.String()
}
