// Package auditchain makes the activity log tamper-evident: every entry,
// once sealed, carries its place in one chain across the whole control
// plane (Seq, counted from 1), the hash of the entry before it (PrevHash)
// and its own Hash — SHA-256 over a versioned, fixed encoding of PrevHash,
// Seq and every field of the entry. Changing, removing or reordering a
// sealed entry breaks the chain at that entry, and a Verifier that walks
// the chain from its base names the first entry where it breaks.
//
// What the chain cannot show alone: someone able to write the database
// could recompute every hash after the entry they changed. Anchors close
// that: a head (Seq and Hash) an auditor recorded earlier must still be in
// the chain with the same hash (Verifier.Anchor).
//
// The server seals entries shortly after they are written (the activity
// context); clients verify with the same code (corral activity verify), so
// a verification does not rely on the server's word. The package is pure:
// no I/O, safe for concurrent use except a Verifier, which is one walk.
package auditchain

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/corralhq/corral/internal/wire"
)

// version prefixes the hashed encoding; a new encoding gets a new version.
const version = "corral-activity-chain-v1"

// hashed is the fixed encoding of an entry: these fields in this order
// (encoding/json keeps struct order), times in UTC with nanoseconds.
type hashed struct {
	V             string `json:"v"`
	Seq           int64  `json:"seq"`
	PrevHash      string `json:"prevHash"`
	ID            string `json:"id"`
	Time          string `json:"time"`
	CallerID      string `json:"callerId"`
	Caller        string `json:"caller"`
	CallerType    string `json:"callerType"`
	Action        string `json:"action"`
	Scope         string `json:"scope"`
	Result        string `json:"result"`
	Status        int    `json:"httpStatus"`
	Message       string `json:"message"`
	CorrelationID string `json:"correlationId"`
	SourceIP      string `json:"sourceIp"`
	Method        string `json:"method"`
	Path          string `json:"path"`
}

// Hash is the hash of e at position seq after the entry whose hash is prev
// (e.Seq, e.PrevHash and e.Hash are ignored).
func Hash(prev string, seq int64, e wire.ActivityEntry) string {
	b, err := json.Marshal(hashed{V: version, Seq: seq, PrevHash: prev, ID: e.ID, Time: e.Time.UTC().Format(time.RFC3339Nano),
		CallerID: e.CallerID, Caller: e.Caller, CallerType: e.CallerType, Action: e.Action, Scope: e.Scope, Result: e.Result,
		Status: e.Status, Message: e.Message, CorrelationID: e.CorrelationID, SourceIP: e.SourceIP, Method: e.Method, Path: e.Path})
	if err != nil {
		panic("auditchain: encode an entry: " + err.Error()) // strings and ints always encode
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Break is where a chain does not hold.
type Break struct {
	// Seq is the position where the chain breaks; ID is the entry found
	// there ("" when it is missing).
	Seq    int64
	ID     string
	Reason string
}

func (b *Break) Error() string {
	if b.ID == "" {
		return fmt.Sprintf("the activity chain breaks at entry %d: %s", b.Seq, b.Reason)
	}
	return fmt.Sprintf("the activity chain breaks at entry %d (id %s): %s", b.Seq, b.ID, b.Reason)
}

// Verifier walks a chain in Seq order from its base.
type Verifier struct {
	next    int64  // the Seq the next entry must have
	prev    string // the hash it must follow
	anchors map[int64]string
	checked int64
}

// NewVerifier starts at base: the chain's first kept entry must have Seq
// base.Seq+1 and follow base.Hash (a base of 0 and "" is the chain's
// start; after retention purged old entries, the last purged one).
func NewVerifier(base wire.ChainLink) *Verifier {
	return &Verifier{next: base.Seq + 1, prev: base.Hash, anchors: map[int64]string{}}
}

// Anchor requires the entry at link.Seq to have link.Hash (a head recorded
// earlier).
func (v *Verifier) Anchor(link wire.ChainLink) { v.anchors[link.Seq] = link.Hash }

// Add checks the next entry. The first Break is returned again for every
// later call.
func (v *Verifier) Add(e wire.ActivityEntry) error {
	switch {
	case e.Seq > v.next:
		return &Break{Seq: v.next, Reason: fmt.Sprintf("it is missing (the next entry kept is %d, id %s): entries were deleted", e.Seq, e.ID)}
	case e.Seq < v.next:
		return &Break{Seq: e.Seq, ID: e.ID, Reason: fmt.Sprintf("it comes after entry %d: entries are out of order or repeated", v.next-1)}
	case e.PrevHash != v.prev:
		return &Break{Seq: e.Seq, ID: e.ID, Reason: "it does not follow the entry before it (its previous hash differs): an entry before it was changed or replaced"}
	}
	if h := Hash(e.PrevHash, e.Seq, e); h != e.Hash {
		return &Break{Seq: e.Seq, ID: e.ID, Reason: "its content does not match its hash: it was changed after it was sealed"}
	}
	if want, ok := v.anchors[e.Seq]; ok && want != e.Hash {
		return &Break{Seq: e.Seq, ID: e.ID, Reason: fmt.Sprintf("its hash is %s, not the anchored %s: the chain was rewritten from here or before", e.Hash, want)}
	}
	delete(v.anchors, e.Seq)
	v.next, v.prev = e.Seq+1, e.Hash
	v.checked++
	return nil
}

// End checks the walk reached head (the chain's head when the walk began).
func (v *Verifier) End(head wire.ChainLink) error {
	if v.next-1 < head.Seq {
		return &Break{Seq: v.next, Reason: fmt.Sprintf("it is missing (the chain's head is %d): entries were deleted", head.Seq)}
	}
	if v.next-1 == head.Seq && head.Seq > 0 && v.prev != head.Hash {
		return &Break{Seq: head.Seq, Reason: "the last entry's hash is not the chain head's"}
	}
	for seq := range v.anchors {
		if seq <= head.Seq {
			return &Break{Seq: seq, Reason: "the anchored entry is not in the chain (it is before the chain's base: purged, or the chain was replaced)"}
		}
	}
	return nil
}

// Checked is the number of entries verified so far.
func (v *Verifier) Checked() int64 { return v.checked }
