package protection

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/corralhq/corral/internal/agent/localconfig"
	"github.com/corralhq/corral/internal/extpkg"
)

// Which key signature sets must verify with is decided on the machine,
// never by the control plane, as for publisher keys (docs/agent.md):
//
//   - protection.signaturekey, set by root (`corral-agent config set
//     protection.signaturekey ed25519:KEY`), when set, is the only key;
//   - otherwise the key the desired state presents is pinned in
//     features/protection/signature-key.json the first time protection is
//     enabled and allowed by the local configuration, and a different key
//     later is refused (reported) until root sets protection.signaturekey
//     to the new key.

// pin is signature-key.json.
type pin struct {
	Key      []byte    `json:"key"`
	PinnedAt time.Time `json:"pinnedAt"`
}

const pinFile = "signature-key.json"

// trust is the key decision.
type trust struct {
	// Key is the key sets must verify with (nil: none trusted yet).
	Key []byte
	// From says where it comes from: "local configuration" or "pinned".
	From string
	// Refused is why the key the control plane presents is not used ("" if
	// it is the trusted one or none is presented).
	Refused string
}

// decideTrust returns the trusted key for a feature folder, pinning
// presented when mayPin and nothing is pinned or configured yet.
func decideTrust(dir string, cfg localconfig.Effective, presented []byte, mayPin bool, now time.Time) (trust, error) {
	if len(presented) != 0 && len(presented) != ed25519.PublicKeySize {
		presented = nil
	}
	if k := cfg.ProtectionSignatureKey; len(k) == ed25519.PublicKeySize {
		t := trust{Key: k, From: "local configuration (" + localconfig.KeyProtectionSignatureKey + ")"}
		if presented != nil && !bytes.Equal(presented, k) {
			t.Refused = fmt.Sprintf("the control plane signs with %s, not the key %s names; its signature sets are refused",
				extpkg.FormatPublicKey(presented), localconfig.KeyProtectionSignatureKey)
		}
		return t, nil
	}
	var p pin
	err := readJSON(filepath.Join(dir, pinFile), &p)
	switch {
	case err == nil && len(p.Key) == ed25519.PublicKeySize:
		t := trust{Key: p.Key, From: "pinned on first use"}
		if presented != nil && !bytes.Equal(presented, p.Key) {
			t.Refused = fmt.Sprintf("the control plane now signs with %s, not the pinned %s: its signature sets are refused until root runs \"corral-agent config set %s %s\"",
				extpkg.FormatPublicKey(presented), extpkg.FormatPublicKey(p.Key), localconfig.KeyProtectionSignatureKey, extpkg.FormatPublicKey(presented))
		}
		return t, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return trust{}, fmt.Errorf("signature key pin: %w", err)
	}
	if presented == nil || !mayPin {
		return trust{}, nil
	}
	if err := writeJSON(filepath.Join(dir, pinFile), pin{Key: presented, PinnedAt: now.UTC()}); err != nil {
		return trust{}, fmt.Errorf("pin the signature key: %w", err)
	}
	return trust{Key: presented, From: "pinned on first use"}, nil
}

// TrustedKey returns the key the installed signature set of an agent state
// directory must verify with (nil if none is trusted yet), for
// `corral-agent scan`.
func TrustedKey(stateDir string, cfg localconfig.Effective) ([]byte, error) {
	t, err := decideTrust(FeatureDir(stateDir), cfg, nil, false, time.Time{})
	return t.Key, err
}
