package scan

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"slices"
	"unsafe"
)

// sizeAny is the size of a hash signature written with "*" (any size).
const sizeAny = ^uint64(0)

// hashEntry is one hash signature: H is [16]byte (MD5), [20]byte (SHA-1)
// or [32]byte (SHA-256).
type hashEntry[H [16]byte | [20]byte | [32]byte] struct {
	sum  H
	size uint64
	name uint32
}

// hashTable looks hash signatures up by (size, digest). Loading must stay
// linear (a million signatures in well under a second), so nothing is
// sorted: an open-addressing index over the digest's first 8 bytes (already
// uniformly distributed) points into entries, and a bitset over the sizes
// tells a scan whether a digest of a file of that size could match at all
// (so, as in ClamAV, digests are computed only when a signature has the
// file's size; a false positive costs one needless digest).
type hashTable[H [16]byte | [20]byte | [32]byte] struct {
	entries  []hashEntry[H]
	slots    []uint32 // entry index + 1; 0 is empty
	sizeBits []uint64
	anySize  bool // some entry matches any size: always compute
}

// prefix8 is the digest's first 8 bytes as a number (every digest type is
// at least 16 bytes long).
func prefix8[H [16]byte | [20]byte | [32]byte](h *H) uint64 {
	return binary.BigEndian.Uint64((*[8]byte)(unsafe.Pointer(h))[:])
}

func (t *hashTable[H]) add(sum H, size uint64, name uint32) {
	t.entries = append(t.entries, hashEntry[H]{sum: sum, size: size, name: name})
}

func sizeHash(size uint64) uint64 { return size * 0x9E3779B97F4A7C15 }

// finish builds the index; it must be called once after the last add.
func (t *hashTable[H]) finish() {
	t.entries = slices.Clip(t.entries)
	n := len(t.entries)
	if n == 0 {
		return
	}
	nslots := 1 << bits.Len(uint(2*n-1))
	t.slots = make([]uint32, nslots)
	mask := uint64(nslots - 1)
	nbits := max(6, min(30, bits.Len(uint(n)*32-1)))
	t.sizeBits = make([]uint64, 1<<nbits/64)
	for i := range t.entries {
		e := &t.entries[i]
		j := prefix8(&e.sum) & mask
		for t.slots[j] != 0 {
			j = (j + 1) & mask
		}
		t.slots[j] = uint32(i + 1)
		if e.size == sizeAny {
			t.anySize = true
			continue
		}
		h := sizeHash(e.size) >> (64 - nbits)
		t.sizeBits[h>>6] |= 1 << (h & 63)
	}
}

// wants reports whether a digest of an object of this size could match.
func (t *hashTable[H]) wants(size uint64) bool {
	if len(t.entries) == 0 {
		return false
	}
	if t.anySize {
		return true
	}
	nbits := bits.Len(uint(len(t.sizeBits)*64)) - 1
	h := sizeHash(size) >> (64 - nbits)
	return t.sizeBits[h>>6]&(1<<(h&63)) != 0
}

// lookup returns the name of a signature matching sum and size.
func (t *hashTable[H]) lookup(sum *H, size uint64) (uint32, bool) {
	if len(t.slots) == 0 {
		return 0, false
	}
	p := prefix8(sum)
	mask := uint64(len(t.slots) - 1)
	for j := p & mask; t.slots[j] != 0; j = (j + 1) & mask {
		e := &t.entries[t.slots[j]-1]
		if prefix8(&e.sum) == p && (e.size == size || e.size == sizeAny) && bytes.Equal(hashBytes(&e.sum), hashBytes(sum)) {
			return e.name, true
		}
	}
	return 0, false
}

func hashBytes[H [16]byte | [20]byte | [32]byte](h *H) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(h)), unsafe.Sizeof(*h))
}
