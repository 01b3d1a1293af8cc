package scan

import (
	"bytes"
	"encoding/binary"
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

// hashTable looks hash signatures up by (size, digest). Entries are sorted
// by the digest's first 8 bytes (uniformly distributed, so sorting is
// cheap); sizes holds the distinct sizes so a scan computes a digest only
// when some signature has the file's size, as ClamAV does.
type hashTable[H [16]byte | [20]byte | [32]byte] struct {
	entries []hashEntry[H]
	sizes   []uint64 // sorted, distinct, without sizeAny
	anySize bool     // some entry matches any size: always compute
}

// prefix8 is the digest's first 8 bytes as a number (every digest type is
// at least 16 bytes long).
func prefix8[H [16]byte | [20]byte | [32]byte](h *H) uint64 {
	return binary.BigEndian.Uint64((*[8]byte)(unsafe.Pointer(h))[:])
}

func (t *hashTable[H]) add(sum H, size uint64, name uint32) {
	t.entries = append(t.entries, hashEntry[H]{sum: sum, size: size, name: name})
}

// finish sorts the table; it must be called once after the last add.
func (t *hashTable[H]) finish() {
	slices.SortFunc(t.entries, func(a, b hashEntry[H]) int {
		pa, pb := prefix8(&a.sum), prefix8(&b.sum)
		switch {
		case pa < pb:
			return -1
		case pa > pb:
			return 1
		}
		return 0
	})
	t.sizes = t.sizes[:0]
	for _, e := range t.entries {
		if e.size == sizeAny {
			t.anySize = true
			continue
		}
		t.sizes = append(t.sizes, e.size)
	}
	slices.Sort(t.sizes)
	t.sizes = slices.Compact(t.sizes)
	t.sizes = slices.Clip(t.sizes)
	t.entries = slices.Clip(t.entries)
}

// wants reports whether a digest of an object of this size could match.
func (t *hashTable[H]) wants(size uint64) bool {
	if len(t.entries) == 0 {
		return false
	}
	if t.anySize {
		return true
	}
	_, ok := slices.BinarySearch(t.sizes, size)
	return ok
}

// lookup returns the name of a signature matching sum and size.
func (t *hashTable[H]) lookup(sum *H, size uint64) (uint32, bool) {
	p := prefix8(sum)
	i, _ := slices.BinarySearchFunc(t.entries, p, func(e hashEntry[H], p uint64) int {
		q := prefix8(&e.sum)
		switch {
		case q < p:
			return -1
		case q > p:
			return 1
		}
		return 0
	})
	for ; i < len(t.entries) && prefix8(&t.entries[i].sum) == p; i++ {
		e := &t.entries[i]
		if (e.size == size || e.size == sizeAny) && bytes.Equal(hashBytes(&e.sum), hashBytes(sum)) {
			return e.name, true
		}
	}
	return 0, false
}

func hashBytes[H [16]byte | [20]byte | [32]byte](h *H) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(h)), unsafe.Sizeof(*h))
}
