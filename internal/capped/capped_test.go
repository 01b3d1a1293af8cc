package capped_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corralhq/corral/internal/capped"
)

func TestReadFile(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name string, n int) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(strings.Repeat("x", n)), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name    string
		size    int
		limit   int64
		tooBig  bool
		wantLen int
	}{
		{"empty", 0, 10, false, 0},
		{"under", 9, 10, false, 9},
		{"exactly the cap", 10, 10, false, 10},
		{"one over", 11, 10, true, 0},
		{"far over", 1 << 20, 10, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := write(tc.name, tc.size)
			b, err := capped.ReadFile(p, tc.limit)
			if tc.tooBig {
				if !errors.Is(err, capped.ErrTooLarge) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "10 bytes") {
					t.Fatalf("got %v, want ErrTooLarge naming %s and the limit", err, p)
				}
				return
			}
			if err != nil || len(b) != tc.wantLen {
				t.Fatalf("got %d bytes, %v; want %d bytes", len(b), err, tc.wantLen)
			}
		})
	}
	if _, err := capped.ReadFile(filepath.Join(dir, "missing"), 10); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v, want fs.ErrNotExist", err)
	}
}

func TestReadAll(t *testing.T) {
	t.Parallel()
	b, err := capped.ReadAll(strings.NewReader("hello"), 5, "standard input")
	if err != nil || string(b) != "hello" {
		t.Fatalf("got %q, %v", b, err)
	}
	_, err = capped.ReadAll(strings.NewReader("hello!"), 5, "standard input")
	if !errors.Is(err, capped.ErrTooLarge) || !strings.HasPrefix(err.Error(), "standard input is larger than allowed") {
		t.Fatalf("got %v", err)
	}
}
