// Package sealing seals protected extension settings to one machine: HPKE
// (RFC 9180) with DHKEM(X25519, HKDF-SHA256), HKDF-SHA256 and AES-256-GCM,
// single-shot. The control plane seals with the machine's public sealing key
// as soon as it receives the settings and stores only the ciphertext; the
// agent opens them in memory, right before handing them to the handler.
//
// The info string binds a ciphertext to its purpose and the AAD
// (ExtensionAAD) to the machine, the extension instance and the
// publisher/type it was sealed for, so a sealed blob cannot be moved to
// another extension of the same machine, even one given the same name.
package sealing

import (
	"crypto/ecdh"
	"crypto/hpke"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
)

var info = []byte("corral protected settings v1")

// ExtensionAAD is the associated data protected settings are sealed with:
// machine id, extension name and lower-cased publisher/type. Server and
// agent both use it, so a blob opens only for the extension it was meant for.
func ExtensionAAD(machineID, name, publisher, typ string) []byte {
	return []byte(machineID + "/" + name + "/" + strings.ToLower(publisher+"/"+typ))
}

// RunCommandAAD is the associated data a run command's protected
// parameters are sealed with: the machine id and the run's name
// (lower-cased: run names are case-insensitive), under a prefix no
// extension's AAD can have, so a blob opens only for that run of that
// machine.
func RunCommandAAD(machineID, run string) []byte {
	return []byte("runcommand:" + machineID + "/" + strings.ToLower(run))
}

func suite() (hpke.KEM, hpke.KDF, hpke.AEAD) {
	kem, _ := hpke.NewKEM(0x0020) // DHKEM(X25519, HKDF-SHA256)
	return kem, hpke.HKDFSHA256(), hpke.AES256GCM()
}

// NewKey makes a machine sealing key pair: the private key bytes (keep them
// 0600 on the machine) and the 32-byte public key for the control plane.
func NewKey() (private, public []byte, err error) {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate sealing key: %w", err)
	}
	return k.Bytes(), k.PublicKey().Bytes(), nil
}

// ErrNoKey means the machine has no sealing key (an agent older than
// protocol version 2).
var ErrNoKey = errors.New("the machine has no sealing key; upgrade its agent and connect it again")

// Seal encrypts plaintext to public for the extension instance aad.
func Seal(public, aad, plaintext []byte) ([]byte, error) {
	if len(public) == 0 {
		return nil, ErrNoKey
	}
	kem, kdf, aead := suite()
	pk, err := kem.NewPublicKey(public)
	if err != nil {
		return nil, fmt.Errorf("invalid sealing key: %w", err)
	}
	enc, s, err := hpke.NewSender(pk, kdf, aead, info)
	if err != nil {
		return nil, err
	}
	ct, err := s.Seal(aad, plaintext)
	if err != nil {
		return nil, err
	}
	return append(enc, ct...), nil
}

// encSize is the length of an X25519 encapsulated key.
const encSize = 32

// Open decrypts a sealed blob with the machine's private key.
func Open(private, aad, sealed []byte) ([]byte, error) {
	kem, kdf, aead := suite()
	sk, err := kem.NewPrivateKey(private)
	if err != nil {
		return nil, fmt.Errorf("invalid sealing key: %w", err)
	}
	if len(sealed) < encSize {
		return nil, errors.New("sealed settings are truncated")
	}
	r, err := hpke.NewRecipient(sealed[:encSize], sk, kdf, aead, info)
	if err != nil {
		return nil, fmt.Errorf("open sealed settings: %w", err)
	}
	pt, err := r.Open(aad, sealed[encSize:])
	if err != nil {
		return nil, errors.New("the sealed data was not sealed to this machine for this purpose (extension or run)")
	}
	return pt, nil
}
