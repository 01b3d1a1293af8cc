// Package capped reads files and streams whose size the reader does not
// control (CA bundles, settings documents, scripts, credentials) without
// ever holding more than a stated number of bytes: more than the cap is an
// error that names what was read and the cap, never a silent truncation.
//
// It is a leaf package of the standard library only, so the agent, the CLI
// and the server share it. The functions hold no state and are safe for
// concurrent use.
package capped

import (
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrTooLarge is wrapped by the error of a read that met more than its cap.
var ErrTooLarge = errors.New("larger than allowed")

// ReadFile returns the content of the file at path if it holds at most limit
// bytes. A larger file fails with an error wrapping ErrTooLarge that names
// path and limit; open and read errors are returned as the os package gives
// them (errors.Is(err, fs.ErrNotExist) still works).
func ReadFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAll(f, limit, path)
}

// ReadAll reads r to its end if it holds at most limit bytes. what names the
// source in the error ("standard input", a path): more than limit bytes
// fails with an error wrapping ErrTooLarge. It reads at most limit+1 bytes.
func ReadAll(r io.Reader, limit int64, what string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is %w: the limit is %d bytes", what, ErrTooLarge, limit)
	}
	return b, nil
}
