package sigset

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"fmt"
	"io"

	"github.com/corralhq/corral/internal/scan"
)

// AddVerified verifies set with pub and adds its signatures to b, with
// those b already holds (the built-in signature, ClamAV files given on the
// command line). On error b may hold part of the set: callers discard it.
func AddVerified(b *scan.Builder, pub ed25519.PublicKey, set []byte) (Header, error) {
	h, body, err := Verify(pub, set)
	if err != nil {
		return h, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return h, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	tr := tar.NewReader(io.LimitReader(zr, maxUnpacked))
	for {
		th, err := tr.Next()
		if err == io.EOF {
			return h, nil
		}
		if err != nil {
			return h, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		var f scan.Format
		for _, s := range sections {
			if th.Name == s.name {
				f = s.f
			}
		}
		if f == 0 || th.Typeflag != tar.TypeReg {
			return h, fmt.Errorf("%w: unexpected entry %q", ErrMalformed, th.Name)
		}
		if err := b.Add(th.Name, f, tr); err != nil {
			return h, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
}
