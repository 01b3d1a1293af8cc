package scan

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// errUnsupported marks a body signature that is valid ClamAV syntax but uses
// a feature this engine does not implement; the loader counts such lines
// instead of failing.
var errUnsupported = errors.New("unsupported")

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errUnsupported, fmt.Sprintf(format, args...))
}

// tok kinds of a compiled body pattern.
const (
	tokLit = iota // masked literal: lit bytes [a, a+n) with masks at [a+n, a+2n) when masked
	tokGap        // any min..max bytes (max == gapInf: unbounded)
	tokAlt        // n alternatives follow as tokLit tokens
)

const gapInf = ^uint32(0)

// tok is one element of a compiled pattern. Literal bytes live in the DB's
// byte arena so that a million patterns cost a few allocations, not millions.
type tok struct {
	kind   uint8
	masked bool
	n      uint16 // tokAlt: number of alternatives that follow
	a, b   uint32 // tokLit: arena offset, length; tokGap: min, max
}

// rawTok is the parser's view before the literals move to the arena.
type rawTok struct {
	kind     uint8
	val, msk []byte // tokLit (msk nil: all bytes fixed)
	min, max uint32 // tokGap
	alts     []rawTok
}

// parseHex compiles a ClamAV hex body signature: hex bytes, ?? and nibble
// wildcards, *, {n}, {n-}, {-n}, {n-m}, [n-m] and (aa|bb) alternatives.
// Negated alternatives and boundary markers are unsupported.
func parseHex(s string) ([]rawTok, error) {
	var toks []rawTok
	var val, msk []byte
	masked := false
	flush := func() {
		if len(val) > 0 {
			t := rawTok{kind: tokLit, val: val}
			if masked {
				t.msk = msk
			}
			toks = append(toks, t)
		}
		val, msk, masked = nil, nil, false
	}
	addGap := func(lo, hi uint32) {
		flush()
		if n := len(toks); n > 0 && toks[n-1].kind == tokGap {
			toks[n-1].min += lo
			if toks[n-1].max == gapInf || hi == gapInf {
				toks[n-1].max = gapInf
			} else {
				toks[n-1].max += hi
			}
			return
		}
		toks = append(toks, rawTok{kind: tokGap, min: lo, max: hi})
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '*':
			addGap(0, gapInf)
			i++
		case c == '{' || c == '[':
			end := byte('}')
			if c == '[' {
				end = ']'
			}
			j := strings.IndexByte(s[i:], end)
			if j < 0 {
				return nil, fmt.Errorf("unterminated %c at position %d", c, i)
			}
			lo, hi, err := parseRange(s[i+1:i+j], c == '{')
			if err != nil {
				return nil, fmt.Errorf("bad range %q: %w", s[i:i+j+1], err)
			}
			if hi != gapInf && hi-lo <= 0 && lo <= 64 && c == '{' {
				// A short fixed skip is a run of wildcard bytes inside a literal.
				for range lo {
					val, msk = append(val, 0), append(msk, 0)
				}
				masked = masked || lo > 0
			} else {
				addGap(lo, hi)
			}
			i += j + 1
		case c == '!':
			return nil, unsupported("negated alternatives")
		case c == '(':
			j := strings.IndexByte(s[i:], ')')
			if j < 0 {
				return nil, fmt.Errorf("unterminated ( at position %d", i)
			}
			inner := s[i+1 : i+j]
			if inner == "B" || inner == "L" || inner == "W" {
				return nil, unsupported("boundary marker (%s)", inner)
			}
			flush()
			alt := rawTok{kind: tokAlt}
			for _, o := range strings.Split(inner, "|") {
				if o == "" {
					return nil, fmt.Errorf("empty alternative in %q", s[i:i+j+1])
				}
				ov, om, omasked, err := parseHexBytes(o)
				if err != nil {
					if errors.Is(err, errUnsupported) {
						return nil, err
					}
					return nil, fmt.Errorf("alternative %q: %w", o, err)
				}
				t := rawTok{kind: tokLit, val: ov}
				if omasked {
					t.msk = om
				}
				alt.alts = append(alt.alts, t)
			}
			if len(alt.alts) < 2 {
				return nil, fmt.Errorf("alternatives %q need at least two choices", s[i:i+j+1])
			}
			toks = append(toks, alt)
			i += j + 1
		default:
			if i+1 >= len(s) {
				return nil, fmt.Errorf("odd number of hex digits at position %d", i)
			}
			v, m, err := hexPair(s[i], s[i+1])
			if err != nil {
				return nil, fmt.Errorf("position %d: %w", i, err)
			}
			val, msk = append(val, v), append(msk, m)
			masked = masked || m != 0xff
			i += 2
		}
	}
	flush()
	if len(toks) == 0 {
		return nil, errors.New("empty signature")
	}
	if toks[0].kind == tokGap || toks[len(toks)-1].kind == tokGap {
		return nil, errors.New("a signature cannot start or end with a wildcard jump")
	}
	return toks, nil
}

func parseHexBytes(s string) (val, msk []byte, masked bool, err error) {
	if len(s)%2 != 0 {
		return nil, nil, false, errors.New("odd number of hex digits")
	}
	for i := 0; i < len(s); i += 2 {
		v, m, err := hexPair(s[i], s[i+1])
		if err != nil {
			return nil, nil, false, err
		}
		val, msk = append(val, v), append(msk, m)
		masked = masked || m != 0xff
	}
	return val, msk, masked, nil
}

func hexPair(a, b byte) (val, mask byte, err error) {
	hi, hm, err := nibble(a)
	if err != nil {
		return 0, 0, err
	}
	lo, lm, err := nibble(b)
	if err != nil {
		return 0, 0, err
	}
	return hi<<4 | lo, hm<<4 | lm, nil
}

func nibble(c byte) (val, mask byte, err error) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', 0xf, nil
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, 0xf, nil
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, 0xf, nil
	case c == '?':
		return 0, 0, nil
	}
	return 0, 0, fmt.Errorf("%q is not a hex digit", c)
}

// parseRange reads "n", "n-", "-n" or "n-m" (brace forms) or "n-m" (bracket).
func parseRange(s string, brace bool) (lo, hi uint32, err error) {
	num := func(x string) (uint32, error) {
		n, err := strconv.ParseUint(x, 10, 32)
		if err != nil || n >= uint64(gapInf) {
			return 0, fmt.Errorf("%q is not a byte count", x)
		}
		return uint32(n), nil
	}
	a, b, dash := strings.Cut(s, "-")
	switch {
	case !dash:
		if !brace {
			return 0, 0, errors.New("[n-m] needs both bounds")
		}
		n, err := num(a)
		return n, n, err
	case a == "" && brace:
		n, err := num(b)
		return 0, n, err
	case b == "" && brace:
		n, err := num(a)
		return n, gapInf, err
	}
	if lo, err = num(a); err != nil {
		return 0, 0, err
	}
	if hi, err = num(b); err != nil {
		return 0, 0, err
	}
	if hi < lo {
		return 0, 0, errors.New("upper bound below lower bound")
	}
	return lo, hi, nil
}

// offKind is where a body signature may start.
type offKind uint8

const (
	offAny offKind = iota // "*"
	offAbs                // "n" or "n,shift"
	offEOF                // "EOF-n" or "EOF-n,shift"
)

type offSpec struct {
	kind  offKind
	n     int64
	shift int64
}

// ok reports whether a match starting at start satisfies the offset in an
// object of size bytes.
func (o offSpec) ok(start, size int64) bool {
	switch o.kind {
	case offAbs:
		return start >= o.n && start <= o.n+o.shift
	case offEOF:
		s := size - o.n
		return start >= s && start <= s+o.shift
	}
	return true
}

// parseOffset reads the ClamAV offset field of a target-0 signature.
func parseOffset(s string) (offSpec, error) {
	if s == "*" {
		return offSpec{kind: offAny}, nil
	}
	base, shiftS, hasShift := strings.Cut(s, ",")
	var o offSpec
	if hasShift {
		n, err := strconv.ParseInt(shiftS, 10, 64)
		if err != nil || n < 0 {
			return o, fmt.Errorf("bad offset shift %q", shiftS)
		}
		o.shift = n
	}
	switch {
	case strings.HasPrefix(base, "EOF-"):
		n, err := strconv.ParseInt(base[4:], 10, 64)
		if err != nil || n < 0 {
			return o, fmt.Errorf("bad offset %q", s)
		}
		o.kind, o.n = offEOF, n
	case strings.HasPrefix(base, "EP"), strings.HasPrefix(base, "S"), strings.HasPrefix(base, "SL"),
		strings.HasPrefix(base, "SE"), strings.HasPrefix(base, "VI"), strings.HasPrefix(base, "$"):
		return o, unsupported("offset %q needs a parsed executable", s)
	default:
		n, err := strconv.ParseInt(base, 10, 64)
		if err != nil || n < 0 {
			return o, fmt.Errorf("bad offset %q", s)
		}
		o.kind, o.n = offAbs, n
	}
	return o, nil
}
