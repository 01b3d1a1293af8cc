// Package sigset is the signed signature set the server distributes to
// protected machines.
//
// The server imports ClamAV .hdb/.hsb/.ndb files (Build): every line is
// checked and normalised (scan.NormalizeLine); a malformed line fails the
// import with its file and line; unsupported lines are counted in the
// header, not shipped. The set is one file:
//
//	"CORRAL-SIGSET 1\n" | header length (4 bytes, big endian) | header JSON |
//	ed25519 signature (64 bytes) over magic+length+header | body
//
// where the body is a gzip-compressed tar of signatures.hdb, .hsb and .ndb
// and the header (version, time, counts, sources) carries the body's size
// and SHA-256, so one signature covers everything. The publisher key signs
// like extension catalogs do (internal/extpkg): the agent verifies with a
// key pinned in its configuration before it parses anything.
//
// Distribution is whole-file: a million signatures compress to a few tens
// of MB; deltas are not implemented. Store.Install verifies and loads a new
// set completely before it replaces the current one, refuses an older
// version, and keeps the previous set on any failure. Nothing here trusts
// its input: every function fails closed.
package sigset

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/corralhq/corral/internal/scan"
)

const magic = "CORRAL-SIGSET 1\n"

// Limits on what Verify accepts.
const (
	maxHeader   = 1 << 20
	maxUnpacked = 2 << 30
)

// Errors callers branch on.
var (
	ErrBadSignature = errors.New("signature set does not verify with the pinned key")
	ErrMalformed    = errors.New("malformed signature set")
	ErrOlder        = errors.New("signature set is older than the installed one")
)

// Header describes a set.
type Header struct {
	Version        uint64    `json:"version"`
	Created        time.Time `json:"created"`
	HashSignatures int       `json:"hashSignatures"`
	BodySignatures int       `json:"bodySignatures"`
	Unsupported    int       `json:"unsupported"` // lines of the sources not shipped
	Sources        []string  `json:"sources"`     // base names of the imported files
	BodySize       int64     `json:"bodySize"`
	BodySHA256     string    `json:"bodySha256"`
}

// Total is the number of signatures in the set.
func (h Header) Total() int { return h.HashSignatures + h.BodySignatures }

var sections = []struct {
	name string
	f    scan.Format
}{{"signatures.hdb", scan.FormatHDB}, {"signatures.hsb", scan.FormatHSB}, {"signatures.ndb", scan.FormatNDB}}

// Build imports ClamAV signature files into a signed set. unsupported
// lists the lines not shipped (at most 100, all counted in the header).
func Build(priv ed25519.PrivateKey, version uint64, created time.Time, files ...string) (set []byte, h Header, unsupported []scan.UnsupportedLine, err error) {
	out := map[scan.Format]*bytes.Buffer{scan.FormatHDB: {}, scan.FormatHSB: {}, scan.FormatNDB: {}}
	h = Header{Version: version, Created: created.UTC()}
	for _, path := range files {
		f, err := scan.FormatOf(path)
		if err != nil {
			return nil, h, nil, err
		}
		if err := normalizeFile(path, f, out, &h, &unsupported); err != nil {
			return nil, h, nil, err
		}
		h.Sources = append(h.Sources, filepath.Base(path))
	}
	var body bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&body, gzip.BestCompression)
	tw := tar.NewWriter(zw)
	for _, s := range sections {
		b := out[s.f].Bytes()
		if err := tw.WriteHeader(&tar.Header{Name: s.name, Mode: 0o644, Size: int64(len(b)), ModTime: h.Created}); err != nil {
			return nil, h, nil, err
		}
		tw.Write(b)
	}
	if err := tw.Close(); err != nil {
		return nil, h, nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, h, nil, err
	}
	sum := sha256.Sum256(body.Bytes())
	h.BodySize, h.BodySHA256 = int64(body.Len()), hex.EncodeToString(sum[:])
	hj, err := json.Marshal(h)
	if err != nil {
		return nil, h, nil, err
	}
	signed := make([]byte, 0, len(magic)+4+len(hj))
	signed = append(binary.BigEndian.AppendUint32(append(signed, magic...), uint32(len(hj))), hj...)
	set = append(append(signed, ed25519.Sign(priv, signed)...), body.Bytes()...)
	return set, h, unsupported, nil
}

func normalizeFile(path string, f scan.Format, out map[scan.Format]*bytes.Buffer, h *Header, unsupported *[]scan.UnsupportedLine) error {
	r, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	// Stage per file: a malformed file contributes nothing.
	staged := map[scan.Format]*bytes.Buffer{scan.FormatHDB: {}, scan.FormatHSB: {}, scan.FormatNDB: {}}
	var nh, nb, nu int
	var unsup []scan.UnsupportedLine
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if line == "" {
			continue
		}
		norm, to, err := scan.NormalizeLine(f, line)
		if errors.Is(err, scan.ErrUnsupported) {
			nu++
			if len(*unsupported)+len(unsup) < 100 {
				unsup = append(unsup, scan.UnsupportedLine{File: path, Line: n, Reason: strings.TrimPrefix(err.Error(), scan.ErrUnsupported.Error()+": ")})
			}
			continue
		}
		if err != nil {
			return &scan.ParseError{File: path, Line: n, Err: err}
		}
		staged[to].WriteString(norm + "\n")
		if to == scan.FormatNDB {
			nb++
		} else {
			nh++
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("import %s: %w", path, err)
	}
	for k, b := range staged {
		out[k].Write(b.Bytes())
	}
	h.HashSignatures += nh
	h.BodySignatures += nb
	h.Unsupported += nu
	*unsupported = append(*unsupported, unsup...)
	return nil
}

// Verify checks set against the pinned key and returns its header and
// compressed body; nothing is parsed before the signature checks out.
func Verify(pub ed25519.PublicKey, set []byte) (Header, []byte, error) {
	var h Header
	if len(pub) != ed25519.PublicKeySize {
		return h, nil, errors.New("no valid pinned ed25519 key for signature sets")
	}
	if len(set) < len(magic)+4 || string(set[:len(magic)]) != magic {
		return h, nil, fmt.Errorf("%w: not a Corral signature set", ErrMalformed)
	}
	hl := binary.BigEndian.Uint32(set[len(magic):])
	end := len(magic) + 4 + int(hl)
	if hl > maxHeader || len(set) < end+ed25519.SignatureSize {
		return h, nil, fmt.Errorf("%w: truncated header", ErrMalformed)
	}
	if !ed25519.Verify(pub, set[:end], set[end:end+ed25519.SignatureSize]) {
		return h, nil, ErrBadSignature
	}
	dec := json.NewDecoder(bytes.NewReader(set[len(magic)+4 : end]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&h); err != nil {
		return h, nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	body := set[end+ed25519.SignatureSize:]
	sum := sha256.Sum256(body)
	if int64(len(body)) != h.BodySize || hex.EncodeToString(sum[:]) != h.BodySHA256 {
		return h, nil, fmt.Errorf("%w: the body does not match its signed digest", ErrBadSignature)
	}
	return h, body, nil
}

// Load verifies set and loads it into a DB (with the built-in EICAR
// signature unless noBuiltin). The counts must match the header.
func Load(pub ed25519.PublicKey, set []byte, noBuiltin bool) (*scan.DB, Header, error) {
	h, body, err := Verify(pub, set)
	if err != nil {
		return nil, h, err
	}
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return nil, h, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	tr := tar.NewReader(io.LimitReader(zr, maxUnpacked))
	b := scan.NewBuilder(noBuiltin)
	seen := 0
	for {
		th, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, h, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		var f scan.Format
		for _, s := range sections {
			if th.Name == s.name {
				f = s.f
			}
		}
		if f == 0 || th.Typeflag != tar.TypeReg {
			return nil, h, fmt.Errorf("%w: unexpected entry %q", ErrMalformed, th.Name)
		}
		if err := b.Add(th.Name, f, tr); err != nil {
			return nil, h, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		seen++
	}
	db := b.Build()
	st := db.Stats()
	if seen != len(sections) || st.HashSignatures != h.HashSignatures || st.BodySignatures-st.Builtin != h.BodySignatures || st.Unsupported != 0 {
		return nil, h, fmt.Errorf("%w: holds %d hash and %d body signatures, header says %d and %d",
			ErrMalformed, st.HashSignatures, st.BodySignatures-st.Builtin, h.HashSignatures, h.BodySignatures)
	}
	return db, h, nil
}
