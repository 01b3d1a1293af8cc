package scan

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Format is a signature file format.
type Format int

// The ClamAV formats the engine imports as they are.
const (
	FormatHDB Format = iota + 1 // MD5:size:name (any digest length is accepted)
	FormatHSB                   // SHA1|SHA256:size|*:name
	FormatNDB                   // name:target:offset:hexsig[:minflevel[:maxflevel]]
)

// FormatOf tells a signature file's format from its extension.
func FormatOf(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".hdb":
		return FormatHDB, nil
	case ".hsb":
		return FormatHSB, nil
	case ".ndb":
		return FormatNDB, nil
	}
	return 0, fmt.Errorf("%s: unsupported signature file type (want .hdb, .hsb or .ndb)", path)
}

// EICARName is the name of the built-in EICAR test signature.
const EICARName = "Eicar-Test-Signature"

// eicar is the EICAR anti-virus test string, built from parts so that this
// source file is not itself detected.
var eicar = `X5O!P%@AP[4\PZX54(P^)7CC)7}$` + `EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*`

// EICAR returns the EICAR test string (68 bytes).
func EICAR() []byte { return []byte(eicar) }

// maxUnsupportedLines bounds how many unsupported lines LoadStats lists.
const maxUnsupportedLines = 100

// LoadStats says what a DB holds and what it could not use.
type LoadStats struct {
	Files            []string          `json:"files,omitempty"`
	HashSignatures   int               `json:"hashSignatures"`
	BodySignatures   int               `json:"bodySignatures"`
	Builtin          int               `json:"builtin"`
	Unsupported      int               `json:"unsupported"`
	UnsupportedLines []UnsupportedLine `json:"unsupportedLines,omitempty"` // the first 100
}

// Total is the number of signatures loaded.
func (s LoadStats) Total() int { return s.HashSignatures + s.BodySignatures }

// UnsupportedLine is a valid ClamAV line that uses a feature this engine
// does not implement (another target type, an executable-relative offset,
// negated alternatives...). It is counted, never silently dropped.
type UnsupportedLine struct {
	File   string `json:"file"`
	Line   int    `json:"line"`
	Reason string `json:"reason"`
}

// ParseError is a malformed signature line; the file it is in loads nothing.
type ParseError struct {
	File string
	Line int
	Err  error
}

func (e *ParseError) Error() string {
	return fmt.Sprintf("%s:%d: %v (nothing loaded from this file)", e.File, e.Line, e.Err)
}

func (e *ParseError) Unwrap() error { return e.Err }

// DB is a loaded signature database. It is immutable and safe for
// concurrent use by any number of scans.
type DB struct {
	names  [][]byte // name arena in 1 MiB chunks: length byte + bytes; ref = chunk<<20 | offset
	md5    hashTable[[16]byte]
	sha1   hashTable[[20]byte]
	sha256 hashTable[[32]byte]
	toks   []tok
	lits   []byte
	sigs   []bodySig
	body   matcher
	stats  LoadStats
}

// Stats returns what was loaded.
func (db *DB) Stats() LoadStats { return db.stats }

const nameChunk = 1 << 20

func (db *DB) name(ref uint32) string {
	c := db.names[ref>>20]
	off := ref & (nameChunk - 1)
	n := uint32(c[off])
	return string(c[off+1 : off+1+n])
}

// Builder collects signatures into a DB. It is not safe for concurrent use;
// Build may be called once.
type Builder struct {
	db         DB
	wa, wb, wc []window
}

// NewBuilder returns a Builder; unless noBuiltin, it holds the EICAR test
// signature.
func NewBuilder(noBuiltin bool) *Builder {
	b := &Builder{}
	if !noBuiltin {
		line := EICARName + ":0:0:" + hex.EncodeToString(EICAR())
		if err := b.addLine(FormatNDB, "builtin", 1, []byte(line)); err != nil {
			panic("built-in EICAR signature: " + err.Error())
		}
		b.db.stats.Builtin = 1
	}
	return b
}

// LoadFiles builds a DB from signature files; see NewBuilder.
func LoadFiles(noBuiltin bool, paths ...string) (*DB, error) {
	b := NewBuilder(noBuiltin)
	for _, p := range paths {
		if err := b.AddFile(p); err != nil {
			return nil, err
		}
	}
	return b.Build(), nil
}

// AddFile adds a signature file whose format follows from its extension.
func (b *Builder) AddFile(path string) error {
	f, err := FormatOf(path)
	if err != nil {
		return err
	}
	r, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open signatures: %w", err)
	}
	defer r.Close()
	if fi, err := r.Stat(); err == nil {
		b.reserve(f, fi.Size())
	}
	return b.Add(path, f, r)
}

// reserve grows the tables for a file of size bytes so that loading a
// million signatures does not copy them on the way (peak memory).
func (b *Builder) reserve(f Format, size int64) {
	d := &b.db
	switch f {
	case FormatHDB:
		n := int(size / 60) // a digest, a size and a typical name
		d.md5.entries = slices.Grow(d.md5.entries, n)
	case FormatHSB:
		d.sha256.entries = slices.Grow(d.sha256.entries, int(size/90))
	}
}

// Add adds every line of r in format f; name labels errors. A malformed
// line (or a read error) fails the whole file: the DB keeps nothing of it.
func (b *Builder) Add(name string, f Format, r io.Reader) error {
	snap := b.snapshot()
	br := bufio.NewReaderSize(r, 1<<20)
	for n := 1; ; n++ {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			b.restore(snap)
			return &ParseError{File: name, Line: n, Err: errors.New("line longer than 1 MiB")}
		}
		if err != nil && err != io.EOF {
			b.restore(snap)
			return fmt.Errorf("read %s: %w", name, err)
		}
		if err == io.EOF && len(line) == 0 {
			break
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) > 0 {
			if perr := b.addLine(f, name, n, line); perr != nil {
				b.restore(snap)
				return perr
			}
		}
		if err == io.EOF {
			break
		}
	}
	b.db.stats.Files = append(b.db.stats.Files, name)
	return nil
}

type snapshot struct {
	chunks, last, md5, sha1, sha256, toks, lits, sigs, wa, wb, wc int
	stats                                                         LoadStats
}

func (b *Builder) snapshot() snapshot {
	d := &b.db
	last := 0
	if len(d.names) > 0 {
		last = len(d.names[len(d.names)-1])
	}
	return snapshot{len(d.names), last, len(d.md5.entries), len(d.sha1.entries), len(d.sha256.entries), len(d.toks),
		len(d.lits), len(d.sigs), len(b.wa), len(b.wb), len(b.wc), d.stats}
}

func (b *Builder) restore(s snapshot) {
	d := &b.db
	d.names = d.names[:s.chunks]
	if s.chunks > 0 {
		d.names[s.chunks-1] = d.names[s.chunks-1][:s.last]
	}
	d.md5.entries, d.sha1.entries, d.sha256.entries = d.md5.entries[:s.md5], d.sha1.entries[:s.sha1], d.sha256.entries[:s.sha256]
	d.toks, d.lits, d.sigs = d.toks[:s.toks], d.lits[:s.lits], d.sigs[:s.sigs]
	b.wa, b.wb, b.wc = b.wa[:s.wa], b.wb[:s.wb], b.wc[:s.wc]
	d.stats = s.stats
	d.stats.UnsupportedLines = d.stats.UnsupportedLines[:len(s.stats.UnsupportedLines):len(s.stats.UnsupportedLines)]
}

func (b *Builder) addName(name []byte) (uint32, error) {
	if len(name) == 0 {
		return 0, errors.New("empty signature name")
	}
	if len(name) > 255 {
		return 0, errors.New("signature name longer than 255 bytes")
	}
	d := &b.db
	if len(d.names) == 0 || len(d.names[len(d.names)-1])+1+len(name) > nameChunk {
		if len(d.names) == 1<<12 {
			return 0, errors.New("more than 4 GiB of signature names")
		}
		d.names = append(d.names, make([]byte, 0, nameChunk))
	}
	c := len(d.names) - 1
	ref := uint32(c)<<20 | uint32(len(d.names[c]))
	d.names[c] = append(append(d.names[c], byte(len(name))), name...)
	return ref, nil
}

func (b *Builder) addLine(f Format, file string, n int, line []byte) error {
	var err error
	if f == FormatNDB {
		err = b.addBody(string(line))
	} else {
		err = b.addHash(line)
	}
	if errors.Is(err, errUnsupported) {
		b.db.stats.Unsupported++
		if len(b.db.stats.UnsupportedLines) < maxUnsupportedLines {
			b.db.stats.UnsupportedLines = append(b.db.stats.UnsupportedLines, UnsupportedLine{File: file, Line: n,
				Reason: strings.TrimPrefix(err.Error(), errUnsupported.Error()+": ")})
		}
		return nil
	}
	if err != nil {
		return &ParseError{File: file, Line: n, Err: err}
	}
	return nil
}

// addHash parses "digest:size:name[:flevel]" without allocating: a million
// of them must load in well under a second.
func (b *Builder) addHash(line []byte) error {
	var parts [5][]byte
	np := 0
	for rest := line; ; np++ {
		if np == len(parts) {
			return fmt.Errorf("want digest:size:name, got more than %d fields", len(parts)-1)
		}
		i := bytes.IndexByte(rest, ':')
		if i < 0 {
			parts[np] = rest
			np++
			break
		}
		parts[np], rest = rest[:i], rest[i+1:]
	}
	if np < 3 || np > 4 {
		return fmt.Errorf("want digest:size:name, got %d fields", np)
	}
	if np == 4 {
		if _, ok := parseUint(parts[3]); !ok {
			return fmt.Errorf("bad functionality level %q", parts[3])
		}
	}
	var size uint64
	if string(parts[1]) == "*" {
		size = sizeAny
	} else {
		s, ok := parseUint(parts[1])
		if !ok {
			return fmt.Errorf("bad size %q", parts[1])
		}
		size = s
	}
	var sum [32]byte
	h := parts[0]
	if len(h) != 32 && len(h) != 40 && len(h) != 64 {
		return fmt.Errorf("digest %q is not MD5, SHA-1 or SHA-256 hex", h)
	}
	if _, err := hex.Decode(sum[:], h); err != nil {
		return fmt.Errorf("digest %q is not hex", h)
	}
	name, err := b.addName(parts[2])
	if err != nil {
		return err
	}
	switch len(h) {
	case 32:
		b.db.md5.add([16]byte(sum[:16]), size, name)
	case 40:
		b.db.sha1.add([20]byte(sum[:20]), size, name)
	default:
		b.db.sha256.add(sum, size, name)
	}
	b.db.stats.HashSignatures++
	return nil
}

// parseUint reads a decimal below 2^62.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// addBody parses "name:target:offset:hexsig[:minflevel[:maxflevel]]".
func (b *Builder) addBody(line string) error {
	var fields [6]string
	parts := fields[:0]
	for rest := line; ; {
		if len(parts) == len(fields) {
			return fmt.Errorf("want name:target:offset:hexsig, got more than %d fields", len(fields))
		}
		f, r, more := strings.Cut(rest, ":")
		parts = append(parts, f)
		if !more {
			break
		}
		rest = r
	}
	if len(parts) < 4 {
		return fmt.Errorf("want name:target:offset:hexsig, got %d fields", len(parts))
	}
	for _, fl := range parts[4:] {
		if _, err := strconv.ParseUint(fl, 10, 32); err != nil && fl != "" {
			return fmt.Errorf("bad functionality level %q", fl)
		}
	}
	if parts[0] == "" {
		return errors.New("empty signature name")
	}
	target, err := strconv.Atoi(parts[1])
	if err != nil || target < 0 {
		return fmt.Errorf("bad target type %q", parts[1])
	}
	off, err := parseOffset(parts[2])
	if err != nil {
		return err
	}
	raw, err := parseHex(parts[3])
	if err != nil {
		return err
	}
	if target != 0 {
		return unsupported("target type %d (only 0, any file, is supported)", target)
	}
	anc := chooseAnchor(raw)
	if anc.tier == 0 {
		return unsupported("no run of 2 fixed bytes to anchor on")
	}
	if len(raw) > 1<<16-1 {
		return unsupported("more than 65535 parts")
	}
	name, err := b.addName([]byte(parts[0]))
	if err != nil {
		return err
	}
	b.compile(raw, anc, off, name)
	b.db.stats.BodySignatures++
	return nil
}

// compile stores a parsed pattern in the arenas and indexes its anchor.
func (b *Builder) compile(raw []rawTok, anc anchorChoice, off offSpec, name uint32) {
	d := &b.db
	litTok := b.litTok
	s := bodySig{off: off, name: name, ntok: uint16(len(raw)), at: uint16(anc.at), ao: uint32(anc.ao)}
	// Alternatives' options first, then the pattern's own tokens.
	var firsts [8]uint32
	alt := 0
	for _, t := range raw {
		if t.kind == tokAlt {
			alt++
		}
	}
	if alt > len(firsts) { // rare: many alternative groups
		b.compileSlow(raw, anc, off, name)
		return
	}
	alt = 0
	for _, t := range raw {
		if t.kind == tokAlt {
			first := uint32(len(d.toks))
			for _, o := range t.alts {
				d.toks = append(d.toks, litTok(o))
			}
			firsts[alt] = first
			alt++
		}
	}
	s.tok0 = uint32(len(d.toks))
	alt = 0
	for _, t := range raw {
		switch t.kind {
		case tokLit:
			d.toks = append(d.toks, litTok(t))
		case tokGap:
			d.toks = append(d.toks, tok{kind: tokGap, a: t.min, b: t.max})
		case tokAlt:
			d.toks = append(d.toks, tok{kind: tokAlt, n: uint16(len(t.alts)), a: firsts[alt]})
			alt++
		}
	}
	b.index(s, raw, anc)
}

// litTok stores a literal's bytes (and masks) in the arena.
func (b *Builder) litTok(t rawTok) tok {
	d := &b.db
	o := tok{kind: tokLit, a: uint32(len(d.lits)), b: uint32(len(t.val))}
	d.lits = append(d.lits, t.val...)
	if t.msk != nil {
		o.masked = true
		d.lits = append(d.lits, t.msk...)
		// Masked comparison is val == data&mask: keep val pre-masked.
		for i := range t.val {
			d.lits[int(o.a)+i] &= t.msk[i]
		}
	}
	return o
}

// compileSlow is compile for patterns with more than 8 alternative groups.
func (b *Builder) compileSlow(raw []rawTok, anc anchorChoice, off offSpec, name uint32) {
	d := &b.db
	s := bodySig{off: off, name: name, ntok: uint16(len(raw)), at: uint16(anc.at), ao: uint32(anc.ao)}
	main := make([]tok, len(raw))
	for i, t := range raw {
		switch t.kind {
		case tokLit:
			main[i] = b.litTok(t)
		case tokGap:
			main[i] = tok{kind: tokGap, a: t.min, b: t.max}
		case tokAlt:
			first := uint32(len(d.toks))
			for _, o := range t.alts {
				d.toks = append(d.toks, b.litTok(o))
			}
			main[i] = tok{kind: tokAlt, n: uint16(len(t.alts)), a: first}
		}
	}
	s.tok0 = uint32(len(d.toks))
	d.toks = append(d.toks, main...)
	b.index(s, raw, anc)
}

// index computes the left span of s, stores it and indexes its anchor.
func (b *Builder) index(s bodySig, raw []rawTok, anc anchorChoice) {
	d := &b.db
	for _, t := range raw[:anc.at] {
		lo, hi := rawSpan(t)
		s.leftMin += lo
		if s.leftMax != gapInf {
			if hi == gapInf {
				s.leftMax = gapInf
			} else {
				s.leftMax += hi
			}
		}
	}
	idx := uint32(len(d.sigs))
	d.sigs = append(d.sigs, s)
	v := raw[anc.at].val[anc.ao:]
	switch anc.tier {
	case 3:
		for j := range 4 {
			b.wa = append(b.wa, window{key: le32(v[j:]), sig: idx | uint32(j)<<30})
		}
	case 2:
		b.wb = append(b.wb, window{key: le32(v), sig: idx})
	case 1:
		b.wc = append(b.wc, window{key: uint32(v[0]) | uint32(v[1])<<8, sig: idx})
	}
}

func rawSpan(t rawTok) (lo, hi uint32) {
	switch t.kind {
	case tokLit:
		return uint32(len(t.val)), uint32(len(t.val))
	case tokGap:
		return t.min, t.max
	}
	lo, hi = gapInf, 0
	for _, o := range t.alts {
		lo, hi = min(lo, uint32(len(o.val))), max(hi, uint32(len(o.val)))
	}
	return lo, hi
}

func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// Build finishes the DB. The Builder must not be used afterwards.
func (b *Builder) Build() *DB {
	d := &b.db
	d.md5.finish()
	d.sha1.finish()
	d.sha256.finish()
	d.body = matcher{a: newPrefilter(b.wa), b: newPrefilter(b.wb), c: newPrefilter(b.wc)}
	b.wa, b.wb, b.wc = nil, nil, nil
	db := *d
	b.db = DB{}
	return &db
}

// ErrUnsupported is wrapped by NormalizeLine for lines that are valid
// ClamAV but use features this engine does not implement.
var ErrUnsupported = errUnsupported

// NormalizeLine checks one signature line of format f and returns it in
// the canonical form a signature set stores (lower-case hex, no
// functionality levels) with the format it belongs to (.hdb for MD5, .hsb
// for SHA-1/SHA-256, .ndb for body signatures). Unsupported lines return an
// error wrapping ErrUnsupported; malformed ones any other error.
func NormalizeLine(f Format, line string) (string, Format, error) {
	if f != FormatNDB {
		parts := strings.Split(line, ":")
		b := NewBuilder(true)
		if err := b.addHash([]byte(line)); err != nil {
			return "", 0, err
		}
		h := strings.ToLower(parts[0])
		out := FormatHDB
		if len(h) != 32 {
			out = FormatHSB
		}
		return h + ":" + parts[1] + ":" + parts[2], out, nil
	}
	parts := strings.Split(line, ":")
	if len(parts) < 4 || len(parts) > 6 {
		return "", 0, fmt.Errorf("want name:target:offset:hexsig, got %d fields", len(parts))
	}
	b := NewBuilder(true)
	if err := b.addBody(line); err != nil {
		return "", 0, err
	}
	return parts[0] + ":0:" + parts[2] + ":" + strings.ToLower(parts[3]), FormatNDB, nil
}
