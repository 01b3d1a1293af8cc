package scan

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/bzip2"
	"compress/flate"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

type archiveKind int

const (
	notArchive archiveKind = iota
	kindZip
	kindTar
	kindGzip
	kindBzip2
)

func sniff(b []byte) archiveKind {
	switch {
	case len(b) >= 4 && string(b[:4]) == "PK\x03\x04", len(b) >= 4 && string(b[:4]) == "PK\x05\x06":
		return kindZip
	case len(b) >= 3 && b[0] == 0x1f && b[1] == 0x8b && b[2] == 8:
		return kindGzip
	case len(b) >= 10 && string(b[:3]) == "BZh" && b[3] >= '1' && b[3] <= '9' && string(b[4:10]) == "\x31\x41\x59\x26\x53\x59":
		return kindBzip2
	case len(b) >= 512 && string(b[257:262]) == "ustar":
		return kindTar
	}
	return notArchive
}

// errBomb and errTooBig end the reading of one member.
var (
	errBomb   = errors.New("decompression bomb")
	errTooBig = errors.New("member too large")
	errTotal  = errors.New("total limit")
)

// archive opens data if it is an archive and scans each member.
func (s *objScan) archive(data []byte, member, base string, depth int) {
	kind := sniff(data)
	if kind == notArchive || s.stopped {
		return
	}
	lim := s.e.opt.Limits
	if depth >= lim.MaxDepth {
		s.note(member, "archive nested deeper than %d levels, not opened", lim.MaxDepth)
		return
	}
	switch kind {
	case kindZip:
		s.zip(data, member, depth)
	case kindTar:
		s.tar(data, member, base, depth)
	case kindGzip:
		in := &countingReader{r: bytes.NewReader(data)}
		zr, err := gzip.NewReader(in)
		if err != nil {
			s.note(member, "gzip: %v", err)
			return
		}
		name := zr.Name
		if name == "" {
			name = "(gzip)"
		}
		// The trailer holds the size modulo 2^32: a hint for the buffer.
		hint := int64(binary.LittleEndian.Uint32(data[len(data)-4:]))
		s.stream(zr, in, hint, member, name, depth)
	case kindBzip2:
		in := &countingReader{r: bytes.NewReader(data)}
		s.stream(bzip2.NewReader(in), in, 0, member, "(bzip2)", depth)
	}
}

// stream scans the decompressed content of a single-stream compressor
// (gzip, bzip2). The content is named member!name; a tar inside names its
// members after member (x.tar.gz!dir/file, not x.tar.gz!(gzip)!dir/file).
func (s *objScan) stream(r io.Reader, in *countingReader, hint int64, member, name string, depth int) {
	out, err := s.inflate(r, in, hint)
	inner := joinMember(member, "!", name)
	if s.limitHit(err, inner, out) {
		return
	}
	if err != nil {
		s.note(inner, "%v", err)
	}
	s.object(out, inner, member, depth+1)
}

// limitHit handles the end of a member's decompression; it reports
// whether the member must be skipped.
func (s *objScan) limitHit(err error, member string, out []byte) bool {
	lim := s.e.opt.Limits
	switch {
	case errors.Is(err, errBomb):
		s.add(member, BombName, KindBomb, out)
		s.note(member, "decompresses past %d:1 after %d bytes: decompression bomb, not followed", lim.MaxRatio, len(out))
		return true
	case errors.Is(err, errTooBig):
		s.note(member, "larger than %d bytes, not scanned", lim.MaxMemberBytes)
		return true
	case errors.Is(err, errTotal):
		s.note(member, "archive content past %d bytes in total, rest not scanned", lim.MaxTotalBytes)
		s.stopped = true
		return true
	}
	return false
}

// countingReader counts the compressed bytes a decompressor consumed, so
// that the ratio is judged on what was read so far, not on the whole
// archive: a bomb is stopped within RatioFloor of output.
type countingReader struct {
	r *bytes.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// inflate reads a member, enforcing the ratio, size and total limits as it
// goes so that a bomb is never followed past the point it is recognised.
// in counts the compressed bytes consumed (nil: stored data, no ratio).
// hint is the expected size (from headers, not trusted beyond a buffer
// size within the limits).
func (s *objScan) inflate(r io.Reader, in *countingReader, hint int64) ([]byte, error) {
	lim := s.e.opt.Limits
	buf := make([]byte, 0, max(64<<10, min(hint+1, lim.MaxMemberBytes+1, lim.RatioFloor*4)))
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		// Read in steps of at most 256 KiB so the ratio is checked often.
		n, err := r.Read(buf[len(buf):min(cap(buf), len(buf)+256<<10)])
		buf = buf[:len(buf)+n]
		s.total += int64(n)
		out := int64(len(buf))
		switch {
		case in != nil && out > lim.RatioFloor && out > max(in.n, 1)*lim.MaxRatio:
			return buf, errBomb
		case out > lim.MaxMemberBytes:
			return buf, errTooBig
		case s.total > lim.MaxTotalBytes:
			return buf, errTotal
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, fmt.Errorf("corrupt compressed data after %d bytes: %w", len(buf), err)
		}
	}
}

func (s *objScan) zip(data []byte, member string, depth int) {
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		s.note(member, "zip: %v", err)
		return
	}
	lim := s.e.opt.Limits
	for i, f := range zr.File {
		if s.stopped {
			return
		}
		if i >= lim.MaxMembers {
			s.note(member, "more than %d members, rest not scanned", lim.MaxMembers)
			return
		}
		if f.FileInfo().IsDir() {
			continue
		}
		name := joinMember(member, "!", f.Name)
		if f.Flags&1 != 0 {
			s.note(name, "encrypted, not scanned")
			continue
		}
		raw, err := f.OpenRaw()
		if err != nil {
			s.note(name, "zip member: %v", err)
			continue
		}
		in := &countingReader{r: bytes.NewReader(nil)}
		var rd io.Reader
		switch f.Method {
		case zip.Store:
			rd, in = raw, nil
		case zip.Deflate:
			in.r = sectionBytes(data, raw)
			rd = flate.NewReader(in)
		case 12: // bzip2
			in.r = sectionBytes(data, raw)
			rd = bzip2.NewReader(in)
		default:
			s.note(name, "compression method %d not supported, not scanned", f.Method)
			continue
		}
		out, err := s.inflate(rd, in, int64(min(f.UncompressedSize64, 1<<40)))
		if s.limitHit(err, name, out) {
			continue
		}
		if err != nil {
			s.note(name, "%v", err)
		}
		s.object(out, name, name, depth+1)
	}
}

func (s *objScan) tar(data []byte, member, base string, depth int) {
	br := bytes.NewReader(data)
	tr := tar.NewReader(br)
	lim := s.e.opt.Limits
	for i := 0; !s.stopped; i++ {
		h, err := tr.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			s.note(member, "tar: %v", err)
			return
		}
		if i >= lim.MaxMembers {
			s.note(member, "more than %d members, rest not scanned", lim.MaxMembers)
			return
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA {
			continue
		}
		name := joinMember(base, "!", h.Name)
		if h.Size > lim.MaxMemberBytes {
			s.note(name, "larger than %d bytes, not scanned", lim.MaxMemberBytes)
			continue
		}
		if s.total += h.Size; s.total > lim.MaxTotalBytes {
			s.note(member, "archive content past %d bytes in total, rest not scanned", lim.MaxTotalBytes)
			s.stopped = true
			return
		}
		var body []byte
		off := br.Size() - int64(br.Len())
		if !sparse(h) && off+h.Size <= int64(len(data)) {
			body = data[off : off+h.Size : off+h.Size] // tar members are stored: no copy
		} else {
			body = make([]byte, h.Size)
			if _, err := io.ReadFull(tr, body); err != nil {
				s.note(name, "tar member: %v", err)
				return
			}
		}
		s.object(body, name, name, depth+1)
	}
}

func sparse(h *tar.Header) bool {
	for k := range h.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// sectionBytes returns a reader over the compressed bytes of a zip member
// (OpenRaw gives an io.SectionReader of data).
func sectionBytes(data []byte, raw io.Reader) *bytes.Reader {
	if sr, ok := raw.(*io.SectionReader); ok {
		if _, off, n := sr.Outer(); off >= 0 && off+n <= int64(len(data)) {
			return bytes.NewReader(data[off : off+n])
		}
	}
	b, _ := io.ReadAll(raw)
	return bytes.NewReader(b)
}
