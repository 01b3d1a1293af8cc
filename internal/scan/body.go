package scan

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"slices"
)

// Body signatures are matched with an anchor prefilter, not an automaton
// (see shared/reference/DEPENDENCY-BENCH.md: Go Aho-Corasick libraries ran
// at 18-94 MB/s on 10,000 patterns, a hash prefilter at ~640 MB/s). Each
// pattern gets one anchor, a run of fixed bytes inside one of its literals:
//
//   - tier A, a run of >= 7 fixed bytes: the four 4-byte windows at offsets
//     0..3 of the run are indexed, so the scan looks at every 4th position
//     only (any occurrence of the run covers one aligned window);
//   - tier B, a run of 4-6 bytes: one 4-byte window, every position;
//   - tier C, a run of 2-3 bytes: one 2-byte window, every position.
//
// A position's window value goes through a bitset (a Bloom filter with one
// hash) and, on a hit, to a bucketed table of (window, pattern) entries;
// each candidate is verified exactly: the anchor's whole literal, then the
// tokens right of it forwards and left of it backwards, then the offset.
// Tiers B and C are only scanned when they hold patterns.

const mulHash = 0x9E3779B1

// window is one prefilter key: the 2 or 4 window bytes and the pattern
// index, with the window's offset inside the anchor run in the top 2 bits.
type window struct {
	key uint32
	sig uint32
}

const sigMask = 1<<30 - 1

// prefilter indexes windows of one width (2 or 4 bytes). The filter is a
// blocked Bloom filter: one 64-bit word per window hash, two bits in it, so
// one memory access rejects all but ~0.1% of positions.
type prefilter struct {
	wordShift uint32   // 64 - log2(len(words))
	words     []uint64 // filter on the window hash
	bktShift  uint32   // 32 - log2(buckets)
	start     []uint32 // bucket b holds entries[start[b]:start[b+1]]
	entries   []window
}

// filterMask returns the word index and the two bits of window value v.
func filterMask(v uint32, wordShift uint32) (uint64, uint64) {
	h := uint64(v) * 0x9E3779B97F4A7C15
	return h >> wordShift, 1<<(h>>20&63) | 1<<(h>>26&63)
}

func newPrefilter(ws []window) prefilter {
	var p prefilter
	if len(ws) == 0 {
		return p
	}
	// About one word per window: from 2^10 words (8 KiB, L1) to 2^22 (32 MiB).
	nw := max(10, min(22, bits.Len(uint(len(ws))-1)))
	p.wordShift = uint32(64 - nw)
	p.words = make([]uint64, 1<<nw)
	nb := max(4, min(24, bits.Len(uint(len(ws))*2-1)))
	p.bktShift = uint32(32 - nb)
	counts := make([]uint32, 1<<nb+1)
	for _, w := range ws {
		i, m := filterMask(w.key, p.wordShift)
		p.words[i] |= m
		counts[(w.key*mulHash)>>p.bktShift+1]++
	}
	for i := 1; i < len(counts); i++ {
		counts[i] += counts[i-1]
	}
	p.start = counts
	p.entries = make([]window, len(ws))
	fill := slices.Clone(counts[:len(counts)-1])
	for _, w := range ws {
		b := (w.key * mulHash) >> p.bktShift
		p.entries[fill[b]] = w
		fill[b]++
	}
	return p
}

// bodySig is one compiled body signature. Its tokens are db.toks[tok0 :
// tok0+ntok]; the anchor is in token at, starting ao bytes into it.
type bodySig struct {
	off              offSpec
	name             uint32
	tok0             uint32
	ntok             uint16
	at               uint16 // index of the anchor token within the pattern
	ao               uint32 // anchor offset inside that token's literal
	leftMin, leftMax uint32 // bytes the tokens left of the anchor token span (gapInf: unbounded)
}

// anchorChoice is the best fixed run found in a pattern.
type anchorChoice struct {
	tier  int // 0 none, 1 = C (2 bytes), 2 = B (4), 3 = A (7)
	at    int
	ao    int
	score int
}

// chooseAnchor picks the most selective fixed run: the highest tier, then
// the window with the most distinct and least common bytes.
func chooseAnchor(toks []rawTok) anchorChoice {
	var best anchorChoice
	for i, t := range toks {
		if t.kind != tokLit {
			continue
		}
		for s := 0; s < len(t.val); {
			if t.msk != nil && t.msk[s] != 0xff {
				s++
				continue
			}
			e := s
			for e < len(t.val) && (t.msk == nil || t.msk[e] == 0xff) {
				e++
			}
			run := e - s
			tier, w := 0, 0
			switch {
			case run >= 7:
				tier, w = 3, 7
			case run >= 4:
				tier, w = 2, 4
			case run >= 2:
				tier, w = 1, 2
			}
			for o := s; tier > 0 && o+w <= e; o++ {
				sc := windowScore(t.val[o : o+w])
				if tier > best.tier || tier == best.tier && sc > best.score {
					best = anchorChoice{tier: tier, at: i, ao: o, score: sc}
				}
			}
			s = e
		}
	}
	return best
}

func windowScore(w []byte) int {
	var seen [256]bool
	sc := 0
	for _, c := range w {
		if !seen[c] {
			seen[c] = true
			sc += 4
		}
		switch c {
		case 0x00, 0xff, 0x20, 0x90, 0xcc:
			sc -= 3
		}
	}
	return sc
}

// matcher holds the three prefilter tiers.
type matcher struct {
	a, b, c prefilter
}

// bodyState carries one object's body scan; budget bounds verification work
// on hostile patterns and data.
type bodyState struct {
	db     *DB
	buf    []byte
	budget int
}

const verifyBudget = 1 << 20

// scanRange looks for body signature matches whose anchor window starts in
// [from, to). It calls hit for each verified match and stops when hit
// returns false.
func (st *bodyState) scanRange(from, to int, hit func(sig uint32) bool) bool {
	m := &st.db.body
	b := st.buf
	if p := &m.a; len(p.entries) > 0 {
		words, shift := p.words, p.wordShift
		end := min(to, len(b)-3)
		for i := (from + 3) &^ 3; i < end; i += 4 {
			v := binary.LittleEndian.Uint32(b[i : i+4])
			w, mask := filterMask(v, shift)
			if words[w]&mask != mask {
				continue
			}
			if !st.candidates(p, v, i, hit) {
				return false
			}
		}
	}
	if p := &m.b; len(p.entries) > 0 {
		words, shift := p.words, p.wordShift
		end := min(to, len(b)-3)
		for i := from; i < end; i++ {
			v := binary.LittleEndian.Uint32(b[i : i+4])
			w, mask := filterMask(v, shift)
			if words[w]&mask != mask {
				continue
			}
			if !st.candidates(p, v, i, hit) {
				return false
			}
		}
	}
	if p := &m.c; len(p.entries) > 0 {
		words, shift := p.words, p.wordShift
		end := min(to, len(b)-1)
		for i := from; i < end; i++ {
			v := uint32(binary.LittleEndian.Uint16(b[i : i+2]))
			w, mask := filterMask(v, shift)
			if words[w]&mask != mask {
				continue
			}
			if !st.candidates(p, v, i, hit) {
				return false
			}
		}
	}
	return true
}

func (st *bodyState) candidates(p *prefilter, v uint32, pos int, hit func(uint32) bool) bool {
	bk := (v * mulHash) >> p.bktShift
	for _, w := range p.entries[p.start[bk]:p.start[bk+1]] {
		if w.key != v {
			continue
		}
		idx := w.sig & sigMask
		j := int(w.sig >> 30)
		s := &st.db.sigs[idx]
		litStart := pos - j - int(s.ao)
		if litStart < 0 || !st.verify(s, litStart) {
			continue
		}
		if !hit(idx) {
			return false
		}
	}
	return true
}

// verify checks signature s with its anchor token at litStart.
func (st *bodyState) verify(s *bodySig, litStart int) bool {
	size := int64(len(st.buf))
	// Cheap offset check first: the start lies in [minStart, maxStart].
	maxStart := int64(litStart) - int64(s.leftMin)
	minStart := int64(0)
	if s.leftMax != gapInf {
		minStart = max(0, int64(litStart)-int64(s.leftMax))
	}
	if maxStart < 0 {
		return false
	}
	switch s.off.kind {
	case offAbs:
		if maxStart < s.off.n || minStart > s.off.n+s.off.shift {
			return false
		}
	case offEOF:
		e := size - s.off.n
		if maxStart < e || minStart > e+s.off.shift {
			return false
		}
	}
	toks := st.db.toks[s.tok0 : s.tok0+uint32(s.ntok)]
	at := int(s.at)
	t := toks[at]
	if !st.lit(t, litStart) {
		return false
	}
	if !st.fwd(toks, at+1, litStart+int(t.b)) {
		return false
	}
	return st.bwd(toks, at-1, litStart, func(start int) bool { return s.off.ok(int64(start), size) })
}

// lit reports whether literal token t matches at pos.
func (st *bodyState) lit(t tok, pos int) bool {
	n := int(t.b)
	if pos < 0 || pos+n > len(st.buf) {
		return false
	}
	st.budget--
	val := st.db.lits[t.a : t.a+t.b]
	got := st.buf[pos : pos+n]
	if !t.masked {
		return bytes.Equal(got, val)
	}
	msk := st.db.lits[t.a+t.b : t.a+2*t.b]
	for i := range n {
		if got[i]&msk[i] != val[i] {
			return false
		}
	}
	return true
}

// fwd matches toks[i:] starting at pos.
func (st *bodyState) fwd(toks []tok, i, pos int) bool {
	for ; i < len(toks); i++ {
		if st.budget <= 0 {
			return false
		}
		t := toks[i]
		switch t.kind {
		case tokLit:
			if !st.lit(t, pos) {
				return false
			}
			pos += int(t.b)
		case tokAlt:
			for _, o := range st.db.toks[t.a : t.a+uint32(t.n)] {
				if st.lit(o, pos) && st.fwd(toks, i+1, pos+int(o.b)) {
					return true
				}
			}
			return false
		case tokGap:
			lo := pos + int(t.a)
			if lo > len(st.buf) {
				return false
			}
			hi := len(st.buf)
			if t.b != gapInf {
				hi = min(hi, pos+int(t.b))
			}
			next := toks[i+1] // a pattern never ends with a gap
			for q := lo; q <= hi; q++ {
				if next.kind == tokLit && !next.masked {
					// Jump to the next occurrence of the literal.
					k := bytes.Index(st.buf[q:min(len(st.buf), hi+int(next.b))], st.db.lits[next.a:next.a+next.b])
					st.budget--
					if k < 0 {
						return false
					}
					q += k
				}
				if st.fwd(toks, i+1, q) {
					return true
				}
				if st.budget <= 0 {
					return false
				}
			}
			return false
		}
	}
	return true
}

// bwd matches toks[:i+1] right to left so that they end at end, and calls
// ok with each possible start until it returns true.
func (st *bodyState) bwd(toks []tok, i, end int, ok func(start int) bool) bool {
	for ; i >= 0; i-- {
		if st.budget <= 0 {
			return false
		}
		t := toks[i]
		switch t.kind {
		case tokLit:
			end -= int(t.b)
			if !st.lit(t, end) {
				return false
			}
		case tokAlt:
			for _, o := range st.db.toks[t.a : t.a+uint32(t.n)] {
				if st.lit(o, end-int(o.b)) && st.bwd(toks, i-1, end-int(o.b), ok) {
					return true
				}
			}
			return false
		case tokGap:
			hi := end - int(t.a)
			lo := 0
			if t.b != gapInf {
				lo = max(0, end-int(t.b))
			}
			for q := hi; q >= lo; q-- {
				if st.bwd(toks, i-1, q, ok) {
					return true
				}
				if st.budget <= 0 {
					return false
				}
			}
			return false
		}
	}
	return ok(end)
}
