package scan

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"strings"
)

// chunk is how many bytes the prefilter and the digests take in turn, so
// that the data is read from memory once and hashed while still in cache.
const chunk = 256 << 10

// objScan scans one file and everything inside it.
type objScan struct {
	e       *Engine
	res     *FileResult
	total   int64 // decompressed bytes spent
	stopped bool
}

func (s *objScan) note(member, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if member != "" {
		msg = member + ": " + msg
	}
	s.res.Notes = append(s.res.Notes, msg)
}

// add records a finding and says whether scanning should go on.
func (s *objScan) add(member, sig, kind string, data []byte) bool {
	f := Finding{Path: s.res.Path, Member: member, Signature: sig, Kind: kind}
	if member != "" {
		sum := sha256.Sum256(data)
		f.MemberSHA256 = hex.EncodeToString(sum[:])
	}
	s.res.Findings = append(s.res.Findings, f)
	s.stopped = !s.e.opt.AllMatches
	return !s.stopped
}

// object scans data (the file itself at depth 0, else an archive member
// named member) and then, if it is an archive, its members, named under
// base.
func (s *objScan) object(data []byte, member, base string, depth int) {
	db := s.e.db
	size := uint64(len(data))
	var hMD5, hSHA1, hSHA256 hash.Hash
	if db.md5.wants(size) {
		hMD5 = md5.New()
	}
	if db.sha1.wants(size) {
		hSHA1 = sha1.New()
	}
	if db.sha256.wants(size) {
		hSHA256 = sha256.New()
	}
	st := bodyState{db: db, buf: data, budget: verifyBudget}
	hit := func(sig uint32) bool {
		return s.add(member, db.name(db.sigs[sig].name), KindSignature, data)
	}
	for off := 0; off < len(data) || off == 0; off += chunk {
		end := min(len(data), off+chunk)
		if !st.scanRange(off, end, hit) {
			return
		}
		for _, h := range []hash.Hash{hMD5, hSHA1, hSHA256} {
			if h != nil {
				h.Write(data[off:end])
			}
		}
		if len(data) == 0 {
			break
		}
		if st.budget <= 0 {
			st.budget = verifyBudget // a fresh budget per chunk keeps hostile data linear
		}
	}
	if hMD5 != nil {
		var sum [16]byte
		hMD5.Sum(sum[:0])
		if n, ok := db.md5.lookup(&sum, size); ok && !s.add(member, db.name(n), KindSignature, data) {
			return
		}
	}
	if hSHA1 != nil {
		var sum [20]byte
		hSHA1.Sum(sum[:0])
		if n, ok := db.sha1.lookup(&sum, size); ok && !s.add(member, db.name(n), KindSignature, data) {
			return
		}
	}
	if hSHA256 != nil {
		var sum [32]byte
		hSHA256.Sum(sum[:0])
		if n, ok := db.sha256.lookup(&sum, size); ok && !s.add(member, db.name(n), KindSignature, data) {
			return
		}
	}
	s.archive(data, member, base, depth)
}

// joinMember names a member inside an archive level.
func joinMember(outer, sep, inner string) string {
	inner = strings.TrimPrefix(inner, "./")
	if outer == "" {
		return inner
	}
	if inner == "" {
		return outer
	}
	return outer + sep + inner
}
